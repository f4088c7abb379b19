"""Unmodified RunPod handler files run as coldbrew endpoints: the RunPod worker protocol.

Each fixture under tests/fixtures/runpod_* is a handler file as written for RunPod Serverless
(`runpod.serverless.start(...)`). A real `coldbrew serve` deploys them and runs each worker as the
handler's own process, which talks to the gateway through the `runpod` SDK; jobs are sent with the
official `runpod` client and with plain HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.helpers import wait_until

runpod = pytest.importorskip("runpod")

DIRS = ["runpod_sync", "runpod_async", "runpod_stream", "runpod_concurrent", "runpod_refresh"]


@pytest.fixture(scope="module")
def rp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with every handler deployed; the official client pointed at it."""
    server = Server(home=tmp_path_factory.mktemp("runpod") / "home", port=free_port())
    try:
        server.start(*(FIXTURES / d for d in DIRS), RUNPOD_PING_INTERVAL="1000")
        runpod.api_key = server.key
        runpod.endpoint_url_base = f"{server.url}/v2"
        yield server
    finally:
        runpod.api_key = None
        server.stop()


def _wait_status(http: httpx.Client, endpoint: str, job_id: str, until: Any) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: http.get(f"/v2/{endpoint}/status/{job_id}").json(),
        until,
        timeout_s=60,
        interval_s=0.05,
        what=f"job {job_id}'s state",
    )
    return body


def test_sync_handler_with_the_official_client_and_plain_http(rp: Server) -> None:
    output = runpod.Endpoint("runpod_sync").run_sync({"message": "hi"}, timeout=60)
    assert output["echo"] == "hi"
    assert isinstance(output["job_id"], str)  # the handler sees the job as RunPod builds it
    with rp.http() as http:
        body = http.post("/v2/runpod_sync/runsync", json={"input": {"message": "curl"}}).json()
        assert body["status"] == "COMPLETED"
        assert body["output"] == {"echo": "curl", "job_id": body["id"]}
        assert body["workerId"].startswith("w-")
        logs = http.get(f"/v1/jobs/{body['id']}/logs").json()["logs"]
        assert "handling curl" in [entry["line"] for entry in logs]
        endpoint = http.get("/v1/endpoints/runpod_sync").json()
        assert endpoint["spec"]["concurrency"] == 1
        assert endpoint["inputSchema"]["additionalProperties"] is True


def test_handler_errors_and_bad_input(rp: Server) -> None:
    endpoint = runpod.Endpoint("runpod_sync")
    job = endpoint.run({"message": "x", "fail": "boom"})
    assert job.output(timeout=60) is None
    assert job.status() == "FAILED"
    with rp.http() as http:
        failed = http.get(f"/v2/runpod_sync/status/{job.job_id}").json()
        assert failed["error"] == "boom"
        assert failed["errorDetail"]["type"] == "ValueError"
        assert 'raise ValueError(job_input["fail"])' in failed["errorDetail"]["traceback"]

        # the handler's own validation (runpod's rp_validator) fails the job with its message
        refused = http.post("/v2/runpod_sync/runsync", json={"input": {"msg": "x"}}).json()
        assert refused["status"] == "FAILED"
        assert "message is a required input." in refused["error"]
        assert refused["errorDetail"]["type"] == "handler_error"  # returned, not raised

        # a body coldbrew cannot queue is refused before any worker sees it
        before = http.get("/v2/runpod_sync/health").json()["jobs"]
        bad = http.post("/v2/runpod_sync/run", json={"input": "not an object"})
        assert bad.status_code == 400
        assert "'input' object" in bad.json()["error"]["message"]
        assert http.get("/v2/runpod_sync/health").json()["jobs"] == before


def test_generator_streams_chunks_and_aggregates_them(rp: Server) -> None:
    endpoint = runpod.Endpoint("runpod_stream")
    job = endpoint.run({"count": 4, "pause_s": 0.1})
    assert list(job.stream()) == [{"token": i} for i in range(4)]
    assert job.output(timeout=30) == [{"token": i} for i in range(4)]  # return_aggregate_stream

    with rp.http() as http:
        job_id = http.post("/v2/runpod_stream/run", json={"input": {"count": 3}}).json()["id"]
        seen: list[Any] = []
        while True:
            polled = http.get(f"/v2/runpod_stream/stream/{job_id}").json()
            seen += [item["output"] for item in polled["stream"]]
            if polled["status"] in ("COMPLETED", "FAILED"):
                break
        assert seen == [{"token": i} for i in range(3)]

        broken = http.post(
            "/v2/runpod_stream/runsync", json={"input": {"count": 3, "fail_at": 1}}
        ).json()
        assert broken["status"] == "FAILED"
        assert broken["error"] == "failed at chunk 1"
        assert broken["errorDetail"]["type"] == "handler_error"


def test_async_handler_progress_shows_in_status(rp: Server) -> None:
    with rp.http() as http:
        job_id = http.post(
            "/v2/runpod_async/run", json={"input": {"steps": 3, "step_s": 1.0}}
        ).json()["id"]
        running = _wait_status(
            http,
            "runpod_async",
            job_id,
            lambda b: b["status"] == "IN_PROGRESS" and str(b.get("output", "")).startswith("step"),
        )
        assert running["output"] in ("step 1 of 3", "step 2 of 3", "step 3 of 3")
        done = _wait_status(http, "runpod_async", job_id, lambda b: b["status"] == "COMPLETED")
        assert done["output"] == {"steps": 3}
        lines = [entry["line"] for entry in http.get(f"/v1/jobs/{job_id}/logs").json()["logs"]]
        assert 'progress: "step 1 of 3"' in lines


