"""Dynamic batching: queued jobs go to predict together, each pays its share."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio
BATCHED = FIXTURES / "batched"


async def test_the_schema_takes_one_element_per_job(tmp_path: Path) -> None:
    async with running(tmp_path, BATCHED) as cb:
        schema = (await cb.http.get("/v1/endpoints/doubler")).json()["inputSchema"]
        assert schema["properties"]["x"]["type"] == "number"
        bad = await cb.http.post("/v2/doubler/run", json={"input": {"x": [1, 2]}})
        assert bad.status_code == 400


async def test_a_lone_request_runs_alone_and_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, BATCHED) as cb:
        result = await cb.runsync("doubler", {"x": 21})
        assert result["status"] == "COMPLETED"
        assert result["output"]["y"] == 42 and result["output"]["batch"] == 1


async def test_jobs_queued_behind_a_busy_worker_run_as_one_batch(tmp_path: Path) -> None:
    async with running(tmp_path, BATCHED) as cb:
        await cb.runsync("doubler", {"x": 0})  # the worker is up
        first = asyncio.create_task(cb.runsync("doubler", {"x": 1, "pause_s": 0.5}))
        await asyncio.sleep(0.2)  # the worker is busy with it
        rest = await asyncio.gather(*(cb.runsync("doubler", {"x": v}) for v in range(2, 8)))
        head = await first
        assert head["output"]["batch"] == 1
        assert [r["output"]["y"] for r in rest] == [2 * v for v in range(2, 8)]
        assert {r["output"]["batch"] for r in rest} == {6}  # all six in one predict call
        costs = {r["costUsd"] for r in rest}
        assert max(costs) < head["costUsd"]  # each pays a sixth of its batch's time
        logs = (await cb.http.get(f"/v1/jobs/{rest[0]['id']}/logs")).json()["logs"]
        assert [line["line"] for line in logs] == ["batch of 6"]


async def test_a_batch_that_returns_the_wrong_number_of_outputs_fails_its_jobs(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, BATCHED) as cb:
        result = await cb.runsync("short", {"x": 1})
        assert result["status"] == "FAILED"
        assert "must return a list of 1 outputs" in result["error"]
