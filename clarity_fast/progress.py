"""Progress bars on stderr, shown only to a person watching a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(*, total: int, description: str, enabled: bool | None = None) -> Iterator[Progress]:
    """A bar with `total` steps; yields the Progress (call `.advance(0)` per step via `step`)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )
    with progress:
        progress.add_task(description, total=total, status="")
        yield progress


def step(progress: Progress, *, status: str = "") -> None:
    """Advance the (single) task of a bar made by `progress_bar` by one step."""
    progress.update(progress.task_ids[0], advance=1, status=status)
