"""Budget hard stops on a board every gateway reads: a stop one gateway finds refuses new jobs
(402) on all of them.

Every gateway (or only the leader) recomputes spend from the shared usage every
`budget_check_s` and posts the stops it finds; readers are told when the board changes, so a
stop reaches the other gateways in milliseconds, not at their next check. Spend only grows within
a month, so a gateway whose usage view is a little behind never lifts another's stop: a stop is
lifted only when its budget changed (raised, deleted, no longer a hard stop) or the month did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Stop:
    """A hard-stop budget found spent: whose, its limit when found, and the spend then."""

    account: str
    endpoint: str | None
    monthly_usd: float
    spent_usd: float
    period: str  # the UTC month, 'YYYY-MM'

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.account, self.endpoint)


class StopBoard(Protocol):
    """The budget stops every gateway sees."""

    async def read(self) -> list[Stop]:
        """Every stop on the board."""
        ...

    async def update(self, found: list[Stop], lifted: list[Stop]) -> None:
        """Post the stops found and remove those lifted; readers are told."""
        ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever the board changed (on any gateway)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalStops:
    """The board in this process (one gateway)."""

    def __init__(self) -> None:
        self._stops: dict[tuple[str, str | None], Stop] = {}
        self._callbacks: list[Callable[[], None]] = []

    async def read(self) -> list[Stop]:
        return list(self._stops.values())

    async def update(self, found: list[Stop], lifted: list[Stop]) -> None:
        for stop in lifted:
            self._stops.pop(stop.key, None)
        for stop in found:
            self._stops[stop.key] = stop
        for callback in self._callbacks:
            callback()

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
