"""Injected time: production code asks a `Clock`, tests hand in a `FakeClock`.

Wall-clock seconds (`time()`, UTC epoch) are what gets stored and billed; monotonic seconds
(`monotonic()`) measure durations inside one process. The two are never mixed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Source of time for everything that schedules, times out or bills."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds`."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to, for exact tests of timeouts and billing."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        self._wall += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
