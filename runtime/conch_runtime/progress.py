"""Progress of slow steps: one small interface, a silent default and a rich implementation.

Library code calls ``with reporter.step("Quantizing", total=None) as advance: ...`` and
``advance()`` per unit of work where it knows a total (epochs, batches); the CLI passes a
`RichReporter`, tests and the Python API default to `SilentReporter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Advance", "Reporter", "RichReporter", "SilentReporter"]

Advance = Callable[[int], None]
"""Report `n` more units of a step done."""


class Reporter(Protocol):
    def step(self, description: str, total: int | None = None) -> AbstractContextManager[Advance]:
        """A context for one step; the yielded callable advances it by n units."""
        ...


class SilentReporter:
    """Reports nothing."""

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield lambda n: None


class RichReporter:
    """One line per step on stderr: a spinner (and a bar when the total is known) while it
    runs, then a check mark and the seconds it took. Plain lines when not on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Advance]:
        start = time.monotonic()
        if not self.console.is_terminal:
            yield lambda n: None
            self.console.print(f"{description} ({time.monotonic() - start:.1f}s)")
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        with Progress(*columns, TimeElapsedColumn(), console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
        self.console.print(
            f"[green]✓[/green] {description} [dim]({time.monotonic() - start:.1f}s)[/dim]"
        )
