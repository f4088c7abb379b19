"""Budgets alert once per threshold (log, signed webhook, listed) and hard stops refuse jobs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from coldbrew import verify_webhook
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for
from tests.integration.test_webhooks import receiver

pytestmark = pytest.mark.anyio


async def test_a_spent_hard_stop_budget_alerts_once_and_refuses_new_jobs(tmp_path: Path) -> None:
    async with receiver() as hook, running(tmp_path, FIXTURES / "toys") as cb:
        secret = (await cb.http.get("/v1/account")).json()["webhookSecret"]
        created = await cb.http.post(
            "/v1/budgets",
            json={  # the snake_case names before 0.x: deprecated, still read for a release
                "endpoint": "toy",
                "monthly_usd": 1e-7,
                "alerts": [50, 100],
                "hard_stop": True,
                "webhook": hook.url,
            },
        )
        assert created.status_code == 201 and created.json()["spentUsd"] == 0
        job = await cb.runsync("toy", {"value": 1, "sleep_s": 0.05})  # spends > $1e-7
        assert job["status"] == "COMPLETED"
        keyed = {"Idempotency-Key": "budget-1"}
        first = await cb.http.post("/v2/toy/run", json={"input": {"value": 4}}, headers=keyed)
        await cb.wait_job(first.json()["id"])

        await cb.platform.scheduler.flush_usage()
        await cb.platform.budgets.check()
        await cb.platform.budgets.check()  # a second check sends nothing new

        refused = await cb.http.post("/v2/toy/runsync", json={"input": {"value": 2}})
        assert refused.status_code == 402
        error = refused.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert "endpoint 'toy'" in error["message"] and "$1e-07" in error["message"]
        assert "coldbrew budgets set --endpoint toy --monthly-usd" in error["hint"]
        again = await cb.http.post("/v2/toy/run", json={"input": {"value": 4}}, headers=keyed)
        assert again.status_code == 200, again.text  # a retry learns its job, past the stop too
        assert again.json()["id"] == first.json()["id"]
        other = await cb.http.post("/v2/other/runsync", json={"input": {"value": 1}})
        assert other.json()["status"] == "COMPLETED"  # only that endpoint is stopped

        listing = (await cb.http.get("/v1/budgets")).json()
        (budget,) = listing["budgets"]
        assert budget["stopped"] is True and budget["usedPct"] >= 100
        assert budget["forecastUsd"] >= budget["spentUsd"]
        assert [a["thresholdPct"] for a in listing["alerts"]] == [50, 100]

        await wait_for(lambda: _count(hook.received), lambda n: n == 2)
        for headers, body in hook.received:
            assert verify_webhook(secret, headers, body)
        assert [orjson.loads(b)["thresholdPct"] for _, b in hook.received] == [50, 100]

        raised = await cb.http.post("/v1/budgets", json={"endpoint": "toy", "monthlyUsd": 100})
        assert raised.json()["stopped"] is False
        assert (await cb.runsync("toy", {"value": 3}))["status"] == "COMPLETED"


async def test_bad_budgets_are_refused_with_the_fix(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        for body, says in [
            ({"monthlyUsd": -1}, "positive number"),
            ({"monthly_usd": -1}, "'monthlyUsd' must be a positive number"),  # deprecated name
            ({"monthlyUsd": 5, "hardStop": "yes"}, "'hardStop' must be true or false"),
            ({"monthlyUsd": 5, "alerts": ["x"]}, "percentages"),
            ({"monthlyUsd": 5, "endpoint": "nope"}, "no endpoint 'nope'"),
        ]:
            response = await cb.http.post("/v1/budgets", json=body)
            assert response.status_code in (400, 404), body
            assert says in response.json()["error"]["message"]
        key = (await cb.http.post("/v1/keys", json={"account": "acme"})).json()["key"]
        other = await cb.http.post(
            "/v1/budgets",
            json={"account": "default", "monthlyUsd": 1},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert other.status_code == 403


async def _count(items: list[object]) -> int:
    return len(items)


async def test_the_advisor_reads_the_endpoints_recorded_traffic(tmp_path: Path) -> None:
    # spawned workers: a fork's cold start (a few ms) costs less than the report's rounding
    async with running(tmp_path, FIXTURES / "toys", fast_start=False) as cb:
        for i in range(3):
            assert (await cb.runsync("toy", {"value": i}))["status"] == "COMPLETED"
        report = (await cb.http.get("/v1/endpoints/toy/advice", params={"window": "24h"})).json()
        assert report["requests"] == 3
        assert report["costUsd"]["total"] > 0 and report["costUsd"]["cold_start"] > 0
        assert report["dedicatedMonthlyUsd"] == pytest.approx(0.05 * 720, abs=0.01)
        assert report["cheaper"] == "serverless"
        assert report["suggestions"] and report["arithmetic"]
        missing = await cb.http.get("/v1/endpoints/nope/advice")
        assert missing.status_code == 404
