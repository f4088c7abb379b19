"""The dashboard's API and files: stats, time series and recent jobs, scoped to the key's account,
and the static app at /ui."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio


async def test_stats_timeseries_and_jobs_after_real_traffic(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        cold = await cb.runsync("toy", {"value": 1, "say": "hello from the toy"})
        await cb.runsync("toy", {"value": 2})
        failed = await cb.runsync("toy", {"crash": "on purpose"})
        assert (cold["coldStart"], failed["status"]) == (True, "FAILED")

        stats = (await cb.http.get("/v1/stats", params={"window": "1h"})).json()
        toy = {line["endpoint"]: line for line in stats["endpoints"]}["toy"]
        assert toy["invocations"] == 3
        assert toy["byStatus"] == {"COMPLETED": 2, "FAILED": 1, "CANCELLED": 0, "TIMED_OUT": 0}
        assert toy["coldStarts"] == 1 and toy["coldStartRate"] == pytest.approx(1 / 3, abs=1e-4)
        assert toy["coldStartWaitAvgMs"] == pytest.approx(cold["delayTime"], abs=1)
        assert toy["latencyP50Ms"] is not None and toy["latencyP99Ms"] >= toy["latencyP50Ms"]

        ts = (
            await cb.http.get("/v1/endpoints/toy/timeseries", params={"window": "5m", "step": "1m"})
        ).json()
        assert len(ts["t"]) == 5 and ts["stepS"] == 60
        assert sum(ts["invocations"]["COMPLETED"]) == 2 and sum(ts["invocations"]["FAILED"]) == 1
        assert sum(ts["coldStarts"]) == 1
        (only,) = toy.pop("versions")  # one version: its line is the endpoint's own numbers
        assert only == {"version": 1, **ts["summary"]}
        assert {"endpoint": "toy", **ts["summary"]} == toy
        assert max(n or 0 for n in ts["workers"]["idle"] + ts["workers"]["running"]) >= 1
        usage = (await cb.http.get("/v1/usage", params={"since": "1h"})).json()
        (line,) = [r for r in usage["rows"] if r["endpoint"] == "default/toy"]
        cost = ts["costUsdPerHour"]
        # The usage report ran after the series: its seconds can only have grown.
        assert 0 < sum(cost["busy"]) <= line["busyUsd"] + 1e-9
        assert 0 < sum(cost["cold_start"]) <= line["coldStartUsd"] + 1e-9

        jobs = (await cb.http.get("/v1/endpoints/toy/jobs", params={"limit": 2})).json()["jobs"]
        assert len(jobs) == 2 and jobs[0]["id"] == failed["id"]
        assert jobs[0]["status"] == "FAILED" and jobs[0]["error"] == "on purpose"
        assert all("output" not in j for j in jobs)
        every = (await cb.http.get("/v1/endpoints/toy/jobs")).json()["jobs"]
        assert [j["id"] for j in every][-1] == cold["id"]
        assert every[-1]["coldStartDetail"]["totalMs"] > 0


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/v1/stats", {"window": "soon"}, "is not a duration"),
        ("/v1/endpoints/toy/timeseries", {"window": "0h"}, "is not a duration"),
        ("/v1/endpoints/toy/timeseries", {"step": "1s"}, "shorter than 5 s"),
        ("/v1/endpoints/toy/timeseries", {"window": "60d"}, "longer than 31 days"),
        ("/v1/endpoints/toy/timeseries", {"window": "24h", "step": "10s"}, "more than 720"),
        ("/v1/endpoints/toy/jobs", {"limit": "0"}, "out of range"),
    ],
)
async def test_bad_parameters_say_what_to_send(
    tmp_path: Path, path: str, params: dict[str, str], says: str
) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        response = await cb.http.get(path, params=params)
        assert response.status_code == 400
        error = response.json()["error"]
        assert says in error["message"] and error["hint"]


async def test_another_account_sees_none_of_this_accounts_endpoints(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        await cb.runsync("toy", {"value": 1})
        key = (await cb.http.post("/v1/keys", json={"account": "acme"})).json()["key"]
        acme = {"Authorization": f"Bearer {key}"}
        stats = (await cb.http.get("/v1/stats", headers=acme)).json()
        assert stats["endpoints"] == []
        for path in ("/v1/endpoints/toy/timeseries", "/v1/endpoints/toy/jobs"):
            response = await cb.http.get(path, headers=acme)
            assert response.status_code == 404, path
        assert (await cb.http.get("/v1/stats", headers={"Authorization": ""})).status_code == 401


async def test_the_app_is_served_at_ui_with_its_vendored_chart_library(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        redirect = await cb.http.get("/ui", headers={"Authorization": ""})
        assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
        page = await cb.http.get("/ui/", headers={"Authorization": ""})
        assert page.status_code == 200 and "coldbrew dashboard" in page.text
        for asset in ("app.js", "api.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
            response = await cb.http.get(f"/ui/{asset}")
            assert response.status_code == 200, asset
        script = (await cb.http.get("/ui/vendor/uPlot.iife.min.js")).text
        assert script.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
        assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
