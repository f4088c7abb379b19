"""The Replicate-compatible API in process: accounts, versions, files and errors at its edges."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running, wait_for

pytestmark = pytest.mark.anyio


def _problem(response: Any, status: int, *words: str) -> None:
    """Replicate's error shape: what its client turns into ReplicateError(status, detail)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    for word in words:
        assert word in body["detail"], body


async def _prediction(cb: Running, path: str, **body: Any) -> Any:
    response = await cb.http.post(path, json=body)
    assert response.status_code == 201, response.text
    prediction = response.json()
    return await wait_for(
        lambda: cb.http.get(f"/v1/predictions/{prediction['id']}"),
        lambda r: r.json()["status"] in ("succeeded", "failed", "canceled"),
    )


async def _other_account(cb: Running) -> dict[str, str]:
    made = await cb.http.post("/v1/keys", json={"account": "other"})
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def test_one_account_never_sees_anothers_predictions_models_or_files(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "cog_runner") as cb:
        done = await _prediction(cb, "/v1/models/default/runner/predictions", input={"text": "a"})
        prediction = done.json()
        assert prediction["output"] == {"text": "> a a", "scale": 1.0, "tags": None}
        upload = await cb.http.post("/v1/files", files={"content": ("a.txt", b"abc", "text/plain")})
        assert upload.status_code == 201
        file_url = upload.json()["urls"]["get"]

        other = await _other_account(cb)
        seen = await cb.http.get(f"/v1/predictions/{prediction['id']}", headers=other)
        _problem(seen, 404, "no prediction")
        assert (await cb.http.get("/v1/predictions", headers=other)).json()["results"] == []
        by_version = await cb.http.post(
            "/v1/predictions", json={"version": prediction["version"], "input": {}}, headers=other
        )
        _problem(by_version, 404, "no version")
        by_name = await cb.http.post(
            "/v1/models/default/runner/predictions", json={"input": {"text": "b"}}, headers=other
        )
        _problem(by_name, 404, "no model owner 'default'")
        _problem(await cb.http.get(file_url, headers=other), 404, "no file")
        cancel = await cb.http.post(f"/v1/predictions/{prediction['id']}/cancel", headers=other)
        _problem(cancel, 404)


async def test_a_file_of_another_account_or_far_away_is_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, FIXTURES / "cog_predictor") as cb:
        upload = await cb.http.post("/v1/files", files={"content": ("n.txt", b"n", "text/plain")})
        record = upload.json()
        assert record["size"] == 1 and record["name"] == "n.txt"
        assert [f["id"] for f in (await cb.http.get("/v1/files")).json()["results"]] == [
            record["id"]
        ]
        other = await _other_account(cb)
        foreign = await cb.http.post(
            "/v1/files", files={"content": ("f.txt", b"f", "text/plain")}, headers=other
        )
        path = "/v1/models/default/cog-hello/predictions"
        stolen = {"name": "bob", "attachment": foreign.json()["urls"]["get"]}
        _problem(await cb.http.post(path, json={"input": stolen}), 400, "input.attachment")
        far = {"name": "bob", "attachment": "https://example.com/x.png"}
        _problem(await cb.http.post(path, json={"input": far}), 400, "input.attachment", "loopback")

        content = await cb.http.get(f"/v1/files/{record['id']}/download")
        assert content.content == b"n"
        forged = await cb.http.get(
            f"/v1/files/{record['id']}/download",
            params={"expiry": 2**40, "signature": "0" * 64},
            headers={"Authorization": ""},
        )
        _problem(forged, 404, "no file")
        assert (await cb.http.delete(f"/v1/files/{record['id']}")).status_code == 204
        _problem(await cb.http.get(f"/v1/files/{record['id']}"), 404)
        bad_upload = await cb.http.post("/v1/files", json={"not": "multipart"})
        _problem(bad_upload, 400, "multipart/form-data")


async def test_a_pinned_version_runs_that_version_after_a_redeploy(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "cog_runner", model)
    async with running(tmp_path / "home", model) as cb:
        first = (await cb.http.get("/v1/models/default/runner")).json()["latest_version"]["id"]
        from coldbrew.cli.serve import deploy_local

        run_py = model / "run.py"
        run_py.write_text(run_py.read_text().replace('self.prefix = ">"', 'self.prefix = "#"'))
        await deploy_local(cb.platform, model)
        latest = (await cb.http.get("/v1/models/default/runner")).json()["latest_version"]["id"]
        assert latest != first
        old = await _prediction(cb, "/v1/predictions", version=first, input={"text": "x"})
        assert old.json()["output"]["text"] == "> x x"  # Replicate pins versions: so does coldbrew
        done = await _prediction(cb, "/v1/predictions", version=latest, input={"text": "x"})
        assert done.json()["output"]["text"] == "# x x"
        version = await cb.http.get(f"/v1/models/default/runner/versions/{latest}")
        assert version.json()["openapi_schema"]["components"]["schemas"]["Input"]["required"] == [
            "text"
        ]


async def test_bad_requests_get_problem_documents_that_say_the_fix(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        _problem(await cb.http.post("/v1/predictions", json={"input": {}}), 400, "version")
        _problem(await cb.http.post("/v1/predictions", content=b"{"), 400, "not JSON")
        path = "/v1/models/default/toy/predictions"
        wait = await cb.http.post(path, json={"input": {}}, headers={"Prefer": "wait=99"})
        _problem(wait, 400, "between 1 and 60")
        hook = {"input": {}, "webhook": "http://127.0.0.1:9/h", "webhook_events_filter": ["x"]}
        _problem(await cb.http.post(path, json=hook), 400, "webhook_events_filter")
        _problem(await cb.http.post(path, json={"input": {"nope": 1}}), 400, "input")
        no_key = await cb.http.get("/v1/predictions", headers={"Authorization": ""})
        _problem(no_key, 401, "no API key")

        # a coldbrew model (not Cog) runs through the same API; its failure is a failed prediction
        ok = await _prediction(cb, path, input={"value": 7})
        assert ok.json()["output"]["value"] == 7 and ok.json()["model"] == "default/toy"
        failed = await _prediction(cb, path, input={"crash": "boom"})
        assert failed.json()["status"] == "failed" and failed.json()["error"] == "boom"
        listed = (await cb.http.get("/v1/predictions")).json()["results"]
        assert [p["id"] for p in listed] == [failed.json()["id"], ok.json()["id"]]
