"""Job wake-ups: a gateway that waits for a job (a /runsync past the sync lane, a status
long-poll) hears when another gateway finished it, instead of polling the store.

The gateway that makes a stored job final publishes its id; every gateway hears every id and
reads the job back only when someone there waits for it (`JobBook.wake`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class FinalSignals(Protocol):
    """Job ids made final, told to every gateway."""

    def publish(self, job_id: str) -> None:
        """The job is final (and written): tell every gateway; never blocks the caller."""
        ...

    def on_final(self, callback: Callable[[str], None]) -> None:
        """Call `callback(job_id)` for every job any gateway published."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalSignals:
    """One gateway: the finishing and the waiting gateway are this one, told at once."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[str], None]] = []

    def publish(self, job_id: str) -> None:
        for callback in self._callbacks:
            callback(job_id)

    def on_final(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
