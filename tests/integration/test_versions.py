"""Versions you can see and steer, with real workers: list, rollback, split, pin, canary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coldbrew.cli.serve import deploy_local
from tests.integration.conftest import Running, running

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
