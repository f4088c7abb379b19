"""One trigger's runner: fetch a window → submit its jobs → record them in flight → ack; and, as
jobs end, retry, dead-letter or write the result to the sink.

Durability rests on two things. Before the ack the source holds the message (a crash
redelivers it, and the per-message idempotency key makes the resubmit return the same job);
after it, the store's in-flight row does (a restart reads the rows back and looks their jobs
up). Every message therefore ends in exactly one job per attempt and one sink record, however
often the server dies in between; a sink may see a record twice, so sinks upsert by message key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coldbrew.clock import Clock
from coldbrew.errors import ColdbrewError
from coldbrew.integrations.triggers.base import Message, Sink, SinkRecord, Source
from coldbrew.integrations.triggers.submit import (
    OnAccept,
    Submitter,
    as_payload,
    idempotency_key,
    lost_job,
    transient,
)
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.triggers import DeadLetter, InFlight, Outcome, TriggerDef, TriggerStore

# the names that lived here before `submit.py` stay importable from here
__all__ = ["OnAccept", "RunnerTiming", "Submitter", "TriggerRunner", "idempotency_key"]

log = logging.getLogger("coldbrew.triggers")

_THROUGHPUT_WINDOW_S = 60.0
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class RunnerTiming:
    """The runner's waits (seconds): how long a fetch blocks, the backoffs, the safety sweep."""

    fetch_wait_s: float = 1.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    sweep_s: float = 5.0  # look up in-flight jobs whose end no listener reported


