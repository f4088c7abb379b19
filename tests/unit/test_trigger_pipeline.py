"""A trigger whose target is a pipeline: one run per message (a redelivery finds the first run
by the message's idempotency key), watched as a job with the run's id, and the run's final
output written to the sink as a job's would be."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.unit.test_pipeline_driver import FOUR, ME, FakeJobs, handlers, until
from tests.unit.test_trigger_runner import FakeSink, FakeSource

from coldbrew.api.triggers import JobSubmitter, run_as_job
from coldbrew.clock import FakeClock
from coldbrew.control.pipelines import Pipelines
from coldbrew.integrations.triggers.base import Message
from coldbrew.integrations.triggers.runner import TriggerRunner
from coldbrew.store.models import Job
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.triggers import TriggerDef, TriggerState


class Jobs(FakeJobs):
    """FakeJobs with the job service's bulk read the trigger runner's sweep uses."""

    async def lookup(self, account: str, ids: list[str]) -> list[Job]:
        return [self.jobs[i] for i in ids if i in self.jobs]


def _trigger() -> TriggerDef:
    return TriggerDef("t1", "acme", "moods-in", "redis", {}, "pipeline", "moods", "fake", {}, 10,
                      0, 100, 2, "s", TriggerState.ACTIVE, 0.0)  # fmt: skip


def test_each_message_runs_the_pipeline_once_and_its_output_reaches_the_sink() -> None:
    async def main() -> None:
        clock = FakeClock()
        store = SQLiteStore(":memory:")
        await store.create_account("acme", "whsec", clock.time())
        for name in handlers():
            await store.add_version("acme", name, "sha", "app", "M", {}, {}, clock.time())
        await store.create_trigger(_trigger())
        jobs = Jobs(clock, handlers())
        driver = Pipelines(store, jobs, clock)  # type: ignore[arg-type]
        await driver.define(ME, FOUR)
        source, sink = FakeSource(), FakeSink()
        runner = TriggerRunner(
            _trigger(),
            source,
            sink,
            JobSubmitter(jobs, driver),
            store,
            clock,  # type: ignore[arg-type]
        )
        ended: list[str] = []
        driver.end_listeners.append(lambda run: ended.append(run_as_job(run).id))

        window = [Message(k, {"who": k}, 0.0) for k in ("ana", "bo")]
        await runner._accept(window)
        await runner._accept(window[:1])  # redelivered: the same run, not a second one
        assert source.acked == ["ana", "bo", "ana"]
        rows = await store.in_flight("t1")
        assert len(rows) == 2 and len({r.job_id for r in rows}) == 2
        assert {r.job_id for r in rows} == set(runner.in_flight)

        async def both_ended() -> bool:
            await jobs.run_all()
            return len(ended) == 2

        await until(both_ended, "both runs ending")
        assert sorted(ended) == sorted(runner.in_flight)
        await runner._sweep()  # looks the runs up (no job has their ids) and settles them
        outputs = sorted((r.message_key, r.status, r.output["text"]) for r in sink.records)
        assert outputs == [
            ("ana", "COMPLETED", "ana: try a happy song"),
            ("bo", "COMPLETED", "bo: try a happy song"),
        ]
        assert all(r.job_id in ended for r in sink.records)
        assert await store.in_flight("t1") == []
        assert (await store.counters("t1")).completed == 2
        assert jobs.submitted == Counter(digits=2, emotion=2, recommend=2, notify=2)
        await driver.stop()
        await store.close()

    asyncio.run(main())


def test_a_missing_pipeline_keeps_the_message_for_later() -> None:
    async def main() -> None:
        clock = FakeClock()
        store = SQLiteStore(":memory:")
        await store.create_account("acme", "whsec", clock.time())
        await store.create_trigger(_trigger())
        jobs = Jobs(clock, {})
        driver = Pipelines(store, jobs, clock)  # type: ignore[arg-type]
        source, sink = FakeSource(), FakeSink()
        runner = TriggerRunner(
            _trigger(),
            source,
            sink,
            JobSubmitter(jobs, driver),
            store,
            clock,  # type: ignore[arg-type]
        )
        raised: list[Any] = []
        try:
            await runner._accept([Message("m1", {"who": "x"}, 0.0)])
        except Exception as exc:  # the transient NotFound holds the window
            raised.append(exc)
        assert raised and raised[0].status_code == 404
        assert source.acked == [] and runner._held and await store.in_flight("t1") == []
        await store.close()

    asyncio.run(main())
