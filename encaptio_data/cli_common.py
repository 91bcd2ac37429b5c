"""What every `encaptio` command module shares: output (one JSON document or a rendering),
progress, the platform and the operator. The command modules (cli.py and the cli_* sub-apps)
import from here, never from each other, so `python -m encaptio_data.cli` has no import cycle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from encaptio_data.platform import Platform
from encaptio_data.settings import get_settings

console = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AsOption = Annotated[str | None, typer.Option("--as", help="Operator email (default ENCAPTIO_OPERATOR).")]


def emit(payload: Any, as_json: bool, render: Any = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    elif render is not None:
        render(payload)
    else:
        Console().print_json(json.dumps(payload, default=str))


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=not enabled, transient=False)
    with progress:
        yield progress


def open_platform() -> Platform:
    return Platform(get_settings())


def operator_of(as_: str | None, platform: Platform) -> str | None:
    """--as, else ENCAPTIO_OPERATOR."""
    return as_ or platform.settings.operator


def bench_progress(as_json: bool) -> Any:
    return None if as_json else (lambda message: console.print(message, highlight=False))
