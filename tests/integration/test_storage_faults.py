"""Storage faults are survivable (issue 11): a database locked by another process never freezes
the gateway, new work gets 503 with Retry-After while the fault lasts, /readyz says why, and the
node recovers by itself when the lock goes; what was accepted before still completes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio


async def test_an_external_lock_gives_503_and_the_node_recovers_by_itself(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, FIXTURES / "toys") as r:
        accepted = await r.run("toy", {"value": 1, "sleep_s": 0.5})
        locker = sqlite3.connect(r.platform.settings.db_path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            refused = asyncio.create_task(r.http.post("/v2/toy/run", json={"input": {"value": 2}}))
            await asyncio.sleep(0.2)  # the request is now waiting for the lock
            health = await r.http.get("/healthz")  # the loop is free while the store waits
            assert health.status_code == 200
            assert not refused.done()
            response = await refused
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert "locked" in response.json()["error"]["message"]
            ready = await r.http.get("/readyz")
            assert ready.status_code == 503 and "locked" in ready.json()["reason"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await wait_for(lambda: r.http.get("/readyz"), lambda resp: resp.status_code == 200)
        job = await r.wait_job(accepted)
        assert job["status"] == "COMPLETED" and job["output"]["value"] == 1
        after = await r.run("toy", {"value": 3})
        assert (await r.wait_job(after))["output"]["value"] == 3
