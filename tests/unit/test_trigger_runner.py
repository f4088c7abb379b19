"""The trigger runner's rules, step by step on an in-memory store: a redelivery makes no second
job, the ack follows the in-flight row, failures retry then dead-letter, a restart picks up
what was in flight, and a full queue keeps the window for later."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.errors import InvalidInput, QueueFull
from coldbrew.integrations.triggers.base import Message, SinkRecord
from coldbrew.integrations.triggers.runner import TriggerRunner
from coldbrew.integrations.triggers.submit import OnAccept, idempotency_key
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.triggers import TriggerDef, TriggerState

pytestmark = pytest.mark.anyio


class FakeSubmitter:
    """The job service's idempotency, in memory: one job per key."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[str, str] = {}
        self.refuse: Exception | None = None

    async def submit(
        self, trigger: TriggerDef, payload: dict[str, Any], key: str, on_accept: OnAccept
    ) -> Job:
        if self.refuse is not None:
            raise self.refuse
        if key in self.by_key:
            return self.jobs[self.by_key[key]]
        job = Job(f"j{len(self.jobs) + 1}", trigger.account, 1, trigger.target, 1,
                  JobStatus.IN_QUEUE, payload, 0.0, 1e12, 30.0, 1)  # fmt: skip
        await on_accept(job)
        self.jobs[job.id], self.by_key[key] = job, job.id
        return job

    async def lookup(self, account: str, job_ids: list[str]) -> list[Job]:
        return [self.jobs[j] for j in job_ids if j in self.jobs]

    def end(self, job_id: str, status: JobStatus, error: str | None = None) -> Job:
        job = self.jobs[job_id]
        job.status = status
        job.output = job.input if status is JobStatus.COMPLETED else None
        job.error = None if error is None else {"type": "ValueError", "message": error}
        return job


class FakeSource:
    def __init__(self) -> None:
        self.acked: list[str] = []
        self.dead: list[tuple[str, dict[str, Any]]] = []

    async def open(self) -> None: ...
    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        return []

    async def ack(self, messages: Sequence[Message]) -> None:
        self.acked += [m.key for m in messages]

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        self.dead.append((message.key, error))

    async def lag(self) -> int | None:
        return 0

    async def close(self) -> None: ...


class FakeSink:
    def __init__(self) -> None:
        self.records: list[SinkRecord] = []
        self.written = asyncio.Event()

    async def open(self) -> None: ...
    async def write(self, records: Sequence[SinkRecord]) -> None:
        self.records += records
        self.written.set()

    async def close(self) -> None: ...


def _trigger(max_attempts: int = 2) -> TriggerDef:
    return TriggerDef("t1", "acme", "orders", "redis", {}, "endpoint", "echo", "fake", {}, 10, 0,
                      100, max_attempts, "s", TriggerState.ACTIVE, 0.0)  # fmt: skip


@pytest.fixture
async def store() -> Any:
    db = SQLiteStore(":memory:")
    await db.create_trigger(_trigger())
    yield db
    await db.close()


def _runner(store: Any, submitter: FakeSubmitter, source: FakeSource, sink: FakeSink) -> Any:
    return TriggerRunner(_trigger(), source, sink, submitter, store, FakeClock())


def _messages(*keys: str) -> list[Message]:
    return [Message(k, {"n": k}, 0.0) for k in keys]


async def test_a_window_becomes_one_job_per_message_and_is_acked_once_in_flight(store: Any) -> None:
    submitter, source, sink = FakeSubmitter(), FakeSource(), FakeSink()
    runner = _runner(store, submitter, source, sink)
    await runner._accept(_messages("a", "b"))
    assert source.acked == ["a", "b"]
    assert sorted(r.message_key for r in await store.in_flight("t1")) == ["a", "b"]
    await runner._accept(_messages("a"))  # redelivered while in flight: acked, no second job
    assert len(submitter.jobs) == 2 and source.acked == ["a", "b", "a"]
    await runner._settle([submitter.end("j1", JobStatus.COMPLETED)])
    assert [(r.message_key, r.status, r.output) for r in sink.records] == [
        ("a", "COMPLETED", {"n": "a"})
    ]
    assert [r.message_key for r in await store.in_flight("t1")] == ["b"]
    assert (await store.counters("t1")).completed == 1


