"""Progress bars and console output (rich). `quiet()` silences them, e.g. in tests; under
torchrun, rank 0 speaks for every process."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
_quiet = False


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=_silent(),
        transient=False,
    )


def log(message: str) -> None:
    if not _silent():
        console.print(message)


def _silent() -> bool:
    return _quiet or os.environ.get("RANK", "0") != "0"  # RANK: set by torchrun
