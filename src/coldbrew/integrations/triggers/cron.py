"""The `cron` source: one message per tick of a cron schedule, in a time zone (Modal's
`modal.Cron("0 9 * * *", timezone=...)`).

The cursor (the last tick handed out, saved on ack) is the durability: after downtime the
ticks missed are not replayed one by one — the latest one fires once, as Modal and Kubernetes
CronJobs do, so a server down for a day does not run a job per missed minute on restart. A
tick's message key is its scheduled time, so a redelivered tick makes no second job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import field_validator

from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    Source,
    TriggerContext,
    register_source,
)


class CronConfig(KindConfig):
    """A schedule (5 fields, cronsim's syntax), its time zone and the job input per tick."""

    schedule: str
    timezone: str = "UTC"
    input: dict[str, Any] = {}

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"cron schedule {value!r} is not valid: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from None
        return value


def next_tick(schedule: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first tick strictly after `after`, as an aware datetime in `zone`."""
    local = after.astimezone(zone).replace(microsecond=0)
    return next(CronSim(schedule, local))


def latest_due(schedule: str, zone: ZoneInfo, after: datetime, now: datetime) -> datetime | None:
    """The latest tick in (after, now], or None when none is due: missed ticks collapse.

    The walk starts two days back (a minutely schedule after a month down walks 2,880 ticks,
    not 43,200), and from `after` only when nothing was due in those two days.
    """
    recent = now - timedelta(days=2)
    for start in (max(after, recent), after) if recent > after else (after,):
        due = None
        tick = next_tick(schedule, zone, start)
        while tick <= now:
            due, tick = tick, next_tick(schedule, zone, tick)
        if due is not None:
            return due
    return None


class CronSource(Source):
    """Emits the due tick; the next one waits on the injected clock."""

    def __init__(self, config: CronConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self.zone = ZoneInfo(config.timezone)
        self._last: datetime | None = None  # the last tick acked

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.ctx.clock.time(), UTC)

    async def open(self) -> None:
        cursor = await self.ctx.cursor.load()
        if cursor and cursor.get("last_tick"):
            self._last = datetime.fromisoformat(cursor["last_tick"])
        else:  # a new trigger starts from now: its first tick is the next one
            self._last = self._now()
            await self.ctx.cursor.save({"last_tick": self._last.isoformat()})

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        assert self._last is not None
        now = self._now()
        due = latest_due(self.config.schedule, self.zone, self._last, now)
        if due is None:
            wait = (next_tick(self.config.schedule, self.zone, self._last) - now).total_seconds()
            await self.ctx.clock.sleep(max(0.0, min(wait, wait_s)))
            now = self._now()
            due = latest_due(self.config.schedule, self.zone, self._last, now)
            if due is None:
                return []
        body = {**self.config.input, "scheduled_at": due.isoformat()}
        return [Message(f"tick:{due.astimezone(UTC).isoformat()}", body, due.timestamp(), due)]

    async def ack(self, messages: Sequence[Message]) -> None:
        ticks = [m.handle for m in messages if isinstance(m.handle, datetime)]
        if ticks:
            self._last = max(ticks)
            await self.ctx.cursor.save({"last_tick": self._last.isoformat()})

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        return None  # the runner's own table keeps it

    async def lag(self) -> int | None:
        assert self._last is not None
        return int(latest_due(self.config.schedule, self.zone, self._last, self._now()) is not None)

    async def close(self) -> None:
        return None


register_source(Kind("cron", CronConfig, CronSource, "schedule='*/5 * * * *', timezone='UTC'"))
