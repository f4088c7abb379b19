"""min_workers keep workers warm without traffic; GPU-class slots limit workers of that class."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coldbrew.errors import SpecError
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio
SLOTS = {"cpu": 4, "L4": 1}


async def _value(value: int) -> int:
    return value


async def test_min_workers_start_without_traffic_and_bill_idle_time(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "classes", hardware_slots=SLOTS) as cb:
        await wait_for(
            lambda: cb.http.get("/v2/warm/health"), lambda r: r.json()["workers"]["idle"] == 1
        )
        result = await cb.runsync("warm", {})
        assert result["status"] == "COMPLETED"
        assert result["coldStart"] is False  # the worker was up before the job arrived
        await asyncio.sleep(0.3)
        assert cb.live_workers("warm") == 1  # idle_timeout_s=0 does not stop min_workers


async def test_a_gpu_class_slot_is_held_by_one_worker_at_a_time(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "classes", hardware_slots=SLOTS) as cb:
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, cb.live_workers("gpu"))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(cb.runsync("gpu", {"sleep_s": 0.2}) for _ in range(3)))
        watcher.cancel()
        assert [r["status"] for r in results] == ["COMPLETED"] * 3
        assert peak == 1  # max_workers=2, but the node has one L4 slot
        # priced at the L4 rate ($0.44/h), not cpu's
        per_second = 0.44 / 3600
        for r in results:
            assert r["costUsd"] == pytest.approx(r["executionTime"] / 1000 * per_second, rel=0.2)
        usage = (await cb.http.get("/v1/usage", params={"by": "hardware"})).json()
        assert "L4" in [row["hardware"] for row in usage["rows"]]


async def test_a_model_asking_for_hardware_the_node_lacks_is_refused_at_deploy(
    tmp_path: Path,
) -> None:
    with pytest.raises(SpecError, match="no L4 slots") as caught:
        async with running(tmp_path, FIXTURES / "classes", hardware_slots={"cpu": 2}):
            pass
    assert "COLDBREW_HARDWARE_SLOTS" in caught.value.hint


async def test_an_impossible_spec_is_refused_at_deploy_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"min_workers \(5\) is above max_workers \(1\)") as caught:
        async with running(tmp_path, FIXTURES / "badspec"):
            pass
    assert "raise max_workers or lower min_workers" in str(caught.value)


async def test_an_open_warm_window_keeps_a_worker_up_without_traffic(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "classes", hardware_slots=SLOTS) as cb:
        await wait_for(
            lambda: cb.http.get("/v2/scheduled/health"),
            lambda r: r.json()["workers"]["idle"] == 1,
        )
        result = await cb.runsync("scheduled", {})
        assert result["status"] == "COMPLETED" and result["coldStart"] is False
