"""What the report is waiting for: on a terminal, which query runs and a bar of its pieces.

A report over a large fleet waits tens of seconds or minutes for Prometheus. On a terminal (stderr
a TTY, as `export` decides) it shows one line: the query (`query 3 of 6: observation and scrape
gaps`), a bar counting the pieces that query is cut into (docs/verdicts.md: one request each) and
the time it has taken; the line is gone when the report is done. Anywhere else nothing is shown.
"""

import sys
from typing import Any


class Progress:
    """Nothing shown (stderr is not a terminal): the base that `measure` reports to."""

    def total(self, queries: int) -> None:
        """How many queries the report will ask."""

    def query(self, name: str, pieces: int = 1) -> None:
        """The next query begins, asked in `pieces` requests."""

    def advance(self) -> None:
        """One piece (request) of the current query is answered."""

    def close(self) -> None:
        """The report is done."""


SILENT = Progress()


class TerminalProgress(Progress):
    """One rich line on stderr, transient: spinner, `query N of M: what`, the pieces' bar, elapsed time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar: Any = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pieces"),
            TimeElapsedColumn(),
            transient=True,
            console=Console(file=sys.stderr),
        )
        self._task: Any = None
        self._queries = 0
        self._asked = 0
        self._bar.start()

    def total(self, queries: int) -> None:
        self._queries = queries

    def query(self, name: str, pieces: int = 1) -> None:
        self._asked += 1
        description = f"query {self._asked} of {max(self._queries, self._asked)}: {name}"
        if self._task is None:
            self._task = self._bar.add_task(description, total=pieces)
        else:
            self._bar.reset(self._task, total=pieces, description=description)
        self._bar.refresh()  # drawn now, even if Prometheus answers before the next refresh

    def advance(self) -> None:
        if self._task is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        self._bar.stop()


def for_stderr(terminal: bool) -> Progress:
    """A terminal line when `terminal` (stderr is a TTY), else nothing."""
    return TerminalProgress() if terminal else SILENT
