"""The pipeline driver over a fake job runner, a FakeClock and the real SQLite store: one id for a
run, per-stage cost summing to the run's, a failed stage failing the run by name, `/retry`
re-running only what did not complete, and a new driver on the same store (a restarted server)
resuming a run without submitting a finished stage again."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.control.jobs import Submitted
from coldbrew.control.pipelines import STAGE_POLL_S, Pipelines
from coldbrew.control.pipestages import total_cost_usd
from coldbrew.errors import Conflict, InvalidPipeline, NotFound
from coldbrew.store.models import Job, JobStatus, Principal
from coldbrew.store.sqlite import SQLiteStore

ME = Principal("acme", admin=False)
FOUR = {
    "name": "moods",
    "steps": [
        {"name": "see", "endpoint": "digits"},
        {"name": "feel", "endpoint": "emotion", "input": {"label": "$.label"}},
        {"name": "suggest", "endpoint": "recommend"},
        {"name": "tell", "endpoint": "notify", "input": {"item": "$.item", "who": "$input.who"}},
    ],
}
Handler = Callable[[dict[str, Any]], Any]


class FakeJobs:
    """The job service as the driver uses it: `submit` queues, `run_all` answers every queued
    job with its endpoint's handler (raising fails it), each job costing `cost_usd`."""

    def __init__(self, clock: FakeClock, handlers: dict[str, Handler]) -> None:
        self.scheduler = self  # add_final_listener lives on the scheduler
        self.clock = clock
        self.handlers = handlers
        self.jobs: dict[str, Job] = {}
        self.keys: dict[str, str] = {}
        self.submitted: Counter[str] = Counter()
        self.listeners: list[Callable[[Job], None]] = []

    def add_final_listener(self, listener: Callable[[Job], None]) -> None:
        self.listeners.append(listener)

    async def submit(
        self, principal: Principal, endpoint: str, payload: dict[str, Any], **kw: Any
    ) -> Submitted:
        key = kw["idempotency_key"]
        if key in self.keys:
            return Submitted(self.jobs[self.keys[key]], True)
        if endpoint not in self.handlers:
            raise NotFound(f"no endpoint {endpoint!r}")
        now = self.clock.time()
        job = Job(
            str(uuid.uuid4()), principal.account, 1, endpoint, 1, JobStatus.IN_QUEUE, payload,
            now, now + 3600, 60.0, 1,
        )  # fmt: skip
        self.jobs[job.id], self.keys[key] = job, job.id
        self.submitted[endpoint] += 1
        return Submitted(job, False)

    async def find(self, account: str, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def cancel(self, principal: Principal, job_id: str) -> Job:
        job = self.jobs[job_id]
        job.status = JobStatus.CANCELLED
        for listener in self.listeners:  # a cancelled job is final: announced as any end
            listener(job)
        return job

    async def run_all(self, seconds: float = 1.0) -> int:
        """Run every queued job (each takes `seconds`); how many ran."""
        await settle()
        queued = [j for j in self.jobs.values() if j.status is JobStatus.IN_QUEUE]
        for job in queued:
            job.started_at = self.clock.time()
            self.clock.advance(seconds)
            job.finished_at, job.cost_usd = self.clock.time(), 0.001 * seconds
            try:
                job.output, job.status = self.handlers[job.endpoint](job.input), JobStatus.COMPLETED
            except Exception as exc:
                job.error, job.status = (
                    {"type": "ValueError", "message": str(exc)},
                    JobStatus.FAILED,
                )
            for listener in self.listeners:
                listener(job)
        await settle()
        return len(queued)


async def settle() -> None:
    """Let the driver's tasks take their next steps (the store answers on its own thread)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for `check()` to hold: a bound on a wait (2,000 polls), not a timing assertion."""
    for _ in range(2000):
        if await check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} did not happen")


async def stages_of(store: SQLiteStore, run_id: str, count: int) -> None:
    async def enough() -> bool:
        return len(await store.stages(run_id)) >= count

    await until(enough, f"{count} stages of run {run_id}")


def handlers(fail_emotion: list[bool] | None = None) -> dict[str, Handler]:
    def emotion(p: dict[str, Any]) -> dict[str, Any]:
        if fail_emotion and fail_emotion.pop(0):
            raise ValueError("emotion model not ready")
        return {"mood": "happy" if p["label"] % 2 else "calm"}

    return {
        "digits": lambda p: {"label": 7},
        "emotion": emotion,
        "recommend": lambda p: {"item": f"a {p['mood']} song"},
        "notify": lambda p: {"text": f"{p['who']}: try {p['item']}"},
    }


