"""Turns a worker's life into usage rows: cold start, busy and idle seconds, split by hour.

A reserved worker's whole life (cold start, busy and idle alike) is reserved seconds: the
reservation is paid whatever the worker does, at the hardware's reserved rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

from coldbrew.store.models import UsageKind, UsageRow

HOUR_S = 3600.0


def split_by_hour(start: float, end: float) -> list[tuple[float, float]]:
    """(hour_start, seconds) pieces of the wall-clock interval [start, end)."""
    pieces = []
    cursor = start
    while cursor < end:
        hour = math.floor(cursor / HOUR_S) * HOUR_S
        until = min(end, hour + HOUR_S)
        pieces.append((hour, until - cursor))
        cursor = until
    return pieces


@dataclass
class WorkerMeter:
    """Tracks what one worker is doing now and what it has not yet reported."""

    worker_id: str
    account: str
    endpoint: str
    version_id: int
    hardware: str
    kind: UsageKind
    since: float  # wall-clock start of the current segment
    reserved: bool = False  # on a reserved slot: every second is metered as RESERVED

    def __post_init__(self) -> None:
        self._pending: dict[tuple[UsageKind, float], float] = {}

    def switch(self, kind: UsageKind | None, now: float) -> None:
        """Close the current segment at `now` and start one of `kind` (None: the worker stopped)."""
        for hour, seconds in split_by_hour(self.since, now):
            key = (UsageKind.RESERVED if self.reserved else self.kind, hour)
            self._pending[key] = self._pending.get(key, 0.0) + seconds
        if kind is not None:
            self.kind = kind
        self.since = now

    def drain(self, now: float) -> list[UsageRow]:
        """Rows for everything up to `now`; the current segment continues from `now`."""
        self.switch(self.kind, now)
        rows = [
            UsageRow(
                worker_id=self.worker_id,
                account=self.account,
                endpoint=self.endpoint,
                version_id=self.version_id,
                hardware=self.hardware,
                kind=kind,
                hour_start=hour,
                seconds=seconds,
            )
            for (kind, hour), seconds in self._pending.items()
            if seconds > 0
        ]
        self._pending.clear()
        return rows
