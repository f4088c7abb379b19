"""Leases: who holds what in a cluster of gateways, for how long, and since which epoch.

A lease is a name (`endpoint:42`, `leader`) held by one gateway until `expires_at`; the holder
renews it well before then (every TTL/3), and a gateway that stops renewing loses it when the
TTL runs out. Every take-over bumps the lease's `epoch`, so a new holder can tell a fresh
acquisition (act on it once: requeue the dead holder's jobs) from a renewal.

Two implementations of one protocol: `LocalLeases` (the embedded default: one process, one
gateway, expiry by the injected clock) and `PgLeases` (`cluster/pg_leases.py`: one conditional
statement per call, database time, so the machines' clocks never matter). Gateways also
advertise themselves here (`heartbeat`, `live_gateways`): that is how they find each other.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from coldbrew.clock import Clock

#: The lease of the once-per-cluster work (budget checks, retention purge, canary checks).
LEADER = "leader"
#: A gateway gone this long is deleted from the directory (its jobs were requeued long before).
FORGET_AFTER_S = 3600.0
_ENDPOINT = "endpoint:"


def endpoint_lease(endpoint_id: int) -> str:
    """The name of the lease that makes a gateway an endpoint's owner."""
    return f"{_ENDPOINT}{endpoint_id}"


def lease_endpoint(name: str) -> int | None:
    """The endpoint id a lease name stands for (None for `leader` and other names)."""
    if not name.startswith(_ENDPOINT):
        return None
    return int(name[len(_ENDPOINT) :])


def worker_prefix(gateway_id: str) -> str:
    """What every worker id of the gateway starts with."""
    return f"w-{gateway_id}-"


def gateway_of(worker_id: str | None) -> str | None:
    """The gateway whose worker `worker_id` is (None for ids from before gateways had ids)."""
    if not worker_id or not worker_id.startswith("w-"):
        return None
    parts = worker_id.split("-")
    return parts[1] if len(parts) == 3 else None


def rendezvous_owner(endpoint_id: int | str, gateway_ids: Iterable[str]) -> str | None:
    """Highest-random-weight hashing: the gateway that should own the endpoint (or the named
    lease: `trigger:…`, `pipeline:…`). Every gateway computes the same answer from the same
    live set, and a gateway joining or leaving moves only the endpoints it wins or held (about
    1/N of them), not all."""
    best: tuple[bytes, str] | None = None
    for gateway in gateway_ids:
        score = hashlib.sha256(f"{gateway}:{endpoint_id}".encode()).digest()
        if best is None or score > best[0]:
            best = (score, gateway)
    return None if best is None else best[1]


@dataclass(frozen=True)
class Holding:
    """A lease as the table has it: who holds it, at which epoch, and whether it still runs."""

    holder: str
    epoch: int
    live: bool


class Leases(Protocol):
    """Acquire, renew and release leases; advertise and find gateways."""

    @abstractmethod
    async def acquire(self, names: Iterable[str], holder: str, ttl_s: float) -> dict[str, int]:
        """Take or renew each lease that is free, expired or already `holder`'s, for `ttl_s`
        from now; returns the epoch of each one granted (the others are another's)."""

    @abstractmethod
    async def release(self, names: Iterable[str], holder: str) -> None:
        """Give up those of `names` that `holder` holds (another may take them at once)."""

    @abstractmethod
    async def holdings(self) -> dict[str, Holding]:
        """Every lease in the table."""

    @abstractmethod
    async def heartbeat(self, gateway_id: str, url: str, ttl_s: float) -> None:
        """Advertise the gateway at `url`; it counts as live for `ttl_s` from now."""

    @abstractmethod
    async def live_gateways(self) -> dict[str, str]:
        """Gateways whose heartbeat has not run out: id → advertised URL."""

    @abstractmethod
    async def forget_gone(self) -> int:
        """Delete gateways gone for over `FORGET_AFTER_S` (the leader does this now and then);
        how many."""

    @abstractmethod
    async def leave(self, gateway_id: str) -> None:
        """Remove the gateway at a clean stop: its leases are free at once."""

    @abstractmethod
    async def close(self) -> None: ...


@dataclass
class _Row:
    holder: str
    epoch: int
    expires_at: float  # monotonic, this process's clock


class LocalLeases(Leases):
    """Leases in this process: the embedded default, where one gateway holds every lease.

    The same rules as the database's (expiry, epoch bump on take-over), so the ownership code
    path is the same with one gateway as with many, and unit tests drive it with a FakeClock.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._rows: dict[str, _Row] = {}
        self._gateways: dict[str, tuple[str, float]] = {}  # id -> (url, live until)

    async def acquire(self, names: Iterable[str], holder: str, ttl_s: float) -> dict[str, int]:
        now = self.clock.monotonic()
        granted: dict[str, int] = {}
        for name in names:
            row = self._rows.get(name)
            if row is None:
                row = self._rows[name] = _Row(holder, 1, now + ttl_s)
            elif row.holder == holder:
                row.expires_at = now + ttl_s
            elif row.expires_at < now:
                row.holder, row.epoch, row.expires_at = holder, row.epoch + 1, now + ttl_s
            else:
                continue
            granted[name] = row.epoch
        return granted

    async def release(self, names: Iterable[str], holder: str) -> None:
        now = self.clock.monotonic()
        for name in names:
            row = self._rows.get(name)
            if row is not None and row.holder == holder:
                row.expires_at = min(row.expires_at, now - 1e-9)

    async def holdings(self) -> dict[str, Holding]:
        now = self.clock.monotonic()
        return {n: Holding(r.holder, r.epoch, r.expires_at >= now) for n, r in self._rows.items()}

    async def heartbeat(self, gateway_id: str, url: str, ttl_s: float) -> None:
        self._gateways[gateway_id] = (url, self.clock.monotonic() + ttl_s)

    async def live_gateways(self) -> dict[str, str]:
        now = self.clock.monotonic()
        return {g: url for g, (url, until) in self._gateways.items() if until >= now}

    async def forget_gone(self) -> int:
        cutoff = self.clock.monotonic() - FORGET_AFTER_S
        gone = [g for g, (_, until) in self._gateways.items() if until < cutoff]
        for gateway in gone:
            del self._gateways[gateway]
        return len(gone)

    async def leave(self, gateway_id: str) -> None:
        self._gateways.pop(gateway_id, None)
        await self.release(list(self._rows), gateway_id)

    async def close(self) -> None:
        return None
