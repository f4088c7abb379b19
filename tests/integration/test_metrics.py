"""`GET /metrics`: Prometheus series per endpoint, and each account sees only its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_jobs_cold_starts_cost_and_workers(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        first = await cb.runsync("toy", {"value": 1})
        await cb.runsync("toy", {"value": 2})
        await cb.runsync("toy", {"crash": "no"})
        response = await cb.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        got = samples(response.text)
        toy = {("account", "default"), ("endpoint", "toy")}

        def value(name: str, **labels: str) -> float:
            return got[(name, frozenset(toy | set(labels.items())))]

        assert value("coldbrew_invocations_total", status="COMPLETED") == 2
        assert value("coldbrew_invocations_total", status="FAILED") == 1
        assert value("coldbrew_cold_starts_total") == 1
        assert value("coldbrew_execution_seconds_count") == 3
        assert value("coldbrew_queue_delay_seconds_count") == 3
        stage = "fork" if first["coldStartDetail"]["forked"] else "process_start"
        assert value("coldbrew_cold_start_stage_seconds_count", stage=stage) == 1
        assert value("coldbrew_cold_start_stage_seconds_count", stage="total") == 1
        assert value("coldbrew_spent_usd_total") > 0
        assert value("coldbrew_workers", state="idle") == 1
        assert not any(name == "coldbrew_queue_length" for name, _ in got)  # nothing queued
        assert got[("coldbrew_account_concurrency_cap", frozenset({("account", "default")}))] == 100


async def test_an_account_sees_only_its_own_series(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        await cb.runsync("toy", {"value": 1})
        key = (await cb.http.post("/v1/keys", json={"account": "acme"})).json()["key"]
        text = (await cb.http.get("/metrics", headers={"Authorization": f"Bearer {key}"})).text
        assert 'account="default"' not in text
        assert "# HELP coldbrew_invocations_total" in text
        anonymous = await cb.http.get("/metrics", headers={"Authorization": ""})
        assert anonymous.status_code == 401
