"""Reserved capacity with a real worker: up after deploy with no traffic, billed as reserved
seconds at the hardware's discounted rate, and the usage total reconciles to the cent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio

MODEL = """
import coldbrew

app = coldbrew.App("reserved")


@app.model(name="rsv", reserved_workers=1, max_workers=2, idle_timeout_s=0.5)
class Reserved:
    def predict(self, value=None):
        return {"value": value}
"""


async def test_a_reserved_worker_is_up_without_traffic_and_billed_at_the_reserved_rate(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(MODEL)
    home = tmp_path / "home"
    async with running(home, app_dir, reserved_discount={"cpu": 0.4}) as cb:
        await wait_for(lambda: _ready(cb), lambda n: n == 1, timeout_s=30)
        await asyncio.sleep(1.5)  # well past idle_timeout_s: a reserved worker stays
        assert cb.live_workers("rsv") == 1
        (worker,) = cb.platform.scheduler.workers.values()
        assert worker.reserved

        result = await cb.runsync("rsv", {"value": 7})
        assert result["status"] == "COMPLETED" and result["output"] == {"value": 7}
        assert result["workerId"] == worker.id and result["coldStart"] is False
        assert result["costUsd"] == 0  # covered by the reservation

        usage = (await cb.http.get("/v1/usage", params={"by": "endpoint"})).json()
        (row,) = [r for r in usage["rows"] if r["endpoint"] == "default/rsv"]
        assert row["reservedS"] >= 1.5
        assert row["busyS"] == row["idleS"] == row["coldStartS"] == 0
        assert usage["reservedDiscount"]["cpu"] == 0.4
        rate = usage["pricesPerHourUsd"]["cpu"] * (1 - 0.4) / 3600
        assert row["reservedUsd"] == pytest.approx(row["reservedS"] * rate, abs=1e-8)  # rounded
        kinds = ("coldStart", "busy", "idle", "reserved")
        assert round(row["totalUsd"], 2) == round(sum(row[f"{k}Usd"] for k in kinds), 2)
        assert row["totalUsd"] == pytest.approx(sum(row[f"{k}Usd"] for k in kinds), abs=1e-9)
        total = usage["total"]
        assert total["reservedUsd"] == pytest.approx(row["reservedUsd"], abs=1e-9)

        advice = (await cb.http.get("/v1/endpoints/rsv/advice", params={"window": "1h"})).json()
        assert set(advice["reserved"]) >= {"count", "monthlyUsd", "arithmetic", "costsUsd"}
        assert advice["reserved"]["current"] == 1


async def _ready(cb: object) -> int:
    from coldbrew.control.workers import WorkerState

    workers = cb.platform.scheduler.workers.values()  # type: ignore[attr-defined]
    return sum(1 for w in workers if w.state in (WorkerState.IDLE, WorkerState.BUSY))
