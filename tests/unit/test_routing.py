"""The job service on a gateway that does not own the endpoint: a waiting job goes to the owner
(one hop), or, when no owner answers, is queued durably and read back from the store; a job
forwarded here runs here; and a scheduler that does not own an endpoint leaves its queue alone."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from tests.unit.test_job_service import ME, World, run

from coldbrew.clock import FakeClock
from coldbrew.cluster.node import HOP_TOKEN_TTL_S, Cluster
from coldbrew.config import Settings
from coldbrew.control.routing import Router, job_from_wire, job_to_wire
from coldbrew.crypto import Sealer
from coldbrew.errors import Forbidden
from coldbrew.store.models import Job, JobStatus, WebhookState


class FakeRouter(Router):
    """Owns nothing; the owner answers with `answer` (None: unreachable)."""

    def __init__(self, answer: JobStatus | None) -> None:
        self.answer = answer
        self.sent: list[tuple[str, float]] = []
        self.cancels: list[str] = []

    def owns(self, endpoint_id: int) -> bool:
        return False

    async def forward(self, job: Job, wait_s: float) -> Job | None:
        self.sent.append((job.id, wait_s))
        if self.answer is None:
            return None
        return dataclasses.replace(job, status=self.answer, output={"by": "owner"})

    async def cancel_elsewhere(self, job: Job) -> Job | None:
        self.cancels.append(job.id)
        if self.answer is None:
            return None
        return dataclasses.replace(job, status=JobStatus.CANCELLED)


def _elsewhere(tmp_path: Path, answer: JobStatus | None) -> tuple[World, FakeRouter]:
    w = World(tmp_path)
    router = FakeRouter(answer)
    w.jobs.router = router
    return w, router


def test_a_waiting_job_for_another_gateways_endpoint_is_forwarded_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        w, router = _elsewhere(tmp_path, JobStatus.COMPLETED)
        await w.setup()
        job, _ = await w.jobs.submit(ME, "e", {"n": 1}, wait_s=5)
        assert (job.status, job.output) == (JobStatus.COMPLETED, {"by": "owner"})
        assert router.sent == [(job.id, 5)]
        assert await w.store.get_job(job.id) is None  # the owner keeps it, not this gateway
        assert not w.handle.job_ids()  # no local worker ran it

    run(scenario())


def test_an_unreachable_owner_leaves_the_job_queued_and_read_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        w, router = _elsewhere(tmp_path, None)
        await w.setup()
        w.scheduler.owns = lambda endpoint_id: False  # this gateway's scheduler leaves it too
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 1}, wait_s=30))
        stored = None
        for _ in range(100):  # store calls run on the store's thread
            await asyncio.sleep(0.01)
            if router.sent and (stored := await w.store.get_job(router.sent[0][0])):
                break
        job_id = router.sent[0][0]
        assert stored is not None and stored.status is JobStatus.IN_QUEUE  # durable
        await w.scheduler.tick()
        assert (await w.store.get_job(job_id)).status is JobStatus.IN_QUEUE  # type: ignore[union-attr]
        # the owner (another gateway) claims and ends it in the shared store
        await w.store.claim_job(job_id, "w-gother-000000000001", w.clock.time())
        await w.store.finish(job_id, JobStatus.COMPLETED, w.clock.time(), output={"x": 1})
        for _ in range(20):
            w.clock.advance(0.5)
            await asyncio.sleep(0.01)
            if submitting.done():
                break
        job, _ = await submitting
        assert (job.status, job.output) == (JobStatus.COMPLETED, {"x": 1})

    run(scenario())


def test_a_forwarded_job_runs_here_and_only_for_its_own_account(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)  # the owner: no router
        await w.setup()
        endpoint, version, spec = await w.jobs.current(ME, "e")
        copy = Job(
            id="fwd-1",
            account="a",
            endpoint_id=endpoint.id,
            endpoint="e",
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input={"n": 1},
            created_at=w.clock.time(),
            expires_at=w.clock.time() + 60,
            timeout_s=spec.timeout_s,
            max_attempts=1,
        )
        with pytest.raises(Forbidden):
            await w.jobs.run_forwarded("someone-else", copy, 5)
        running = asyncio.ensure_future(w.jobs.run_forwarded("a", copy, 5))
        done = await w.answer(running)  # type: ignore[arg-type]
        assert done.status is JobStatus.COMPLETED and done.id == "fwd-1"  # type: ignore[attr-defined]

    run(scenario())


@pytest.mark.parametrize("reachable", [True, False], ids=["there", "here"])
def test_a_running_job_is_cancelled_where_its_worker_runs(tmp_path: Path, reachable: bool) -> None:
    async def scenario() -> None:
        w, router = _elsewhere(tmp_path, JobStatus.CANCELLED if reachable else None)
        await w.setup()
        w.scheduler.owns = lambda endpoint_id: False
        queued, _ = await w.jobs.submit(ME, "e", {"n": 1})
        assert (await w.jobs.cancel(ME, queued.id)).status is JobStatus.CANCELLED
        assert router.cancels == []  # a queued job is cancelled in the store, here
        running, _ = await w.jobs.submit(ME, "e", {"n": 2})
        await w.store.claim_job(running.id, "w-gother-000000000001", w.clock.time())
        cancelled = await w.jobs.cancel(ME, running.id)
        assert router.cancels == [running.id] and cancelled.status is JobStatus.CANCELLED
        stored = await w.store.get_job(running.id)
        assert stored is not None
        # sent there, the other gateway writes it; unreachable, it is written here
        expected = JobStatus.IN_PROGRESS if reachable else JobStatus.CANCELLED
        assert stored.status is expected

    run(scenario())


def test_only_a_gateway_holding_the_key_can_forward_a_job(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = Settings(home=tmp_path)
    key = Sealer.generate()
    here = Cluster(settings, clock, None, None, key)  # type: ignore[arg-type]
    stranger = Cluster(settings, clock, None, None, Sealer.generate())  # type: ignore[arg-type]
    body = b'{"job": {}, "wait_s": 5}'
    token = here.hop_token(body)
    assert here.hop_ok(body, token)
    assert not here.hop_ok(body + b" ", token)  # another body
    assert not here.hop_ok(body, stranger.hop_token(body))  # another key
    assert not here.hop_ok(body, None) and not here.hop_ok(body, "not a token")
    clock.advance(HOP_TOKEN_TTL_S + 1)
    assert not here.hop_ok(body, token)  # stale


def test_a_job_crosses_between_gateways_unchanged() -> None:
    job = Job(
        id="j",
        account="a",
        endpoint_id=1,
        endpoint="e",
        version_id=2,
        status=JobStatus.COMPLETED,
        input={"n": [1, 2]},
        created_at=1.5,
        expires_at=9.0,
        timeout_s=3.0,
        max_attempts=2,
        webhook_state=WebhookState.PENDING,
        extra={"k": "v"},
    )
    assert job_from_wire(job_to_wire(job)) == job
    with pytest.raises(ValueError, match="unknown job fields"):
        job_from_wire({**job_to_wire(job), "surprise": 1})
