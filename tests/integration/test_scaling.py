"""Scale from zero, scale out under a cap, scale back to zero, share slots between endpoints."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def test_first_request_wakes_the_endpoint_from_zero(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        health = (await cb.http.get("/v2/toy/health")).json()
        assert health["workers"] == {"idle": 0, "running": 0, "initializing": 0}

        first = await cb.runsync("toy", {"value": 1})
        second = await cb.runsync("toy", {"value": 2})

        assert first["status"] == "COMPLETED" and first["output"]["value"] == 1
        assert first["coldStart"] is True
        # the deploy waited for the template, so even the first request's worker is a fork
        assert first["coldStartDetail"]["forked"] is True
        assert set(first["coldStartDetail"]) >= {"forkMs", "setupMs", "totalMs"}
        assert second["coldStart"] is False
        assert second["workerId"] == first["workerId"]
        assert first["delayTime"] >= 0 and first["executionTime"] >= 0
        assert first["costUsd"] > 0


async def test_twenty_concurrent_requests_never_run_more_than_max_workers(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        peak = 0
        stop = asyncio.Event()

        async def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, cb.live_workers("toy"))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(
            *(cb.runsync("toy", {"value": i, "sleep_s": 0.2}) for i in range(20))
        )
        stop.set()
        await watcher

        assert [r["status"] for r in results] == ["COMPLETED"] * 20
        assert [r["output"]["value"] for r in results] == list(range(20))
        assert len({r["workerId"] for r in results}) <= 3
        assert peak == 3  # it did scale out, and no further than max_workers


async def test_idle_workers_stop_after_the_keep_warm_window_and_are_billed(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, TOYS) as cb:
        result = await cb.runsync("toy", {"sleep_s": 0.1})
        assert result["status"] == "COMPLETED"
        assert cb.live_workers("toy") == 1

        await wait_for(lambda: _async(cb.live_workers("toy")), lambda n: n == 0, timeout_s=15)

        usage = (await cb.http.get("/v1/usage", params={"by": "endpoint"})).json()
        (row,) = [r for r in usage["rows"] if r["endpoint"] == "default/toy"]
        assert row["coldStartS"] > 0
        assert row["busyS"] >= 0.1
        assert row["idleS"] >= 1.0  # idle_timeout_s=1 of keep-warm, billed as idle
        total = row["coldStartUsd"] + row["busyUsd"] + row["idleUsd"]
        assert row["totalUsd"] == pytest.approx(total, abs=1e-6)
        assert row["totalUsd"] == pytest.approx(row["totalS"] * 0.05 / 3600, abs=2e-6)


async def test_account_cap_queues_jobs_instead_of_rejecting_them(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS, account_concurrency_cap=1) as cb:
        results = await asyncio.gather(
            *(cb.runsync("toy", {"value": i, "sleep_s": 0.1}) for i in range(4))
        )
        assert [r["status"] for r in results] == ["COMPLETED"] * 4
        spans = sorted(
            (_ts(r["createdAt"]) + r["delayTime"] / 1000, r["executionTime"]) for r in results
        )
        for (start, duration), (next_start, _) in itertools.pairwise(spans):
            assert next_start >= start + duration / 1000 - 0.01  # never two at once


async def test_a_full_node_evicts_the_least_recently_used_idle_worker(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS, hardware_slots={"cpu": 1}) as cb:
        toy = await cb.runsync("toy", {"value": 1})
        assert toy["status"] == "COMPLETED"
        other = await cb.runsync("other", {"value": 2})
        assert other["status"] == "COMPLETED" and other["output"] == {"value": 2}
        assert cb.live_workers("toy") == 0


async def _async(value: int) -> int:
    return value


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def test_usage_as_csv_has_the_same_figures_as_json(tmp_path: Path) -> None:
    import csv
    import io

    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("toy", {"value": 1})
        as_json = (await cb.http.get("/v1/usage", params={"by": "hardware"})).json()
        response = await cb.http.get("/v1/usage", params={"by": "hardware", "format": "csv"})
        assert response.headers["content-type"].startswith("text/csv")
        (row,) = list(csv.DictReader(io.StringIO(response.text)))
        assert row["hardware"] == "cpu"
        assert float(row["cold_start_s"]) == pytest.approx(as_json["rows"][0]["coldStartS"])
        assert float(row["busy_usd"]) > 0
        bad = await cb.http.get("/v1/usage", params={"format": "xml"})
        assert bad.status_code == 400