class TriggerRunner:
    """Drives one trigger's source and sink; `run()` until cancelled (pause, delete, stop)."""

    def __init__(
        self,
        trigger: TriggerDef,
        source: Source,
        sink: Sink | None,
        submitter: Submitter,
        store: TriggerStore,
        clock: Clock,
        timing: RunnerTiming | None = None,
    ) -> None:
        self.trigger = trigger
        self.source = source
        self.sink = sink
        self.submitter = submitter
        self.store = store
        self.clock = clock
        self.timing = timing or RunnerTiming()
        self.in_flight: dict[str, InFlight] = {}  # job id → the message it runs
        self._keys: set[str] = set()  # message keys in flight
        self._ended: list[Job] = []
        self._ended_event = asyncio.Event()
        self._room = asyncio.Event()
        self._held: list[Message] = []  # fetched, not yet accepted (a transient submit error)
        self._unacked: set[str] = set()  # message keys being accepted: settled after the ack
        self._recovered: set[str] = set()  # message keys whose rows a restart read back
        self._done_at: deque[tuple[float, int]] = deque()  # (monotonic, messages) for throughput
        self.last_lag: int | None = None
        self.running = False

    # -- what the manager calls
    def on_final(self, job: Job) -> None:
        """A job ended (the scheduler's final listener); ours are settled by the finish loop."""
        if job.id in self.in_flight:
            self._ended.append(job)
            self._ended_event.set()

    def throughput_per_s(self) -> float:
        """Messages finished per second over the last minute."""
        now = self.clock.monotonic()
        while self._done_at and self._done_at[0][0] < now - _THROUGHPUT_WINDOW_S:
            self._done_at.popleft()
        return sum(n for _, n in self._done_at) / _THROUGHPUT_WINDOW_S

    async def run(self) -> None:
        """Open the source and sink, pick up what was in flight, then fetch and settle."""
        self.running = True
        try:
            await self._open()
            await self._recover()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._fetch_loop())
                group.create_task(self._finish_loop())
        finally:
            self.running = False
            for part in (self.source, self.sink):
                if part is not None:
                    with contextlib.suppress(Exception):
                        await part.close()

    async def _open(self) -> None:
        """Open source and sink, retrying with backoff while their systems are unreachable."""
        backoff_s = self.timing.backoff_s
        while True:
            try:
                await self.source.open()
                if self.sink is not None:
                    await self.sink.open()
                return
            except Exception as exc:  # any failure of a foreign system
                await self._error("source_unavailable", exc)
                await self.clock.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.timing.backoff_max_s)

    async def _recover(self) -> None:
        """Messages acked before a restart whose jobs had not been settled: watch them again,
        and settle at once those whose jobs ended (or vanished) meanwhile."""
        rows = await self.store.in_flight(self.trigger.id)
        for row in rows:
            self._track(row)
        # their messages may come again (a crash before the ack, a source's redelivery to the
        # next owner) after the rows were settled here: acked then, never a second job
        self._recovered = {row.message_key for row in rows}
        await self._sweep()

    # -- fetch → submit → in flight → ack
    async def _fetch_loop(self) -> None:
        backoff_s = self.timing.backoff_s
        while True:
            room = self.trigger.max_in_flight - len(self.in_flight)
            if room <= 0:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await self.clock.wait_for(self._room.wait(), self.timing.fetch_wait_s)
                continue
            try:
                window = self._held or await self._window(min(room, self.trigger.batch_size))
                self._held = []
                if window:
                    await self._accept(window)
                backoff_s = self.timing.backoff_s
            except ColdbrewError as exc:  # a transient submit error: _held keeps the window
                await self._error(exc.error_type, exc)
                await self.clock.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.timing.backoff_max_s)
            except Exception as exc:  # the source's system failed
                await self._error("source_error", exc)
                await self.clock.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.timing.backoff_max_s)

    async def _window(self, want: int) -> list[Message]:
        """Up to `want` messages: wait for the first, then up to the batching window for more."""
        window = await self.source.fetch(want, self.timing.fetch_wait_s)
        if window and len(window) < want and self.trigger.batch_window_ms > 0:
            deadline = self.clock.monotonic() + self.trigger.batch_window_ms / 1000
            while len(window) < want and (left_s := deadline - self.clock.monotonic()) > 0:
                window += await self.source.fetch(want - len(window), left_s)
        self.last_lag = await self.source.lag() if window else 0
        return window

    async def _accept(self, window: list[Message]) -> None:
        """Submit the window's jobs together, record them in flight, then ack the messages."""
        fresh = [m for m in window if m.key not in self._keys and m.key not in self._recovered]
        keys = {m.key for m in fresh}
        self._unacked |= keys
        try:
            await self._accept_fresh(window, fresh)
        finally:
            self._unacked -= keys
            if self._ended:  # jobs that ended before their message was acked: settle now
                self._ended_event.set()

    async def _accept_fresh(self, window: list[Message], fresh: list[Message]) -> None:
        results = await asyncio.gather(
            *(self._submit(m.key, m.body, m.received_at, 1) for m in fresh),
            return_exceptions=True,
        )
        rows: list[InFlight] = []
        dead: list[tuple[Message, dict[str, Any]]] = []
        held: list[Message] = []
        for message, result in zip(fresh, results, strict=True):
            if isinstance(result, InFlight):
                rows.append(result)
            elif isinstance(result, ColdbrewError) and not transient(result):
                dead.append((message, result.to_json()["error"]))  # the message itself is bad
            elif isinstance(result, BaseException):
                held.append(message)
        if rows:  # counted received with their rows: a redelivery after a crash is not new
            await self.store.put_in_flight(rows, received=len(rows))
        if dead:
            await self.store.count_received(self.trigger.id, len(dead))
            await self._dead_letter_unsubmitted(dead)
        done = [m for m in window if m not in held]
        if done:
            await self.source.ack(done)
        if held:
            self._held = held
            error = next(r for r in results if isinstance(r, BaseException))
            if isinstance(error, ColdbrewError):
                raise error
            raise RuntimeError(str(error)) from error

    async def _submit(self, key: str, body: Any, received_at: float, attempt: int) -> InFlight:
        """Make (or find again) the job of one attempt at one message, and watch it."""
        row: InFlight | None = None

        async def accepted(job: Job) -> None:  # before the job is queued: its end is not missed
            nonlocal row
            row = InFlight(self.trigger.id, key, job.id, attempt, body, received_at)
            self._track(row)

        ikey = idempotency_key(self.trigger.id, key, attempt)
        job = await self.submitter.submit(self.trigger, as_payload(body), ikey, accepted)
        if row is None:  # a replay: the job was made before a restart
            row = InFlight(self.trigger.id, key, job.id, attempt, body, received_at)
            self._track(row)
        if job.status.final:
            self.on_final(job)
        return row

    def _track(self, row: InFlight) -> None:
        self.in_flight[row.job_id] = row
        self._keys.add(row.message_key)

    def _untrack(self, row: InFlight) -> None:
        self.in_flight.pop(row.job_id, None)
        self._keys.discard(row.message_key)
        self._room.set()

    # -- ended jobs → retry, dead letter, sink
    async def _finish_loop(self) -> None:
        swept_at = self.clock.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._ended_event.wait(), self.timing.sweep_s)
            self._ended_event.clear()
            ended, self._ended = self._ended, []
            if ended:
                await self._settle(ended)
            if self.clock.monotonic() - swept_at >= self.timing.sweep_s:
                swept_at = self.clock.monotonic()
                await self._sweep()

    async def _sweep(self) -> None:
        """Look up every in-flight job: settle those that ended with no word to `on_final`."""
        rows = list(self.in_flight.values())
        ended: list[Job] = []
        for start in range(0, len(rows), _LOOKUP_CHUNK):
            chunk = rows[start : start + _LOOKUP_CHUNK]
            found = {
                j.id: j
                for j in await self.submitter.lookup(
                    self.trigger.account, [r.job_id for r in chunk]
                )
            }
            for row in chunk:
                job = found.get(row.job_id)
                if job is None:
                    job = lost_job(row, self.trigger, self.clock.time())
                if job.status.final:
                    ended.append(job)
        if ended:
            await self._settle(ended)

    async def _settle(self, ended: Sequence[Job]) -> None:
        """Write results, retry failures, dead-letter the hopeless, then drop them in the store."""
        early = [
            j for j in ended if (r := self.in_flight.get(j.id)) and r.message_key in self._unacked
        ]
        if early:  # settled once acked: a crash before the ack must not settle it twice
            self._ended += early
            ended = [j for j in ended if j not in early]
        records: list[SinkRecord] = []
        retries: list[InFlight] = []
        outcome = Outcome(at=self.clock.time())
        for job in ended:
            row = self.in_flight.get(job.id)
            if row is None:
                continue  # settled already (a sweep and a listener both saw it)
            if job.status is JobStatus.COMPLETED:
                outcome.completed += 1
                outcome.done.append(row.message_key)
                records.append(self._record(row, job))
                continue
            outcome.failed += 1
            error = job.error or {"type": job.status.value.lower(), "message": job.status.value}
            outcome.last_error = error
            if row.attempt < self.trigger.max_attempts:
                retries.append(row)
                continue
            outcome.done.append(row.message_key)
            outcome.dead.append(
                DeadLetter(
                    self.trigger.id, row.message_key, row.body, error, row.attempt, outcome.at
                )
            )
            records.append(self._record(row, job))
        await self._write_sink(records)
        for letter in outcome.dead:
            await self._source_dead_letter(letter)
        for row in retries:
            self._untrack(row)
        await self._retry(retries)
        await self.store.finish_messages(self.trigger.id, outcome)
        for job in ended:
            if (row := self.in_flight.get(job.id)) is not None and row.message_key in outcome.done:
                self._untrack(row)
        if outcome.done:
            self._done_at.append((self.clock.monotonic(), len(outcome.done)))

    def _record(self, row: InFlight, job: Job) -> SinkRecord:
        return SinkRecord(
            self.trigger.id,
            row.message_key,
            job.id,
            job.status.value,
            job.output if job.status is JobStatus.COMPLETED else None,
            job.error,
            job.finished_at or self.clock.time(),
        )

    async def _retry(self, rows: list[InFlight]) -> None:
        """Submit the next attempt of each failed message; the store row follows the new job."""
        again: list[InFlight] = []
        for row in rows:
            try:
                again.append(
                    await self._submit(row.message_key, row.body, row.received_at, row.attempt + 1)
                )
            except ColdbrewError as exc:  # keep the old row: the next sweep settles it again
                self._track(row)
                await self._error(exc.error_type, exc)
        if again:
            await self.store.put_in_flight(again)

    async def _write_sink(self, records: list[SinkRecord]) -> None:
        """Write to the sink until it takes the records (the rows stay in flight meanwhile)."""
        if self.sink is None or not records:
            return
        backoff_s = self.timing.backoff_s
        while True:
            try:
                await self.sink.write(records)
                return
            except Exception as exc:  # the sink's system failed
                await self._error("sink_error", exc)
                await self.clock.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.timing.backoff_max_s)

    async def _source_dead_letter(self, letter: DeadLetter) -> None:
        message = Message(letter.message_key, letter.body, letter.at)
        try:
            await self.source.dead_letter(message, letter.error)
        except Exception as exc:  # our own table has it anyway
            await self._error("dead_letter_error", exc)

    async def _dead_letter_unsubmitted(self, dead: list[tuple[Message, dict[str, Any]]]) -> None:
        """Messages the job service refused (bad input): no job, straight to the dead letters."""
        now = self.clock.time()
        letters = [DeadLetter(self.trigger.id, m.key, m.body, e, 0, now) for m, e in dead]
        records = [
            SinkRecord(
                self.trigger.id, d.message_key, "", JobStatus.FAILED.value, None, d.error, now
            )
            for d in letters
        ]
        await self._write_sink(records)  # one record per message, even without a job
        for letter in letters:
            await self._source_dead_letter(letter)
        outcome = Outcome(failed=len(letters), dead=letters, last_error=letters[-1].error, at=now)
        await self.store.finish_messages(self.trigger.id, outcome)

    async def _error(self, kind: str, exc: BaseException) -> None:
        """Log and remember the latest error (`coldbrew triggers list` shows it)."""
        log.warning("trigger %s (%s): %s: %s", self.trigger.name, self.trigger.id, kind, exc)
        with contextlib.suppress(Exception):
            await self.store.record_error(
                self.trigger.id, {"type": kind, "message": str(exc)}, self.clock.time()
            )