async def test_a_failing_message_is_retried_then_dead_lettered(store: Any) -> None:
    submitter, source, sink = FakeSubmitter(), FakeSource(), FakeSink()
    runner = _runner(store, submitter, source, sink)
    await runner._accept(_messages("p"))
    await runner._settle([submitter.end("j1", JobStatus.FAILED, "bad")])
    assert submitter.by_key[idempotency_key("t1", "p", 2)] == "j2"  # the second attempt
    assert [r.attempt for r in await store.in_flight("t1")] == [2]
    await runner._settle([submitter.end("j2", JobStatus.FAILED, "bad again")])
    assert source.dead == [("p", {"type": "ValueError", "message": "bad again"})]
    (letter,) = await store.dead_letters("t1", 10)
    assert (letter.attempts, letter.body) == (2, {"n": "p"})
    assert [(r.status, r.error) for r in sink.records] == [
        ("FAILED", {"type": "ValueError", "message": "bad again"})
    ]
    counters = await store.counters("t1")
    assert (counters.failed, counters.dead_lettered, counters.completed) == (2, 1, 0)
    assert await store.in_flight("t1") == []


async def test_a_restart_settles_jobs_that_ended_while_it_was_down(store: Any) -> None:
    submitter, sink = FakeSubmitter(), FakeSink()
    await _runner(store, submitter, FakeSource(), sink)._accept(_messages("a", "b"))
    submitter.end("j1", JobStatus.COMPLETED)  # ended while no runner listened
    again = _runner(store, submitter, FakeSource(), sink)
    await again._recover()
    assert [r.message_key for r in sink.records] == ["a"]
    assert list(again.in_flight) == ["j2"]  # still watched
    await again._accept(_messages("b"))  # the source redelivers: no second job
    assert len(submitter.jobs) == 2


async def test_a_refused_input_is_dead_lettered_and_a_full_queue_holds_the_window(
    store: Any,
) -> None:
    submitter, source, sink = FakeSubmitter(), FakeSource(), FakeSink()
    runner = _runner(store, submitter, source, sink)
    submitter.refuse = QueueFull("queue full", retry_after_s=1.0)
    with pytest.raises(QueueFull):
        await runner._accept(_messages("a"))
    assert source.acked == [] and [m.key for m in runner._held] == ["a"]
    submitter.refuse = InvalidInput("x must be a number")
    await runner._accept(_messages("b"))
    assert source.acked == ["b"] and [k for k, _ in source.dead] == ["b"]
    assert [(r.message_key, r.status, r.job_id) for r in sink.records] == [("b", "FAILED", "")]


def test_idempotency_keys_stay_short_and_printable() -> None:
    assert idempotency_key("t1", "1700-0", 1) == "trigger:t1:1:1700-0"
    long_key = idempotency_key("t1", "é" * 300, 2)
    assert long_key.startswith("trigger:t1:2:sha256:") and len(long_key) < 255


async def test_the_finish_loop_settles_what_on_final_reports(store: Any) -> None:
    submitter, source, sink = FakeSubmitter(), FakeSource(), FakeSink()
    runner = _runner(store, submitter, source, sink)
    await runner._accept(_messages("a"))
    task = asyncio.create_task(runner._finish_loop())
    runner.on_final(submitter.end("j1", JobStatus.COMPLETED))
    await asyncio.wait_for(sink.written.wait(), 10)  # a bound: store calls run on its thread
    task.cancel()
    assert [r.message_key for r in sink.records] == ["a"]
