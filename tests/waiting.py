"""Waiting for what another process or thread does: poll until it holds, then let the test assert it."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call `condition` until it returns something truthy or `timeout` seconds have passed, and return its
    last value either way: the caller asserts it, so a timeout fails the test on that line."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
