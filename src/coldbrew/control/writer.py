"""The buffered writer: log lines, arrival counts and usage seconds go to the store in batches,
never one write per frame or request, and never block job handling: while the storage is down
they wait in memory (bounded), and rows the store refuses are dropped with an error logged."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from coldbrew.clock import Clock
from coldbrew.control.frames import JobLogLimits
from coldbrew.control.warmth import TrafficProfile
from coldbrew.errors import StorageUnavailable
from coldbrew.store.base import Store
from coldbrew.store.models import Job, UsageRow

log = logging.getLogger("coldbrew.scheduler")

BUCKET_S = 300  # traffic history resolution, for prewarming
USAGE_FLUSH_S = 5.0  # usage seconds of running workers are written at most this often
_MAX_LOG_BACKLOG = 100_000  # log lines kept in memory while the storage is down


def _log_row(row: tuple[Any, ...]) -> tuple[str, float, str, str]:
    """A log row as the store's column types: a worker may send any JSON as a line."""
    job_id, ts, stream, line = row
    if not isinstance(line, str):
        try:
            line = orjson.dumps(line).decode()
        except Exception:
            line = repr(line)
    return str(job_id), float(ts) if isinstance(ts, int | float) else 0.0, str(stream), line


class BufferedWriter:
    """Log lines (within each job's caps), arrival counts and usage rows, written in batches."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        limits: JobLogLimits,
        profiles: Mapping[int, tuple[float, TrafficProfile]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits
        # endpoint -> (read at, profile): the traffic profiles placement keeps, which learn
        # each arrival as it comes (placement rereads them from the store every minute)
        self.profiles: Mapping[int, tuple[float, TrafficProfile]] = (
            profiles if profiles is not None else {}
        )
        self._logs: list[tuple[str, float, str, str]] = []
        self._arrivals: Counter[tuple[int, int, int]] = Counter()
        self._usage: dict[tuple[str, str, float], UsageRow] = {}  # (worker, kind, hour) -> row
        self._last_usage = 0.0  # monotonic

    def limits_frame(self) -> dict[str, Any]:
        """The frame that tells a worker the log caps its own print capture applies."""
        return {
            "t": "limits",
            "log_max_bytes": self.limits.max_bytes,
            "log_lines_per_s": self.limits.lines_per_s,
        }

    def log(self, frame: dict[str, Any]) -> None:
        """Keep a log line within the job's caps (bytes in all, lines per second)."""
        line = self.limits.admit(frame["id"], frame["line"], self.clock.monotonic())
        if line is not None:
            self._logs.append((frame["id"], frame["ts"], frame["stream"], line))

    def count_arrival(self, job: Job) -> None:
        """Count the job in its endpoint's traffic history (5-minute buckets by day)."""
        day, second = divmod(int(job.created_at), 86_400)
        self._arrivals[(job.endpoint_id, day, second // BUCKET_S)] += 1
        cached = self.profiles.get(job.endpoint_id)
        if cached is not None:
            cached[1].record(job.created_at)

    async def flush(self) -> None:
        """Write buffered log lines and arrival counts (each tick); never raises."""
        await self.flush_logs()
        await self.flush_arrivals()

    async def flush_logs(self) -> None:
        """Write buffered log lines; never raises. A job's end calls it (its log is readable
        once it is final), so with nothing buffered it makes no store call: the store thread
        may be busy with a tick's write-back, and a job's end must not queue behind it."""
        if self._logs:
            rows, self._logs = [_log_row(r) for r in self._logs], []
            try:
                await self.store.append_logs(rows)
            except StorageUnavailable:
                self._logs[:0] = rows[-_MAX_LOG_BACKLOG:]
            except Exception:
                log.exception("%d job log lines could not be stored; dropped", len(rows))

    async def flush_arrivals(self) -> None:
        """Write the arrival counts (what `prewarm="auto"` learns from); never raises."""
        if self._arrivals:
            counts, self._arrivals = self._arrivals, Counter()
            try:
                await self.store.record_arrivals([(*key, n) for key, n in counts.items()])
            except StorageUnavailable:
                self._arrivals.update(counts)
            except Exception:
                log.exception("arrival counts could not be stored; dropped")

    def usage_due(self, force: bool) -> bool:
        """Whether running workers' seconds are to be written now (every `USAGE_FLUSH_S`)."""
        now = self.clock.monotonic()
        if not force and now - self._last_usage < USAGE_FLUSH_S:
            return False
        self._last_usage = now
        return True

    async def write_usage(self, rows: Iterable[UsageRow]) -> None:
        """Write usage seconds; while the storage is down they add up in memory, one row per
        (worker, kind, hour), and are written when it is back. Never raises."""
        for row in rows:
            key = (row.worker_id, row.kind.value, row.hour_start)
            held = self._usage.get(key)
            if held is not None:
                row = dataclasses.replace(row, seconds=held.seconds + row.seconds)
            self._usage[key] = row
        if not self._usage:
            return
        pending, self._usage = self._usage, {}
        try:
            await self.store.add_usage(list(pending.values()))
        except StorageUnavailable:
            self._usage = pending | self._usage
        except Exception:
            log.exception("usage rows could not be stored; dropped %d", len(pending))
