"""The chunk table as one Lance dataset per location, shared by every SearchService of a process.

A product service keeps a SearchService per signed-in principal. With a dataset of its own,
every new service began with empty caches: Lance's index cache (posting lists, IVF partitions,
bitmaps) and metadata cache belong to the dataset's session, so each one read and decoded the
index pages again, and each kept its own copy of them. Shared, a new service's first query
costs what any other does, and the process holds one copy (docs/benchmarks.md, "One dataset
per process").

Indexes are prewarmed, loaded whole into that cache on a background thread, whenever the table
shows index segments the cache has not seen: at the first query, and after `optimize()` or a
rebuild adds or replaces some. Until they are loaded, queries read what they need as before.
Prewarming costs memory about the size of the indexes on disk (~0.5 GiB at 1M chunks: IVF_SQ
codes, the BM25 posting lists, the organization bitmap) and is turned off for one-shot
processes (the CLI's `encaptio search`) and by ENCAPTIO_SEARCH_PREWARM=false.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lance

log = logging.getLogger(__name__)

# The indexes every query reads: the organization prefilter, BM25 and the vector index. The
# other filter indexes are small and only some queries read them.
PREWARMED_INDEXES = ("organization_id_idx", "text_idx", "vector_idx")


def _identity(location: str) -> int | None:
    """The table directory's inode, for a local table. A restore or a replica sync replaces the
    directory in one rename, and the new table's version numbers may repeat the old one's: a
    dataset opened on the old directory must not be served for it."""
    if "://" in location:
        return None
    try:
        return os.stat(location).st_ino
    except OSError:
        return None


@dataclass
class _Entry:
    dataset: lance.LanceDataset
    identity: int | None
    warmed: frozenset[str] = frozenset()
    tried: frozenset[str] = frozenset()
    warmed_version: int = -1
    warming: bool = False
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _prewarm_index(dataset: lance.LanceDataset, name: str) -> None:
    try:
        dataset.prewarm_index(name)
    except (OSError, ValueError, RuntimeError):
        # pylance 14's FTS prewarm checks afterwards that everything it loaded is resident, and
        # a query loading the same index at the same moment can fail that check (1 time in 10
        # on a 300-row table, tests/search/test_shared_datasets.py); a second pass finds the
        # parts already cached.
        time.sleep(0.2)
        dataset.prewarm_index(name)


class SharedDatasets:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def latest(self, location: str, opener: Callable[[], lance.LanceDataset], *,
               prewarm: bool = False) -> lance.LanceDataset:
        """The table at `location` at its newest version (one ``latest_version`` check, ~15 us
        locally), opened with `opener` the first time, or again when its directory was replaced."""
        identity = _identity(location)
        entry = self._entries.get(location)
        if entry is None or entry.identity != identity:
            with self._lock:
                entry = self._entries.get(location)
                if entry is None or entry.identity != identity:
                    entry = self._entries[location] = _Entry(opener(), identity)
        current = entry.dataset
        newest = current.latest_version
        if newest != current.version:
            moved = current.checkout_version(newest)
            with entry.lock:
                # Another thread may have moved it further meanwhile: never step back.
                if entry.dataset.version < moved.version:
                    entry.dataset = moved
            current = moved
        if prewarm and entry.warmed_version != current.version:
            self._prewarm(location, entry, current)
        return current

    def _prewarm(self, location: str, entry: _Entry, dataset: lance.LanceDataset) -> None:
        with entry.lock:
            if entry.warming:
                return
            entry.warming = True
        try:
            segments = {index.name: frozenset(str(segment.uuid) for segment in index.segments)
                        for index in dataset.describe_indices() if index.name in PREWARMED_INDEXES}
        except (OSError, ValueError, RuntimeError) as exc:
            entry.warmed_version = dataset.version
            entry.warming = False
            log.warning("search prewarm of %s skipped: %s", location, exc)
            return
        wanted = frozenset(f"{name}:{uuid}" for name, uuids in segments.items() for uuid in uuids)
        # Each set of segments is tried once: a failure is not retried on every query.
        if wanted <= entry.tried:
            entry.warmed_version = dataset.version
            entry.warming = False
            return
        entry.tried = entry.tried | wanted

        def load() -> None:
            try:
                for name in segments:
                    _prewarm_index(dataset, name)
                entry.warmed = wanted
            except (OSError, ValueError, RuntimeError) as exc:
                # A hint, not a duty: queries still read the index on demand.
                log.warning("search prewarm of %s failed: %s", location, str(exc).splitlines()[0][:300])
            finally:
                entry.warmed_version = dataset.version
                entry.warming = False

        # A daemon thread: a process that exits mid-prewarm has nothing to wait for.
        entry.thread = threading.Thread(target=load, name="encaptio-prewarm", daemon=True)
        entry.thread.start()

    def wait_for_prewarm(self, timeout: float | None = None) -> bool:
        """Wait for running prewarms (a benchmark measures after them); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for entry in list(self._entries.values()):
            thread = entry.thread
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    return False
        return True

    def forget(self, location: str | None = None) -> None:
        with self._lock:
            if location is None:
                self._entries.clear()
            else:
                self._entries.pop(location, None)


SHARED = SharedDatasets()