async def world(jobs_handlers: dict[str, Handler]) -> tuple[SQLiteStore, FakeJobs, Pipelines]:
    clock = FakeClock()
    store = SQLiteStore(":memory:")
    await store.create_account("acme", "whsec", clock.time())
    for name in jobs_handlers:
        await store.add_version("acme", name, "sha", "app", "M", {}, {}, clock.time())
    jobs = FakeJobs(clock, jobs_handlers)
    return store, jobs, Pipelines(store, jobs, clock)  # type: ignore[arg-type]


async def _until_done(jobs: FakeJobs, driver: Pipelines, run_id: str) -> Any:
    """Run every job the run queues until the run ends; its final view."""

    async def ended() -> bool:
        await jobs.run_all()
        return (await driver.view(ME, "moods", run_id)).run.status.final

    await until(ended, f"run {run_id} ending")
    return await driver.view(ME, "moods", run_id)


def test_a_four_stage_run_has_one_id_and_costs_the_sum_of_its_stages() -> None:
    async def main() -> None:
        store, jobs, driver = await world(handlers())
        found, _ = await driver.define(ME, FOUR)
        run = await driver.submit(ME, found, {"who": "ana"}, None)
        view = await _until_done(jobs, driver, run.id)
        assert view.run.status is JobStatus.COMPLETED
        assert view.run.output == {"text": "ana: try a happy song"}
        assert [s.key for s in view.stages] == ["see", "feel", "suggest", "tell"]
        assert all(s.status is JobStatus.COMPLETED for s in view.stages)
        assert len({s.job_id for s in view.stages}) == 4
        assert total_cost_usd(view.stages) == pytest.approx(0.004)
        await store.close()

    asyncio.run(main())


def test_a_failed_stage_fails_the_run_and_retry_reruns_only_from_it() -> None:
    async def main() -> None:
        store, jobs, driver = await world(handlers(fail_emotion=[True]))
        found, _ = await driver.define(ME, FOUR)
        run = await driver.submit(ME, found, {"who": "ana"}, None)
        view = await _until_done(jobs, driver, run.id)
        assert view.run.status is JobStatus.FAILED
        assert view.run.error is not None
        assert view.run.error["stage"] == "feel"
        assert "stage 'feel' (endpoint 'emotion'" in view.run.error["message"]
        assert "emotion model not ready" in view.run.error["message"]
        retried = await driver.retry(ME, "moods", run.id)
        assert retried.attempt == 2
        view = await _until_done(jobs, driver, run.id)
        assert view.run.status is JobStatus.COMPLETED
        assert jobs.submitted["digits"] == 1  # the retry did not re-run it
        assert jobs.submitted["emotion"] == 2  # the failed job and its retry's
        assert [s.attempt for s in view.stages] == [1, 2, 2, 2]
        assert view.stages[1].earlier_cost_usd == pytest.approx(0.001)  # the failed job
        assert total_cost_usd(view.stages) == pytest.approx(0.005)  # five jobs ran for it
        with pytest.raises(Conflict, match="only a FAILED run can be retried"):
            await driver.retry(ME, "moods", run.id)
        await store.close()

    asyncio.run(main())


def test_a_new_driver_on_the_same_store_resumes_without_rerunning_finished_stages() -> None:
    async def main() -> None:
        store, jobs, first = await world(handlers())
        found, _ = await first.define(ME, FOUR)
        run = await first.submit(ME, found, {"who": "ana"}, None)
        await stages_of(store, run.id, 1)
        assert await jobs.run_all() == 1  # see
        await stages_of(store, run.id, 2)  # feel is submitted
        await first.stop()  # the server dies; the queued feel job is durable
        stages = await store.stages(run.id)
        assert [(s.key, s.status) for s in stages] == [
            ("see", JobStatus.COMPLETED),
            ("feel", JobStatus.IN_QUEUE),
        ]

        second = Pipelines(store, jobs, jobs.clock)  # type: ignore[arg-type]
        assert await second.resume() == 1
        view = await _until_done(jobs, second, run.id)
        assert view.run.status is JobStatus.COMPLETED
        assert jobs.submitted == Counter(digits=1, emotion=1, recommend=1, notify=1)
        assert stages[1].job_id == view.stages[1].job_id  # the same feel job, not a new one
        await store.close()

    asyncio.run(main())


