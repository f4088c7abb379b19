"""What several gateways share: account concurrency slots, budget hard stops and job wake-ups.

Each concern is a small protocol with an in-process implementation (one `coldbrew serve`, the
embedded default, no Redis) and a Redis one (`--redis-url`, several gateways behind a load
balancer); the platform builds one or the other (`make_shared`) and every caller takes the same
code path either way. docs/shared.md says what is shared where, and why.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.store.models import Job
from coldbrew.store.shared.slots import AccountSlots, LocalSlots
from coldbrew.store.shared.stops import LocalStops, Stop, StopBoard
from coldbrew.store.shared.wakeups import FinalSignals, LocalSignals

__all__ = [
    "AccountSlots",
    "FinalSignals",
    "LocalSignals",
    "LocalSlots",
    "LocalStops",
    "Shared",
    "Stop",
    "StopBoard",
    "make_shared",
    "new_gateway_id",
]


def new_gateway_id() -> str:
    """This process's name among gateways: host, pid and a random tail (a restarted gateway
    with the same pid is another gateway: its old claims must lapse, not carry over)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def _nothing() -> None:
    return None


@dataclass
class Shared:
    """The shared state of one gateway: where its account slots, budget stops and wake-ups live."""

    gateway_id: str
    slots: AccountSlots
    stops: StopBoard
    signals: FinalSignals
    ping: Callable[[], Awaitable[None]] = _nothing  # raises when the shared store is down

    def announce_final(self, job: Job) -> None:
        """A final-state listener: a stored job ended here; wake its waiters on every gateway
        (a sync-lane job lives in this gateway's memory only: nobody elsewhere can wait on it)."""
        if job.durable:
            self.signals.publish(job.id)

    async def start(self) -> None:
        await self.stops.start()
        await self.signals.start()

    async def close(self) -> None:
        await self.slots.close()
        await self.stops.close()
        await self.signals.close()


def make_shared(settings: Settings, clock: Clock, gateway_id: str | None = None) -> Shared:
    """Redis-backed when `redis_url` is set, else in this process."""
    gateway_id = gateway_id or new_gateway_id()
    if settings.redis_url is None:
        return Shared(gateway_id, LocalSlots(), LocalStops(), LocalSignals())
    from coldbrew.store.shared.redis_shared import RedisLink, RedisSignals, RedisSlots, RedisStops

    link = RedisLink(settings.redis_url, settings.redis_prefix)
    return Shared(
        gateway_id,
        RedisSlots(link, clock, gateway_id, settings.slot_lease_s),
        RedisStops(link, clock),
        RedisSignals(link, clock),
        link.ping,
    )
