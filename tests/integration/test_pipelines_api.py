"""`/v1/pipelines` and every kind of step on real worker processes: a definition is checked on
create (400 naming each problem), listed, shown, replaced and deleted; a run through
ensemble → switch → split → map calls one job per task and answers with one id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


def _other(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "endpoint": "other", "input": {"value": value}}


SHAPES: dict[str, Any] = {
    "name": "shapes",
    "steps": [
        {"name": "fan", "ensemble": [_other("a", "$input.n"), _other("b", 2)]},
        {"name": "pick", "switch": "$.b.value",
         "cases": {"2": _other("two", "$steps.fan.a.value")}},
        {"name": "ab", "split": [{"weight": 1, "step": _other("left", 0)},
                                 {"weight": 1, "step": _other("right", 1)}]},
        {"name": "each", "map": "$input.items", "step": _other("one", "$")},
    ],
}  # fmt: skip


async def test_definitions_are_checked_listed_replaced_and_deleted(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        bad = {
            "name": "bad",
            "steps": [
                {"name": "a", "endpoint": "ghost"},
                {"name": "b", "endpoint": "other", "input": {"value": "$steps.c.x"}},
                {"name": "c", "switch": "label", "cases": {"x": "other"}},
            ],
        }
        refused = await cb.http.post("/v1/pipelines", json=bad)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["type"] == "invalid_pipeline"
        assert [p["where"] for p in error["problems"]] == [
            "steps[0] (a)",
            "steps[1] (b).input.value",
            "steps[2] (c).switch",
        ]
        assert "no endpoint 'ghost'" in error["message"]
        assert "reads step 'c', which has not finished" in error["message"]
        assert "'label' is not a field path" in error["message"]
        clash = await cb.http.post("/v1/pipelines", json={"name": "toy", "steps": ["other"]})
        assert "an endpoint is already named 'toy'" in clash.json()["error"]["message"]

        made = await cb.http.post("/v1/pipelines", json=SHAPES)
        assert made.status_code == 201
        assert made.json()["steps"] == "fan[ensemble] → pick[switch] → ab[split] → each[map]"
        again = await cb.http.post("/v1/pipelines", json=SHAPES)
        assert (again.status_code, again.json()["changed"], again.json()["revision"]) == (
            200,
            False,
            1,
        )
        listed = (await cb.http.get("/v1/pipelines")).json()["pipelines"]
        assert [(p["name"], p["endpoints"]) for p in listed] == [("shapes", ["other"])]
        shown = (await cb.http.get("/v1/pipelines/shapes")).json()
        assert shown["definition"] == SHAPES

        assert (await cb.http.delete("/v1/pipelines/shapes")).status_code == 200
        assert (await cb.http.get("/v1/pipelines/shapes")).status_code == 404
        missing = await cb.http.post("/v2/shapes/run", json={"input": {}})
        assert missing.status_code == 404
        assert "no endpoint 'shapes'" in missing.json()["error"]["message"]


async def test_a_run_through_every_kind_of_step_on_real_workers(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        assert (await cb.http.post("/v1/pipelines", json=SHAPES)).status_code == 201
        body = await cb.runsync("shapes", {"n": 5, "items": [7, 8, 9]})
        assert body["status"] == "COMPLETED", body
        assert body["output"] == [{"value": 7}, {"value": 8}, {"value": 9}]
        keys = [s["stage"] for s in body["stages"]]
        assert sorted(keys[:2]) == ["a", "b"]  # the ensemble's branches, at once
        assert keys[2] == "two"
        assert keys[3] in ("left", "right")  # the split's one branch
        # the map's elements run at once: their stages are listed as they were recorded
        assert sorted(keys[4:]) == ["each[0]/one", "each[1]/one", "each[2]/one"]
        assert len({s["id"] for s in body["stages"]}) == 7
        for stage in body["stages"]:
            job = (await cb.http.get(f"/v2/other/status/{stage['id']}")).json()
            assert job["status"] == "COMPLETED"
        two = (await cb.http.get(f"/v2/other/status/{body['stages'][2]['id']}")).json()
        assert two["output"] == {"value": 5}  # $steps.fan.a.value
        again = await cb.runsync("shapes", {"n": 1, "items": []})
        assert again["output"] == []

        run_id = (await cb.http.post("/v2/shapes/run", json={"input": {"n": 1}})).json()["id"]
        failed = await wait_for(
            lambda: cb.http.get(f"/v2/shapes/status/{run_id}"),
            lambda r: r.json()["status"] == "FAILED",
        )
        assert failed.json()["errorDetail"]["stage"] == "each"
        assert "$input.items: no 'items' in ['n']" in failed.json()["error"]


async def test_a_deploy_whose_pipeline_calls_an_unknown_endpoint_adds_nothing(
    tmp_path: Path,
) -> None:
    from coldbrew.cli.serve import deploy_local
    from coldbrew.errors import InvalidPipeline

    async with running(tmp_path) as cb:
        with pytest.raises(InvalidPipeline, match="no endpoint 'ghost'"):
            await deploy_local(cb.platform, FIXTURES / "pipeline_ghost")
        assert await cb.platform.store.list_endpoints("default") == []
        assert await cb.platform.store.list_pipelines("default") == []


async def test_cancel_stops_the_run_and_its_running_stage_job(tmp_path: Path) -> None:
    slow = {"name": "slow", "steps": [_other("first", 1), {"name": "nap", "endpoint": "toy",
            "input": {"sleep_s": 10}}, _other("never", 2)]}  # fmt: skip
    async with running(tmp_path, TOYS) as cb:
        assert (await cb.http.post("/v1/pipelines", json=slow)).status_code == 201
        run_id = (await cb.http.post("/v2/slow/run", json={"input": {}})).json()["id"]
        await wait_for(
            lambda: cb.http.get(f"/v2/slow/status/{run_id}"),
            lambda r: [s["status"] for s in r.json()["stages"]] == ["COMPLETED", "IN_PROGRESS"],
        )
        cancelled = (await cb.http.post(f"/v2/slow/cancel/{run_id}")).json()
        assert cancelled["status"] == "CANCELLED"
        nap = cancelled["stages"][1]
        assert nap["status"] == "CANCELLED"
        job = (await cb.http.get(f"/v2/toy/status/{nap['id']}")).json()
        assert job["status"] == "CANCELLED"
        again = (await cb.http.get(f"/v2/slow/status/{run_id}")).json()
        assert [s["stage"] for s in again["stages"]] == ["first", "nap"]  # never started
        assert (await cb.http.post(f"/v2/slow/retry/{run_id}")).status_code == 409


async def test_a_run_with_a_webhook_posts_its_final_status_signed(tmp_path: Path) -> None:
    import orjson

    from coldbrew import verify_webhook
    from tests.integration.test_webhooks import receiver

    async with receiver() as hook, running(tmp_path, TOYS) as cb:
        assert (await cb.http.post("/v1/pipelines", json=SHAPES)).status_code == 201
        bad = await cb.http.post("/v2/shapes/run", json={"input": {}, "webhook": "ftp://x"})
        assert bad.status_code == 400
        secret = (await cb.http.get("/v1/account")).json()["webhookSecret"]
        body = {"input": {"n": 3, "items": [1]}, "webhook": hook.url}
        run_id = (await cb.http.post("/v2/shapes/run", json=body)).json()["id"]
        await wait_for(lambda: _count(hook), lambda n: n == 1)
        headers, posted = hook.received[0]
        assert verify_webhook(secret, headers, posted)
        status = orjson.loads(posted)
        assert (status["id"], status["status"], status["output"]) == (
            run_id,
            "COMPLETED",
            [{"value": 1}],
        )
        assert headers["webhook-id"] == f"{run_id}-1"
        assert len(status["stages"]) == 5


async def _count(hook: Any) -> int:
    return len(hook.received)
