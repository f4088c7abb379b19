"""The invocation and management API with real workers: isolation, validation, job control."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from coldbrew.cli.serve import deploy_local
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def test_no_key_or_a_wrong_key_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        anonymous = await cb.http.post(
            "/v2/toy/runsync", json={"input": {}}, headers={"Authorization": ""}
        )
        wrong = await cb.http.post(
            "/v2/toy/runsync", json={"input": {}}, headers={"Authorization": "Bearer cb_nope"}
        )
        assert anonymous.status_code == wrong.status_code == 401
        assert anonymous.json()["error"]["type"] == "unauthorized"
        assert "Authorization: Bearer" in anonymous.json()["error"]["hint"]


async def test_an_account_sees_only_its_own_endpoints_and_jobs(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        job = await cb.runsync("toy", {"value": "secret"})
        created = await cb.http.post("/v1/keys", json={"account": "acme"})
        assert created.status_code == 201
        acme = {"Authorization": f"Bearer {created.json()['key']}"}

        assert (await cb.http.get("/v1/endpoints", headers=acme)).json() == {"endpoints": []}
        for path in (
            f"/v1/jobs/{job['id']}",
            f"/v2/toy/status/{job['id']}",
            f"/v1/jobs/{job['id']}/logs",
        ):
            response = await cb.http.get(path, headers=acme)
            assert response.status_code == 404, path
        run = await cb.http.post("/v2/toy/runsync", json={"input": {}}, headers=acme)
        assert run.status_code == 404
        cancel = await cb.http.post(f"/v2/toy/cancel/{job['id']}", headers=acme)
        assert cancel.status_code == 404
        denied = await cb.http.post("/v1/keys", json={"account": "x"}, headers=acme)
        assert denied.status_code == 403


async def test_bad_input_is_refused_with_the_field_and_nothing_is_queued(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        before = (await cb.http.get("/v2/other/health")).json()["jobs"]
        response = await cb.http.post("/v2/other/runsync", json={"input": {"value": "ten"}})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_input"
        assert "input.value" in error["message"] and "integer" in error["message"]
        assert "value (integer)" in error["hint"]
        unknown = await cb.http.post("/v2/other/run", json={"input": {"valu": 1}})
        assert unknown.status_code == 400 and "valu" in unknown.json()["error"]["message"]
        no_input = await cb.http.post("/v2/other/run", json={"inputs": {}})
        assert no_input.status_code == 400 and "'input'" in no_input.json()["error"]["message"]
        not_json = await cb.http.post("/v2/other/run", content=b"{nope")
        assert not_json.status_code == 400
        assert (await cb.http.get("/v2/other/health")).json()["jobs"] == before


async def test_run_then_status_and_the_worker_output_becomes_the_job_log(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        job_id = await cb.run("toy", {"say": "hello from the model", "value": 3})
        job = await cb.wait_job(job_id)
        assert job["status"] == "COMPLETED" and job["output"]["value"] == 3
        status = (await cb.http.get(f"/v2/toy/status/{job_id}")).json()
        assert status["output"] == job["output"]
        logs = (await cb.http.get(f"/v1/jobs/{job_id}/logs")).json()["logs"]
        assert [line["line"] for line in logs] == ["hello from the model"]
        assert logs[0]["stream"] == "stdout"


async def test_runsync_hands_back_the_id_when_the_wait_runs_out(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        response = await cb.http.post(
            "/v2/toy/runsync", params={"wait": 50}, json={"input": {"sleep_s": 0.5, "value": 1}}
        )
        body = response.json()
        assert body["status"] in ("IN_QUEUE", "IN_PROGRESS")
        assert (await cb.wait_job(body["id"]))["status"] == "COMPLETED"


async def test_cancel_a_queued_and_a_running_job(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        running_id = await cb.run("other", {"value": 1})
        await cb.wait_job(running_id)
        slow = [await cb.run("toy", {"sleep_s": 5}) for _ in range(4)]  # 3 run, 1 queued
        await wait_for(lambda: cb.job(slow[0]), lambda j: j["status"] == "IN_PROGRESS")
        queued = (await cb.http.post(f"/v2/toy/cancel/{slow[3]}")).json()
        assert queued["status"] == "CANCELLED"
        running_job = (await cb.http.post(f"/v2/toy/cancel/{slow[0]}")).json()
        assert running_job["status"] == "CANCELLED"
        again = (await cb.http.post(f"/v2/toy/cancel/{slow[0]}")).json()
        assert again["status"] == "CANCELLED"
        for job_id in slow[1:3]:
            await cb.http.post(f"/v2/toy/cancel/{job_id}")
        health = (await cb.http.get("/v2/toy/health")).json()
        assert health["jobs"]["inQueue"] == health["jobs"]["inProgress"] == 0


async def test_purge_queue_and_retry(tmp_path: Path) -> None:
    # sandbox off: the toy leaves its once-marker in the test's directory
    async with running(tmp_path, TOYS, account_concurrency_cap=1, sandbox="off") as cb:
        blocker = await cb.run("toy", {"sleep_s": 1})
        await wait_for(lambda: cb.job(blocker), lambda j: j["status"] == "IN_PROGRESS")
        queued = [await cb.run("toy", {"value": i}) for i in range(3)]
        purged = (await cb.http.post("/v2/toy/purge-queue")).json()
        assert purged == {"removed": 3, "status": "completed"}
        assert {(await cb.job(j))["status"] for j in queued} == {"CANCELLED"}
        assert (await cb.wait_job(blocker))["status"] == "COMPLETED"

        marker = tmp_path / "fail-once"
        failed = await cb.runsync("toy", {"crash": "nope", "once_marker": str(marker)})
        assert failed["status"] == "FAILED"
        not_failed = await cb.http.post(f"/v2/toy/retry/{blocker}")
        assert not_failed.status_code == 409
        retried = (await cb.http.post(f"/v2/toy/retry/{failed['id']}")).json()
        assert retried == {"id": failed["id"], "status": "IN_QUEUE"}
        assert (await cb.wait_job(failed["id"]))["status"] == "COMPLETED"


async def test_health_counts_jobs_and_workers(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("toy", {})
        await cb.runsync("toy", {"crash": "x"})
        health = (await cb.http.get("/v2/toy/health")).json()
        assert health["jobs"] == {
            "completed": 1,
            "failed": 1,
            "inProgress": 0,
            "inQueue": 0,
            "retried": 0,
        }
        assert health["workers"] == {"idle": 1, "running": 0, "initializing": 0}


async def test_redeploy_makes_a_new_version_only_when_something_changed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(TOYS, source)
    async with running(tmp_path / "home", source) as cb:
        first = await cb.runsync("other", {"value": 1})
        lines = await deploy_local(cb.platform, source)
        assert all("unchanged" in line for line in lines)
        app = source / "app.py"
        app.write_text(
            app.read_text().replace('return {"value": value}', 'return {"value": value, "v": 2}')
        )
        lines = await deploy_local(cb.platform, source)
        assert any("other v2 (new version)" in line for line in lines)
        second = await cb.runsync("other", {"value": 1})
        assert second["output"] == {"value": 1, "v": 2}
        assert second["workerId"] != first["workerId"]
        endpoint = (await cb.http.get("/v1/endpoints/other")).json()
        assert endpoint["version"] == 2
        assert endpoint["inputSchema"]["properties"]["value"]["type"] == "integer"


async def test_delete_stops_workers_and_removes_the_endpoint(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        await cb.runsync("other", {"value": 1})
        assert cb.live_workers("other") == 1
        assert (await cb.http.delete("/v1/endpoints/other")).status_code == 200
        await wait_for(lambda: _value(cb.live_workers("other")), lambda n: n == 0)
        missing = await cb.http.post("/v2/other/runsync", json={"input": {}})
        assert missing.status_code == 404
        names = [e["name"] for e in (await cb.http.get("/v1/endpoints")).json()["endpoints"]]
        assert names == ["counter", "toy"]


async def test_the_openapi_document_carries_each_endpoints_input_schema(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        doc = (await cb.http.get("/v1/openapi.json")).json()
        body = doc["paths"]["/v2/other/runsync"]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]["properties"]["input"]
        assert schema["properties"]["value"] == {"default": 0, "title": "Value", "type": "integer"}


async def test_finished_jobs_are_purged_after_their_ttl(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        short = await cb.runsync("other", {"value": 1}, policy={"ttl": 1})
        kept = await cb.runsync("other", {"value": 2})
        await asyncio.sleep(1.1)
        removed = await cb.platform.store.purge_expired(cb.platform.clock.time())
        assert removed == 1
        assert (await cb.http.get(f"/v1/jobs/{short['id']}")).status_code == 404
        assert (await cb.http.get(f"/v1/jobs/{kept['id']}")).status_code == 200


async def _value(value: int) -> int:
    return value


async def test_admin_must_be_a_json_boolean(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        response = await cb.http.post("/v1/keys", json={"account": "acme", "admin": "false"})
        assert response.status_code == 400
        assert "JSON boolean" in response.json()["error"]["message"]


async def test_a_malformed_webhook_url_is_refused_before_anything_is_queued(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, TOYS) as cb:
        for bad in ("http://[::1", "http://", "ftp://host/x", 42):
            response = await cb.http.post("/v2/toy/run", json={"input": {}, "webhook": bad})
            assert response.status_code == 400, bad
        assert (await cb.http.get("/v2/toy/health")).json()["jobs"]["inQueue"] == 0