def test_runsync_waits_for_the_run_and_cancel_stops_its_stage_jobs() -> None:
    async def main() -> None:
        store, jobs, driver = await world(handlers())
        found, _ = await driver.define(ME, FOUR)
        waiting = asyncio.ensure_future(driver.submit(ME, found, {"who": "bo"}, 30.0))

        async def answered() -> bool:
            await jobs.run_all()
            return waiting.done()

        await until(answered, "runsync answering")
        run = waiting.result()
        assert (run.status, run.output) == (JobStatus.COMPLETED, {"text": "bo: try a happy song"})

        other = await driver.submit(ME, found, {"who": "cy"}, None)
        await stages_of(store, other.id, 1)
        cancelled = await driver.cancel(ME, "moods", other.id)
        assert cancelled.run.status is JobStatus.CANCELLED
        assert cancelled.stages[0].status is JobStatus.CANCELLED
        assert await jobs.run_all() == 0
        await store.close()

    asyncio.run(main())


def test_define_checks_endpoints_and_names_and_reads_are_per_account() -> None:
    async def main() -> None:
        store, _, driver = await world(handlers())
        with pytest.raises(InvalidPipeline, match="no endpoint 'nope'"):
            await driver.define(ME, {"name": "x", "steps": [{"name": "a", "endpoint": "nope"}]})
        with pytest.raises(InvalidPipeline, match="an endpoint is already named 'digits'"):
            await driver.define(ME, {"name": "digits", "steps": ["emotion"]})
        _, changed = await driver.define(ME, FOUR)
        assert changed
        with pytest.raises(NotFound):
            await driver.get(Principal("beta", admin=False), "moods")
        await driver.delete(ME, "moods")
        assert await driver.find(ME, "moods") is None
        await store.close()

    asyncio.run(main())


def test_a_stage_that_ends_on_another_gateway_is_read_back_from_the_store() -> None:
    async def main() -> None:
        store, jobs, driver = await world(handlers())
        jobs.listeners.clear()  # the stage jobs end where this gateway hears nothing
        found, _ = await driver.define(ME, FOUR)
        run = await driver.submit(ME, found, {"who": "di"}, None)

        async def ended() -> bool:
            await jobs.run_all()
            jobs.clock.advance(STAGE_POLL_S)  # the waiting stage reads its job again
            await settle()
            return (await driver.view(ME, "moods", run.id)).run.status.final

        await until(ended, "the run ending without a final listener")
        view = await driver.view(ME, "moods", run.id)
        assert view.run.status is JobStatus.COMPLETED
        assert view.run.output == {"text": "di: try a happy song"}
        await store.close()

    asyncio.run(main())


def test_a_second_driver_of_the_same_run_submits_nothing_twice_and_keeps_a_cancel() -> None:
    async def main() -> None:
        store, jobs, first = await world(handlers())
        found, _ = await first.define(ME, FOUR)
        run = await first.submit(ME, found, {"who": "ed"}, None)
        second = Pipelines(store, jobs, jobs.clock)  # type: ignore[arg-type]
        assert await second.resume() == 1  # another gateway starting: both drive the run
        view = await _until_done(jobs, first, run.id)
        assert view.run.status is JobStatus.COMPLETED
        assert jobs.submitted == Counter(digits=1, emotion=1, recommend=1, notify=1)

        other = await first.submit(ME, found, {"who": "fy"}, None)
        await second.resume()
        await stages_of(store, other.id, 1)
        await first.cancel(ME, "moods", other.id)  # the second driver sees its stage cancelled
        await settle()
        await until(lambda: _idle(second), "the second driver giving up")
        assert (await store.get_run(other.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
        await store.close()

    asyncio.run(main())


async def _idle(driver: Pipelines) -> bool:
    return not driver._tasks


def test_an_ended_run_is_readable_for_the_retention_then_purged() -> None:
    async def main() -> None:
        store, jobs, driver = await world(handlers())
        found, _ = await driver.define(ME, FOUR)
        run = await driver.submit(ME, found, {"who": "gu"}, None)
        await _until_done(jobs, driver, run.id)
        jobs.clock.advance(driver.retention_s - 60)
        assert await driver.purge() == 0
        jobs.clock.advance(120)
        assert await driver.purge() == 1
        with pytest.raises(NotFound):
            await driver.view(ME, "moods", run.id)
        await store.close()

    asyncio.run(main())
