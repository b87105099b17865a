"""Progress of long steps (loading, converting, simulating, synthesis): silent unless asked.

The API announces each step that can take longer than a second with `step(...)`; nothing is
shown unless the caller opened a display with `bars()`. The CLI does so only when stderr is a
terminal and `--json` is off, so piped output, logs and JSON stay byte-for-byte what they would
be without bars. The bars go to stderr only, never touch stdout, and vanish when the step ends
(transient), so a terminal shows the same final text as a pipe. A context variable carries the
display, so the API keeps one signature whether or not anybody is watching.

    with edge_sdk.progress.bars():
        build = model.convert("cortex-m", "out/")
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

Advance = Callable[[int], None]

_display: ContextVar[_Display | None] = ContextVar("edge_sdk_progress", default=None)


def _ignore(n: int = 1) -> None:
    del n


class _Display:
    """One rich Progress per outermost step: stopped between steps, so that whatever the
    caller prints between them is never drawn over."""

    def __init__(self, stream: TextIO):
        from rich.console import Console

        self.console = Console(file=stream, stderr=stream is sys.stderr)
        self.progress = None
        self.depth = 0

    @contextmanager
    def task(self, label: str, total: int | None) -> Iterator[Advance]:
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        if self.progress is None:
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
            if total is not None:
                columns.append(MofNCompleteColumn())
            self.progress = Progress(*columns, TimeElapsedColumn(), console=self.console,
                                     transient=True, redirect_stdout=False,
                                     redirect_stderr=False)
            self.progress.start()
        task = self.progress.add_task(escape(label), total=total)  # file names are not markup
        self.depth += 1
        try:
            yield lambda n=1: self.progress.advance(task, n)
        finally:
            self.depth -= 1
            self.progress.remove_task(task)
            if self.depth == 0:
                self.progress.stop()
                self.progress = None


@contextmanager
def bars(stream: TextIO | None = None) -> Iterator[bool]:
    """Show the steps run inside as progress bars on `stream` (stderr) if it is a terminal.

    Yields whether bars are shown. Not a terminal (a pipe, a file, a CI log): nothing is shown,
    nothing is written.
    """
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        yield False
        return
    token = _display.set(_Display(stream))
    try:
        yield True
    finally:
        _display.reset(token)


@contextmanager
def step(label: str, total: int | None = None) -> Iterator[Advance]:
    """Announce a step that may take more than a second; yields `advance(n=1)`.

    `total` (a count of items, e.g. samples) draws a bar that `advance` fills; without it the
    bar pulses with the elapsed time. Without an open `bars()` display this costs nothing.
    """
    display = _display.get()
    if display is None:
        yield _ignore
        return
    with display.task(label, total) as advance:
        yield advance
