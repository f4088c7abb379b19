"""One account's worker cannot touch another's jobs, flood the logs, or overfill the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coldbrew.platform import Platform
from coldbrew.sdk.package import package
from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running, wait_for

pytestmark = pytest.mark.anyio
TENANTS = FIXTURES / "tenants"


async def _chunks(data: bytes) -> Any:
    yield data


async def deploy_as(platform: Platform, account: str, directory: Path) -> None:
    """Deploy a directory into `account` (not the default one) without HTTP."""
    data, sha = package(directory)
    if not platform.deployer.has_artifact(account, sha):
        await platform.deployer.store_artifact(account, sha, _chunks(data))
    await platform.deployer.deploy(account, sha, directory.name)
    await platform.scheduler.refresh_endpoints()


async def key_for(cb: Running, account: str) -> dict[str, str]:
    created = await cb.http.post("/v1/keys", json={"account": account})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def test_forged_frames_from_another_accounts_worker_land_nowhere(tmp_path: Path) -> None:
    async with running(tmp_path, TENANTS / "victim") as cb:
        mallory = await key_for(cb, "mallory")
        await deploy_as(cb.platform, "mallory", TENANTS / "mallory")
        job_id = await cb.run("streamer", {"n": 4, "pause_s": 0.3})
        first = await wait_for(
            lambda: cb.http.get(f"/v2/streamer/stream/{job_id}"),
            lambda r: r.json()["stream"],
        )
        seen = [item["output"] for item in first.json()["stream"]]

        forger = await cb.http.post(
            "/v2/forger/runsync", json={"input": {"target": job_id}}, headers=mallory
        )
        # the forger's own job ends normally: its bad frames did not stop the gateway reading
        assert forger.json()["status"] == "COMPLETED", forger.text
        assert forger.json()["output"] == {"sent": 10}
        assert cb.platform.scheduler.fleet.frames.dropped >= 10

        while True:
            body = (await cb.http.get(f"/v2/streamer/stream/{job_id}")).json()
            seen += [item["output"] for item in body["stream"]]
            if body["status"] == "COMPLETED" and not body["stream"]:
                break
        final = await cb.wait_job(job_id)
        logs = (await cb.http.get(f"/v1/jobs/{job_id}/logs")).json()["logs"]
    expected = [{"i": i} for i in range(4)]
    assert seen == expected  # the live stream
    assert final["status"] == "COMPLETED" and final["output"] == expected  # the stored output
    assert [entry["line"] for entry in logs] == [f"victim line {i}" for i in range(4)]


async def test_a_jobs_log_is_capped_in_the_worker_and_the_gateway(tmp_path: Path) -> None:
    async with running(tmp_path, job_log_max_bytes=20_000) as cb:
        await deploy_as(cb.platform, "mallory", TENANTS / "mallory")
        mallory = await key_for(cb, "mallory")
        received: list[str] = []
        on_log = cb.platform.scheduler.fleet.on_log

        def count(frame: dict[str, Any]) -> None:
            received.append(frame["line"])
            on_log(frame)

        cb.platform.scheduler.fleet.on_log = count
        result = await cb.http.post(
            "/v2/printer/runsync", json={"input": {"lines": 20_000, "width": 100}}, headers=mallory
        )
        assert result.json()["status"] == "COMPLETED"
        job_id = result.json()["id"]
        logs = (await cb.http.get(f"/v1/jobs/{job_id}/logs", headers=mallory)).json()["logs"]
    lines = [entry["line"] for entry in logs]
    assert lines[-1].startswith("[coldbrew] log truncated")
    assert "20000 bytes" in lines[-1]
    assert lines[:-1] == ["p" * 99] * 200  # 200 lines of 100 bytes fill the cap exactly
    # the worker cut its own output too: one line past the cap reached the gateway, not 20,000
    assert len(received) == 201


async def test_an_account_past_its_queue_limit_gets_429_on_every_route(tmp_path: Path) -> None:
    async with running(tmp_path, account_max_queued_jobs=3) as cb:
        await deploy_as(cb.platform, "mallory", TENANTS / "noop")
        await deploy_as(cb.platform, "victim", TENANTS / "noop")
        cb.platform.settings.hardware_slots["cpu"] = 0  # nothing starts: every job stays queued
        mallory = await key_for(cb, "mallory")
        victim = await key_for(cb, "victim")
        for i in range(3):
            ok = await cb.http.post("/v2/noop/run", json={"input": {"i": i}}, headers=mallory)
            assert ok.status_code == 200, ok.text

        refusals = [
            await cb.http.post("/v2/noop/run", json={"input": {}}, headers=mallory),
            await cb.http.post("/v2/noop/runsync?wait=0", json={"input": {}}, headers=mallory),
            await cb.http.post(
                "/v1/models/mallory/noop/predictions", json={"input": {}}, headers=mallory
            ),
            await cb.http.post(
                "/v2/models/noop/infer",
                json={"inputs": [{"name": "i", "shape": [1], "datatype": "INT64", "data": [1]}]},
                headers=mallory,
            ),
        ]
        for refused in refusals:
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "5"
        error = refusals[0].json()["error"]
        assert error["type"] == "queue_full" and error["limit"] == 3 and error["queued"] == 3
        assert "PATCH /v1/accounts/mallory" in error["hint"]

        other = await cb.http.post("/v2/noop/run", json={"input": {}}, headers=victim)
        assert other.status_code == 200  # another account's queue is its own

        denied = await cb.http.patch(
            "/v1/accounts/mallory", json={"maxQueuedJobs": 5}, headers=mallory
        )
        assert denied.status_code == 403
        raised = await cb.http.patch("/v1/accounts/mallory", json={"maxQueuedJobs": 5, "weight": 2})
        assert raised.status_code == 200, raised.text
        assert raised.json() == {
            "name": "mallory",
            "weight": 2.0,
            "maxQueuedJobs": 5,
            "maxQueuedJobsIsDefault": False,
            "queuedJobs": 3,
        }
        again = await cb.http.post("/v2/noop/run", json={"input": {}}, headers=mallory)
        assert again.status_code == 200
        assert cb.platform.scheduler.queues.weights["mallory"] == 2.0
        bad = await cb.http.patch("/v1/accounts/mallory", json={"weight": -1})
        assert bad.status_code == 400
        reset = await cb.http.patch(
            "/v1/accounts/mallory", json={"max_queued_jobs": None}
        )  # deprecated name, still read
        assert reset.json()["maxQueuedJobs"] == 3 and reset.json()["maxQueuedJobsIsDefault"]


async def test_a_replayed_idempotency_key_gets_its_job_back_when_the_queue_is_full(
    tmp_path: Path,
) -> None:
    # a client that retries after a lost response must learn its job's id, not get a 429
    async with running(tmp_path, account_max_queued_jobs=2) as cb:
        await deploy_as(cb.platform, "mallory", TENANTS / "noop")
        cb.platform.settings.hardware_slots["cpu"] = 0  # nothing starts: every job stays queued
        mallory = await key_for(cb, "mallory")
        first = await cb.http.post(
            "/v2/noop/run", json={"input": {"i": 0}}, headers={**mallory, "Idempotency-Key": "a"}
        )
        assert first.status_code == 200, first.text
        filler = await cb.http.post("/v2/noop/run", json={"input": {"i": 1}}, headers=mallory)
        assert filler.status_code == 200, filler.text

        again = await cb.http.post(
            "/v2/noop/run", json={"input": {"i": 0}}, headers={**mallory, "Idempotency-Key": "a"}
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        fresh = await cb.http.post(
            "/v2/noop/run", json={"input": {"i": 0}}, headers={**mallory, "Idempotency-Key": "b"}
        )
        assert fresh.status_code == 429  # a new key still counts against the limit
