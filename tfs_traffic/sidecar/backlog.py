"""Counting off the data path: what the relay forwarded waits here and is parsed in batches.

Parsing each chunk as it passes costs a Python call chain per read, run with caches just emptied
by the sim, the client and the kernel in between; at one call in flight that doubled the relay's
CPU per call (measured, README "Overhead"). So the relay only appends each chunk, with the time it
arrived, to its connection's backlog, and a worker parses every backlog together: `--count-delay`
(1 s) after the first chunk waited, at once when more than BATCH_BYTES wait (memory stays bounded),
when a connection ends, and when a scrape asks (`flush`). A scrape therefore sees every call whose
response the relay forwarded before the scrape came, as it would if each chunk had been parsed at
once; durations and deadlines use the arrival times, not the time of parsing, and a new view
of the upstream (`worker`) is taken only after what arrived under the old one was counted.
"""

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from time import perf_counter
from typing import Any, Protocol

BATCH_BYTES = 4 << 20
# A timed batch is parsed in slices of about this long, the loop forwarding in between: parsing a
# second's calls in one go (tens of ms) would hold every connection of the worker that long.
SLICE_SECONDS = 0.002


class Waiting(Protocol):
    def observe_backlog(self) -> None:
        """Parse what this connection's backlog holds."""


class Backlog:
    """The connections of one worker that have bytes waiting to be parsed."""

    __slots__ = ("_batch", "_bytes", "_loop", "_timer", "_waiting", "delay", "limit")

    def __init__(
        self,
        delay: float,
        limit: int = BATCH_BYTES,
        batch: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        """`batch`: what a flush runs inside (`CallMetrics.batch`: the calls it counts are written together)."""
        self.delay = delay
        self.limit = limit
        self._batch = batch
        self._waiting: dict[Waiting, None] = {}  # insertion-ordered: parsed in the order they began waiting
        self._bytes = 0
        self._timer: asyncio.Handle | None = None  # the batch's timer, then its next slice
        self._loop: asyncio.AbstractEventLoop | None = None

    def wait(self, connection: Waiting) -> None:
        """`connection` has its first chunk waiting."""
        self._waiting[connection] = None
        if self._timer is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.delay, self._slice)

    def grew(self, size: int) -> None:
        """`size` more bytes wait; past the limit everything is parsed now."""
        self._bytes += size
        if self._bytes > self.limit:
            self.flush()

    def done(self, connection: Waiting) -> None:
        """`connection` parsed (or dropped) its backlog on its own."""
        self._waiting.pop(connection, None)

    def flush(self) -> None:
        """Parse every backlog now (a scrape waits for this, and the byte limit asks for it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        self._bytes = 0
        with self._batch():
            for connection in waiting:
                connection.observe_backlog()

    def _slice(self) -> None:
        """Parse whole backlogs, oldest first, for about SLICE_SECONDS; the rest on the loop's next turn.

        `_timer` stays set meanwhile, so that a connection that starts waiting joins these slices.
        """
        waiting = self._waiting
        deadline = perf_counter() + SLICE_SECONDS
        with self._batch():
            while waiting:
                connection = next(iter(waiting))
                del waiting[connection]
                connection.observe_backlog()
                if perf_counter() >= deadline:
                    break
        if waiting:
            self._timer = asyncio.get_running_loop().call_soon(self._slice)
        else:
            self._timer = None
            self._bytes = 0