def test_cancel_a_running_handler_job(rp: Server) -> None:
    endpoint = runpod.Endpoint("runpod_async")
    job = endpoint.run({"steps": 30, "step_s": 1.0})
    wait_until(job.status, lambda s: s == "IN_PROGRESS", timeout_s=60, interval_s=0.05)
    assert job.cancel()["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"
    # the next job runs on a fresh worker
    assert endpoint.run_sync({"steps": 1}, timeout=60) == {"steps": 1}


def test_concurrency_modifier_takes_several_jobs_at_once(rp: Server) -> None:
    endpoint = runpod.Endpoint("concurrent")  # named in its coldbrew.toml
    jobs = [endpoint.run({"wait_for": 3}) for _ in range(3)]
    outputs = [job.output(timeout=60) for job in jobs]
    assert [out["most_at_once"] for out in outputs] == [3, 3, 3]
    assert len({out["pid"] for out in outputs}) == 1  # one worker (max_workers = 1)


def test_cancel_on_a_worker_with_several_jobs_stops_only_that_job(rp: Server) -> None:
    endpoint = runpod.Endpoint("concurrent")
    pid = endpoint.run_sync({"wait_for": 1}, timeout=60)["pid"]
    stuck = endpoint.run({"wait_for": 99})  # waits 20 s for company that never comes
    wait_until(stuck.status, lambda s: s == "IN_PROGRESS", timeout_s=60, interval_s=0.05)
    assert stuck.cancel()["status"] == "CANCELLED"
    # the worker is kept (it runs other jobs) and told through job-stop to abandon this one
    logs = rp.home / "logs" / "workers"
    wait_until(
        lambda: any(f"{stuck.job_id} | Stopping job." in p.read_text() for p in logs.glob("*.log")),
        timeout_s=60,
        what="the handler told to stop the job",
    )
    assert endpoint.run_sync({"wait_for": 1}, timeout=60)["pid"] == pid  # the same process
    assert stuck.status() == "CANCELLED"


def test_refresh_worker_replaces_the_worker_after_each_job(rp: Server) -> None:
    with rp.http() as http:
        first = http.post("/v2/runpod_refresh/runsync", json={"input": {}}).json()
        second = http.post("/v2/runpod_refresh/runsync", json={"input": {}}).json()
    assert first["status"] == second["status"] == "COMPLETED"
    assert first["output"]["pid"] != second["output"]["pid"]
    assert first["workerId"] != second["workerId"]
    assert second["coldStart"] is True


def test_usage_is_metered_like_any_worker(rp: Server) -> None:
    assert runpod.Endpoint("runpod_sync").run_sync({"message": "metered"}, timeout=60)
    with rp.http() as http:
        rows = {r["endpoint"]: r for r in http.get("/v1/usage").json()["rows"]}
    sync = rows["default/runpod_sync"]
    assert sync["coldStartS"] > 0  # the handler's imports, up to its first job-take
    assert sync["busyS"] > 0
    assert sync["idleS"] > 0
    assert sync["totalUsd"] > 0


def test_the_protocol_needs_the_worker_secret(rp: Server) -> None:
    with httpx.Client(base_url=rp.url, timeout=30) as http:
        for headers, query in (({}, ""), ({"Authorization": rp.key}, ""), ({}, "?token=guess")):
            answer = http.get(f"/v1/runpod-worker/job-take/w-123{query}", headers=headers)
            assert answer.status_code == 401
            answer = http.post(f"/v1/runpod-worker/job-done/w-123/j{query}", headers=headers)
            assert answer.status_code == 401
    worker_logs = list((rp.home / "logs" / "workers").glob("w-*.log"))
    assert worker_logs
    text = "\n".join(path.read_text() for path in worker_logs)
    assert "Ping Request Error" not in text  # pings every second reached the gateway
    assert "Failed to return job results" not in text


def test_a_handler_that_fails_before_starting(rp: Server) -> None:
    deployed = rp.cli("deploy", str(FIXTURES / "runpod_broken"))
    assert "runpod_broken" in deployed.stdout
    with rp.http() as http:
        body = http.post("/v2/runpod_broken/runsync", json={"input": {}}).json()
    assert body["status"] == "FAILED"
    assert "the model weights are missing" in body["error"]
    assert "RuntimeError" in body["errorDetail"]["traceback"]
    assert body["errorDetail"]["type"] == "setup_failed"
    assert "worker_crashed: the RunPod handler exited with status" in body["error"]


def test_the_asyncio_client_with_a_generator_handler(rp: Server) -> None:
    import asyncio

    import aiohttp
    from runpod.endpoint.asyncio.asyncio_runner import Endpoint as AsyncEndpoint

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            job = await AsyncEndpoint("runpod_stream", session).run({"count": 2})
            assert [chunk async for chunk in job.stream()] == [{"token": 0}, {"token": 1}]
            assert await job.output(timeout=60) == [{"token": 0}, {"token": 1}]

    asyncio.run(main())
