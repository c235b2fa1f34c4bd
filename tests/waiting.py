"""One way for a test to wait for something that happens in another thread or process.

``wait_until`` polls a condition and fails with a readable message (what was awaited, for how
long, and the last value the condition returned) instead of hanging or failing later on a
confusing assertion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str | Callable[[], Any] = "",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    On timeout raise ``AssertionError`` naming ``message`` (a string, or a callable whose
    result describes the state at that moment) and the predicate's last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what or 'the condition'} "
                f"(last value: {value!r})"
            )
        time.sleep(interval)
