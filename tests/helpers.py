"""Waiting in end-to-end tests: one bounded poll instead of a hand-written deadline loop in each.

The integration tests' async twin is `tests/integration/conftest.py::wait_for`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    fetch: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "the condition",
) -> T:
    """Call `fetch` until `done(value)` holds and return that value; after `timeout_s` fail with
    what was awaited and the last value seen. A bound on a wait, not a timing assertion: a
    slow machine only makes it wait longer."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout_s:g} s; last value: {value!r}")
        time.sleep(interval_s)


def status_is(*states: str) -> Callable[[dict[str, Any]], bool]:
    """A `done` for `wait_until` over job bodies: the job's status is one of `states`."""
    return lambda body: body.get("status") in states
