"""The sync lane: a /runsync job that finds a warm worker lives in memory until it is final,
is written with the next flush, and becomes an ordinary durable job the moment its caller
stops waiting for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.conftest import running

TOYS = Path(__file__).parents[1] / "fixtures" / "toys"
BATCHED = Path(__file__).parents[1] / "fixtures" / "batched"

pytestmark = pytest.mark.anyio


async def test_a_warm_runsync_is_answered_from_memory_then_written(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS, tick_interval_s=5.0) as cb:
        await cb.runsync("toy", {"value": 0})  # the cold start goes the durable way
        store = cb.platform.store
        warm = await cb.runsync("toy", {"value": 1})
        assert warm["status"] == "COMPLETED"
        assert warm["output"]["value"] == 1
        assert await store.get_job(warm["id"]) is None  # not written yet: the next flush does
        assert (await cb.job(warm["id"]))["status"] == "COMPLETED"  # but it can be read
        status = await cb.http.get(f"/v2/toy/status/{warm['id']}")
        assert status.json()["output"]["value"] == 1
        await cb.platform.scheduler.write_back()
        stored = await store.get_job(warm["id"])
        assert stored is not None
        assert (stored.status.value, stored.attempts, stored.output["value"]) == ("COMPLETED", 1, 1)
        assert stored.cost_usd > 0 and stored.worker_id == warm["workerId"]


async def test_health_and_listings_include_in_memory_jobs(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS, tick_interval_s=5.0) as cb:
        for value in range(3):
            await cb.runsync("toy", {"value": value})
        health = (await cb.http.get("/v2/toy/health")).json()
        assert health["jobs"]["completed"] == 3


async def test_a_runsync_whose_wait_runs_out_is_written_and_finishes(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("toy", {})
        answer = (
            await cb.http.post("/v2/toy/runsync?wait=100", json={"input": {"sleep_s": 0.6}})
        ).json()
        assert answer["status"] == "IN_PROGRESS"
        stored = await cb.platform.store.get_job(answer["id"])
        assert stored is not None and stored.status.value == "IN_PROGRESS"  # durable from now
        final = await cb.wait_job(answer["id"])
        assert final["status"] == "COMPLETED"
        assert "pid" in final["output"]


async def test_a_sync_lane_job_whose_worker_dies_is_retried(tmp_path: Path) -> None:
    # sandbox off: the toy leaves its once-marker in the test's directory
    async with running(tmp_path, TOYS, sandbox="off") as cb:
        first = await cb.runsync("toy", {})
        marker = tmp_path / "died-once"
        answer = await cb.runsync("toy", {"crash": "exit", "once_marker": str(marker)})
        assert answer["status"] == "COMPLETED", answer
        assert answer["attempts"] == 2
        assert answer["workerId"] != first["workerId"]


async def test_a_sync_lane_job_past_its_timeout_times_out(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("toy", {})
        answer = await cb.runsync("toy", {"sleep_s": 5}, policy={"executionTimeout": 300})
        assert answer["status"] == "TIMED_OUT"
        await cb.platform.scheduler.write_back()
        stored = await cb.platform.store.get_job(answer["id"])
        assert stored is not None and stored.status.value == "TIMED_OUT"


async def test_concurrent_sync_jobs_on_a_busy_worker_wait_in_memory(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("toy", {})
        answers = await asyncio.gather(
            *(cb.runsync("toy", {"value": i, "sleep_s": 0.05}) for i in range(12))
        )
        assert sorted(a["output"]["value"] for a in answers) == list(range(12))
        assert {a["status"] for a in answers} == {"COMPLETED"}


async def test_sync_jobs_on_a_batched_endpoint_run_as_batches(tmp_path: Path) -> None:
    async with running(tmp_path, BATCHED) as cb:
        await cb.runsync("doubler", {"x": 0.0})
        answers = await asyncio.gather(
            *(cb.runsync("doubler", {"x": float(i), "pause_s": 0.2}) for i in range(9))
        )
        assert sorted(a["output"]["y"] for a in answers) == [2.0 * i for i in range(9)]
        assert max(a["output"]["batch"] for a in answers) > 1  # they were batched
        await cb.platform.scheduler.write_back()
        for answer in answers:
            assert (await cb.platform.store.get_job(answer["id"])) is not None


ARRAYS = Path(__file__).parents[1] / "fixtures" / "arrays"


async def test_numpy_outputs_cross_as_bytes_and_answer_as_json(tmp_path: Path) -> None:
    async with running(tmp_path, ARRAYS) as cb:
        for _ in range(2):  # a cold start (durable), then a warm one (sync lane)
            answer = await cb.runsync("arrays", {"n": 3, "scale": 2.0})
            assert answer["status"] == "COMPLETED", answer
            assert answer["output"] == {
                "vector": [0.0, 2.0, 4.0],
                "grid": [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                "column": [1, 4, 7],
                "flags": [True, False],
                "mean": 1.0,
                "words": ["a", "b"],
            }
        await cb.platform.scheduler.write_back()
        stored = (await cb.http.get(f"/v1/jobs/{answer['id']}")).json()
        assert stored["output"] == answer["output"]
