"""Versions you can see and steer, with real workers: list, rollback, split, pin, canary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from coldbrew import verify_webhook
from coldbrew.cli.serve import deploy_local
from tests.integration.conftest import Running, running, wait_for
from tests.integration.test_webhooks import receiver

pytestmark = pytest.mark.anyio

MODEL = """
import coldbrew

app = coldbrew.App("vt")
TAG = {tag!r}


@app.model(max_workers=2, idle_timeout_s=30, retries=0)
class Vt:
    def predict(self, n: int = 0) -> dict:
        if TAG == "broken":
            raise RuntimeError("canary broke")
        return {{"tag": TAG, "n": n}}
"""


async def deploy_tag(cb: Running, tmp_path: Path, tag: str) -> None:
    """Deploy endpoint `vt` whose predict answers with `tag` (a new version per tag)."""
    directory = tmp_path / "vt"
    directory.mkdir(exist_ok=True)
    (directory / "app.py").write_text(MODEL.format(tag=tag))
    await deploy_local(cb.platform, directory)


async def versions(cb: Running) -> dict[str, Any]:
    response = await cb.http.get("/v1/endpoints/vt/versions")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_rollback_sends_new_jobs_to_the_previous_version_and_says_why(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as cb:
        for tag in ("one", "two"):
            await deploy_tag(cb, tmp_path, tag)
        assert (await cb.runsync("vt", {}))["output"]["tag"] == "two"

        response = await cb.http.post("/v1/endpoints/vt/rollback", json={})
        assert response.json() == {"endpoint": "vt", "from": 2, "version": 1}
        assert (await cb.runsync("vt", {}))["output"]["tag"] == "one"
        listing = await versions(cb)
        assert listing["current"] == 1
        two, one = listing["versions"]
        assert (two["version"], two["status"], two["share"]) == (2, "rolled_back", 0)
        assert two["rollbackReason"] == "rolled back to version 1 by request"
        assert (one["status"], one["share"], one["environment"]) == ("current", 100, "server")
        assert one["stats"]["invocations"] == 1 and two["stats"]["invocations"] == 1

        again = await cb.http.post("/v1/endpoints/vt/rollback", json={})
        assert again.status_code == 400
        assert "no earlier one" in again.json()["error"]["message"]
        forward = await cb.http.post("/v1/endpoints/vt/rollback", json={"to": 2})
        assert forward.json()["version"] == 2
        assert (await cb.runsync("vt", {}))["output"]["tag"] == "two"
        missing = await cb.http.post("/v1/endpoints/vt/rollback", json={"to": 7})
        assert missing.status_code == 404
        assert "its versions are 1, 2" in missing.json()["error"]["hint"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"weights": {"1": 90, "5": 10}}, "has no version 5"),
        ({"weights": {"1": 110, "2": -10}}, "must be 0-100"),
        ({"weights": {"1": 90, "2": 20}}, "sums to 110"),
        ({"weights": {"1": 90.5, "2": 9.5}}, "whole percent"),
        ({"weights": {}}, "map version numbers to percent"),
        ({"weights": {"1": 90, "2": 10}, "maxErrorRate": 5}, "is not a rate"),
        ({"weights": {"1": 90, "2": 10}, "maxP99Ms": -1}, "is not a latency"),
        ({"weights": {"1": 90, "2": 10}, "maxP99Ms": 9, "window": "soon"}, "not a duration"),
    ],
    ids=["unknown", "negative", "sum", "fraction", "empty", "rate", "p99", "window"],
)
async def test_a_bad_split_is_a_400_that_says_what_to_fix(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    async with running(tmp_path) as cb:
        for tag in ("one", "two"):
            await deploy_tag(cb, tmp_path, tag)
        response = await cb.http.put("/v1/endpoints/vt/traffic", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert message in error["message"]
        assert error["hint"]
        assert (await versions(cb))["rule"] is None  # nothing changed


async def test_a_split_shows_shares_states_and_its_rule(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        for tag in ("one", "two"):
            await deploy_tag(cb, tmp_path, tag)
        response = await cb.http.put(
            "/v1/endpoints/vt/traffic",
            json={"weights": {"1": 90, "2": 10}, "maxErrorRate": 0.05, "window": "30s"},
        )
        assert response.status_code == 200, response.text
        listing = response.json()
        assert listing["current"] == 1  # the largest share
        assert [(v["version"], v["status"], v["share"]) for v in listing["versions"]] == [
            (2, "canary", 10),
            (1, "current", 90),
        ]
        assert listing["rule"] == {
            "windowS": 30.0,
            "maxErrorRate": 0.05,
            "maxP99Ms": None,
            "minJobs": 20,
            "webhook": None,
        }
        await deploy_tag(cb, tmp_path, "three")  # a deploy means: new jobs go here
        after = await versions(cb)
        assert after["rule"] is None
        assert [(v["version"], v["share"]) for v in after["versions"]] == [(3, 100), (2, 0), (1, 0)]


async def test_a_failing_canary_is_taken_back_and_a_signed_event_posted(tmp_path: Path) -> None:
    async with receiver() as hook, running(tmp_path, canary_check_s=0.2) as cb:
        for tag in ("good", "broken"):
            await deploy_tag(cb, tmp_path, tag)
        rule = {"maxErrorRate": 0.1, "minJobs": 5, "window": "60s", "webhook": hook.url}
        response = await cb.http.put(
            "/v1/endpoints/vt/traffic", json={"weights": {"1": 70, "2": 30}} | rule
        )
        assert response.status_code == 200, response.text

        async def traffic_then_listing() -> dict[str, Any]:
            for n in range(10):
                await cb.runsync("vt", {"n": n})
            return await versions(cb)

        listing = await wait_for(
            traffic_then_listing, lambda body: body["versions"][0]["status"] == "rolled_back"
        )
        canary = listing["versions"][0]
        assert canary["share"] == 0 and canary["rollbackReason"].startswith("error rate 1.000")
        assert listing["rule"] is None  # no canary left: the split is gone
        outputs = [await cb.runsync("vt", {"n": n}) for n in range(20)]
        assert {o["output"]["tag"] for o in outputs} == {"good"}

        await wait_for(lambda: asyncio.sleep(0, hook.received), bool)
        headers, body = hook.received[0]
        secret = (await cb.http.get("/v1/account")).json()["webhookSecret"]
        verify_webhook(secret, headers, body)
        event = orjson.loads(body)
        assert event == {
            "type": "version.rolled_back",
            "endpoint": "vt",
            "version": 2,
            "reason": canary["rollbackReason"],
        }


async def test_pins_and_splits_reach_real_workers(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        for tag in ("one", "two"):
            await deploy_tag(cb, tmp_path, tag)
        pinned = await cb.http.post(
            "/v2/vt/runsync", json={"input": {}}, headers={"X-Coldbrew-Version": "1"}
        )
        assert pinned.json()["output"]["tag"] == "one"
        suffixed = await cb.http.post("/v2/vt@1/run", json={"input": {}})
        job_id = suffixed.json()["id"]
        status = await wait_for(
            lambda: cb.http.get(f"/v2/vt@1/status/{job_id}"),
            lambda r: r.json()["status"] == "COMPLETED",
        )
        assert status.json()["output"]["tag"] == "one"
        unknown = await cb.http.post("/v2/vt@4/runsync", json={"input": {}})
        assert unknown.status_code == 404
        assert "its versions are 1, 2" in unknown.json()["error"]["hint"]
        clash = await cb.http.post(
            "/v2/vt@1/runsync", json={"input": {}}, headers={"X-Coldbrew-Version": "2"}
        )
        assert clash.status_code == 400

        await cb.http.put("/v1/endpoints/vt/traffic", json={"weights": {"1": 50, "2": 50}})
        tags = [(await cb.runsync("vt", {"n": n}))["output"]["tag"] for n in range(40)]
        assert set(tags) == {"one", "two"}  # both versions run, each on its own workers
        live = {w.version.number for w in cb.platform.scheduler.workers.values()}
        assert live == {1, 2}

        # per version in /v1/stats and /metrics: the same counts as the outputs said
        ran = {1: tags.count("one") + 2, 2: tags.count("two")}  # + the two pinned jobs
        (line,) = (await cb.http.get("/v1/stats")).json()["endpoints"]
        assert {v["version"]: v["invocations"] for v in line["versions"]} == ran
        metrics = (await cb.http.get("/metrics")).text
        for number, count in ran.items():
            series = (
                'coldbrew_version_invocations_total{account="default",endpoint="vt",'
                f'status="COMPLETED",version="{number}"}} {float(count)}'
            )
            assert series in metrics
