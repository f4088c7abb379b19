"""What a caller or a worker claims is believed only as far as the gateway can check it: a
hostile worker runs tenant code and must not lower its account's bill or read another endpoint's
secrets, and a key must not mint one that outlives it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.test_sync_lane import World, settle

from coldbrew.api.credentials import _key_request
from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.template import TemplateKey
from coldbrew.errors import InvalidRequest
from coldbrew.metering.report import job_cost_usd
from coldbrew.store.models import JobStatus, Principal


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
        await settle()
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
        price = w.scheduler.settings.prices_per_hour_usd["cpu"]
        assert stored.cost_usd == job_cost_usd(3600.0, price) > 0

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
