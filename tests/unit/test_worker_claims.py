"""What a caller or a worker claims is believed only as far as the gateway can check it: a
hostile worker runs tenant code and must not lower its account's bill or read another endpoint's
secrets, and a key must not mint one that outlives it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.conftest import FakeBackend, World, settle
from tests.unit.test_fair_turns import _job
from tests.unit.test_poison import final

from coldbrew.api.credentials import _key_request
from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.template import TemplateKey
from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control import frames
from coldbrew.control.scheduler import Scheduler
from coldbrew.errors import InvalidRequest
from coldbrew.metering.report import job_cost_usd
from coldbrew.store.models import JobStatus, Principal
from coldbrew.store.sqlite import SQLiteStore


def test_a_done_frame_cannot_claim_a_batch_share_to_cut_its_cost(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        job = w.job()
        await w.run_durable(job)
        assert handle.job_ids() == [job.id]
        w.clock.advance(3600.0)  # an hour of work
        handle.running.discard(job.id)
        # not in a batch, yet the worker claims it shared its time with a million others
        handle.frames.put_nowait({"t": "done", "id": job.id, "output": {}, "share": 1_000_000})
        stored = await final(w, job.id)  # store calls hop to the store's thread
        assert stored.status is JobStatus.COMPLETED
        price = w.scheduler.settings.prices_per_hour_usd["cpu"]
        assert stored.cost_usd == job_cost_usd({"cpu": price}, "cpu", 3600.0) > 0

    asyncio.run(scenario())


def test_launches_with_different_secrets_never_share_a_template(tmp_path: Path) -> None:
    def launch(env: dict[str, str]) -> WorkerLaunch:
        return WorkerLaunch("w", tmp_path, "app", "Model", 1, "cpu", tmp_path / "w.log", env=env)

    first, rotated = launch({"TOKEN": "one"}), launch({"TOKEN": "two"})
    assert TemplateKey.of(first) != TemplateKey.of(rotated)  # a fork inherits the env
    assert TemplateKey.of(first) == TemplateKey.of(launch({"TOKEN": "one"}))
    assert "one" not in repr(TemplateKey.of(first))


def test_an_expiring_admin_key_cannot_mint_a_key_that_outlives_it() -> None:
    temporary = Principal("default", True, key_id="k", expires_at=1_000.0 + 3600.0)
    for body in ({"admin": True}, {"account": "acme"}, {"admin": True, "expires": "2h"}):
        with pytest.raises(InvalidRequest, match="cannot outlive"):
            _key_request(body, temporary, now=1_000.0)
    assert _key_request({"admin": True, "expires": "30m"}, temporary, 1_000.0)[2] == 2_800.0
    permanent = Principal("default", True, key_id="p")
    assert _key_request({"admin": True}, permanent, 1_000.0) == ("default", True, None)


def test_short_jobs_meanwhile_do_not_reset_a_long_jobs_log_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "_MAX_TRACKED_JOBS", 3)  # stands for 10,000

    async def scenario() -> None:
        clock, store, backend = FakeClock(), SQLiteStore(":memory:"), FakeBackend()
        settings = Settings(home=tmp_path, hardware_slots={"cpu": 1}, job_log_max_bytes=1024)
        scheduler = Scheduler(store, backend, clock, settings)
        await store.create_account("a", "whsec", clock.time())
        spec = {"min_workers": 1, "concurrency": 2}
        version, _ = await store.add_version("a", "e", "sha", "app", "E", spec, {}, clock.time())
        await scheduler.refresh_endpoints()
        await scheduler.tick()
        await settle()
        handle = backend.handles[0]

        def log(job_id: str, line: str) -> None:
            frame = {"t": "log", "id": job_id, "ts": 1.0, "stream": "stdout", "line": line}
            handle.frames.put_nowait(frame)

        async def submit() -> str:
            clock.advance(1.0)  # a fresh second: the line rate is not what is tested
            job = _job(version, clock)
            await store.create_job(job)
            await scheduler.dispatch_now(job)
            await settle()
            return job.id

        long = await submit()
        log(long, "x" * 2000)  # past the cap: a marker, then nothing more
        for _ in range(5):  # short jobs on the other slot, each with a line of its own
            short = await submit()
            log(short, "short")
            handle.done(short)
            await settle()
        clock.advance(1.0)
        log(long, "y" * 500)  # must still be dropped
        handle.done(long)
        await settle()
        await scheduler.tick()
        lines = [entry["line"] for entry in await store.job_logs(long)]
        assert len(lines) == 1 and "log truncated" in lines[0], lines

    asyncio.run(scenario())
