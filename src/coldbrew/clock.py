"""Injected time: production code asks a `Clock`, tests hand in a `FakeClock`.

Wall-clock seconds (`time()`, UTC epoch) are what gets stored and billed; monotonic seconds
(`monotonic()`) measure durations inside one process. The two are never mixed.

Waits with a bound (a /runsync wait, a batch hold, a stream poll) go through the clock too:
`wait_for(awaitable, timeout_s)` and `call_later(delay_s, callback)` run on the event loop's
timer with the real clock and on `advance()` with the fake one, so a test moves time instead
of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Timer(Protocol):
    """A pending `call_later`; `cancel()` stops it from running."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Source of time for everything that schedules, times out or bills."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds`."""

    async def wait_for(self, awaitable: Awaitable[T], timeout_s: float) -> T:
        """`awaitable`'s result, or `TimeoutError` (the awaitable cancelled) after `timeout_s`."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        """Run `callback()` once, `delay_s` from now."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def wait_for(self, awaitable: Awaitable[T], timeout_s: float) -> Coroutine[Any, Any, T]:
        # asyncio's own coroutine, not one wrapping it: the /runsync wait pays no extra frame
        return asyncio.wait_for(awaitable, timeout_s)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay_s, callback)


class _FakeTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class FakeClock:
    """A clock that moves only when told to, for exact tests of timeouts and billing.

    `call_later` timers and `wait_for` deadlines fire inside `advance()`, in deadline order, once
    the monotonic clock reaches them. `sleep` advances the clock itself (a retry loop under test
    runs through its back-off at once).
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`, then run the timers that came due."""
        self._wall += seconds
        self._mono += seconds
        while self._timers and self._timers[0][0] <= self._mono:
            timer = heapq.heappop(self._timers)[2]
            if timer.callback is not None:
                callback, timer.callback = timer.callback, None
                callback()

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(callback)
        heapq.heappush(self._timers, (self._mono + max(0.0, delay_s), next(self._order), timer))
        return timer

    async def wait_for(self, awaitable: Awaitable[T], timeout_s: float) -> T:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as scope:
            if timeout_s <= 0:  # due now, as asyncio.wait_for: no advance() needed
                scope.reschedule(loop.time())
            timer = self.call_later(timeout_s, lambda: scope.reschedule(loop.time()))
            try:
                return await awaitable
            finally:
                timer.cancel()
