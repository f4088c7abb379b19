"""The official `runpod` client, pointed at coldbrew, works unchanged (the /v2 wire format)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server
from tests.helpers import wait_until

runpod = pytest.importorskip("runpod")


@pytest.fixture
def rp(server: Server) -> Iterator[Server]:
    server.start(FIXTURES / "toys")
    runpod.api_key = server.key
    runpod.endpoint_url_base = f"{server.url}/v2"
    yield server
    runpod.api_key = None


def test_run_sync_run_status_output_health_and_purge(rp: Server) -> None:
    endpoint = runpod.Endpoint("toy")
    assert endpoint.run_sync({"value": 41}, timeout=60)["value"] == 41

    job = endpoint.run({"input": {"value": "async", "sleep_s": 0.3}})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert job.output(timeout=60)["value"] == "async"
    assert job.status() == "COMPLETED"

    health = endpoint.health()
    assert health["jobs"]["completed"] == 2
    assert set(health["workers"]) >= {"idle", "running"}

    assert endpoint.purge_queue() == {"removed": 0, "status": "completed"}


def test_cancel_and_a_failed_job(rp: Server) -> None:
    endpoint = runpod.Endpoint("toy")
    slow = [endpoint.run({"sleep_s": 5}) for _ in range(4)]  # three run, one waits
    wait_until(slow[0].status, lambda s: s == "IN_PROGRESS", what="the first job running")
    assert slow[3].cancel()["status"] == "CANCELLED"
    assert slow[3].status() == "CANCELLED"
    for job in slow[:3]:
        assert job.cancel()["status"] == "CANCELLED"

    failed = endpoint.run({"crash": "bad input"})
    assert failed.output(timeout=30) is None
    assert failed.status() == "FAILED"


def test_a_wrong_key_is_reported_as_unauthorized(rp: Server) -> None:
    endpoint = runpod.Endpoint("toy", api_key="cb_wrong")
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        endpoint.run_sync({"value": 1})


def test_the_asyncio_client(rp: Server) -> None:
    import aiohttp
    from runpod.endpoint.asyncio.asyncio_runner import Endpoint as AsyncEndpoint

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            endpoint = AsyncEndpoint("toy", session)
            job = await endpoint.run({"value": "from asyncio"})
            assert (await job.output(timeout=60))["value"] == "from asyncio"
            assert await job.status() == "COMPLETED"
            assert (await endpoint.health())["jobs"]["completed"] >= 1
            assert (await endpoint.purge_queue())["status"] == "completed"

    asyncio.run(main())


def test_job_stream_yields_each_chunk_of_a_generator_model(rp: Server) -> None:
    job = runpod.Endpoint("counter").run({"n": 4, "pause_s": 0.2})
    assert list(job.stream()) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    assert job.output(timeout=10) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
