"""Limits at the gateway: each refusal is a 413 or 400 that names the limit and its setting."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from coldbrew.control import deploy
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def _chunks(data: bytes, size: int = 4096) -> Any:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_run_and_runsync_bodies_are_bounded_on_the_fast_lane(tmp_path: Path) -> None:
    limits = {"run_body_max_mb": 0.01, "runsync_body_max_mb": 0.02}
    async with running(tmp_path, FIXTURES / "toys", **limits) as cb:
        big = {"input": {"value": "x" * 15_000}}
        error = _error(await cb.http.post("/v2/toy/run", json=big), 413)
        assert error["setting"] == "run_body_max_mb"
        assert "COLDBREW_RUN_BODY_MAX_MB" in error["hint"]
        assert "POST /v2/{endpoint}/run" in error["message"]
        # runsync's limit is higher: the same body passes there
        assert (await cb.http.post("/v2/toy/runsync", json=big)).json()["status"] == "COMPLETED"
        # a chunked body (no Content-Length) is counted as it arrives
        raw = b'{"input": {"value": "' + b"y" * 30_000 + b'"}}'
        error = _error(await cb.http.post("/v2/toy/runsync", content=_chunks(raw)), 413)
        assert error["setting"] == "runsync_body_max_mb"


async def test_deep_json_is_refused_before_it_reaches_the_store(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        body = {"input": {"value": _nested(300)}}
        error = _error(await cb.http.post("/v2/toy/runsync", json=body), 400)
        assert "nests more than 64 levels" in error["message"]
        assert "COLDBREW_JSON_MAX_DEPTH" in error["hint"]
        ok = await cb.http.post("/v2/toy/runsync", json={"input": {"value": _nested(50)}})
        assert ok.json()["status"] == "COMPLETED"
        # the store still works for everyone afterwards
        assert (await cb.http.get("/v2/toy/health")).status_code == 200


async def test_a_file_upload_is_streamed_and_refused_past_the_limit(tmp_path: Path) -> None:
    async with running(tmp_path, upload_max_mb=0.05) as cb:
        too_big = {"content": ("big.bin", b"z" * 60_000, "application/octet-stream")}
        error = _error(await cb.http.post("/v1/files", files=too_big), 413)
        assert error["setting"] == "upload_max_mb"
        assert not [p for p in (tmp_path / "files").iterdir() if not p.name.startswith(".sign")]
        data = bytes(range(256)) * 100
        small = {"content": ("ok.bin", data, "application/octet-stream")}
        record = (await cb.http.post("/v1/files", files=small)).json()
        assert record["size"] == len(data)
        assert record["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()
        download = await cb.http.get(f"/v1/files/{record['id']}/download")
        assert download.content == data


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_artifacts_are_bounded_and_an_empty_tar_is_a_400(tmp_path: Path) -> None:
    async with running(tmp_path, artifact_max_mb=0.05) as cb:
        big = _tar({"w.bin": bytes(60_000)})
        sha = hashlib.sha256(big).hexdigest()
        error = _error(await cb.http.put(f"/v1/artifacts/{sha}", content=big), 413)
        assert error["setting"] == "artifact_max_mb"

        empty = _tar({})
        sha = hashlib.sha256(empty).hexdigest()
        error = _error(await cb.http.put(f"/v1/artifacts/{sha}", content=empty), 400)
        assert "empty tar" in error["message"]
        assert str(tmp_path) not in str(error)


async def test_an_artifact_is_unpacked_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tar bomb once held the loop for 6 s: extraction now runs in a worker thread."""
    threads: list[bool] = []
    real = deploy.unpack

    def spy(*args: Any) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        real(*args)

    monkeypatch.setattr(deploy, "unpack", spy)
    async with running(tmp_path) as cb:
        data = _tar({"app.py": b"x = 1\n"})
        sha = hashlib.sha256(data).hexdigest()
        assert (await cb.http.put(f"/v1/artifacts/{sha}", content=data)).status_code == 200
    assert threads == [False]


async def test_an_output_over_the_limit_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys", output_max_mb=0.01) as cb:
        result = await cb.runsync("toy", {"value": "v" * 20_000})
        assert result["status"] == "FAILED"
        assert result["errorDetail"]["type"] == "payload_too_large"
        assert "COLDBREW_OUTPUT_MAX_MB" in result["error"]
        streamed = await cb.runsync("counter", {"n": 2000})
        assert streamed["status"] == "FAILED"
        assert "streamed output" in streamed["error"]
        # the worker is fine: a small output still works
        assert (await cb.runsync("toy", {"value": 1}))["output"]["value"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"policy": {"executionTimeout": True}}, "executionTimeout", id="bool-timeout"),
        pytest.param({"policy": {"ttl": False}}, "ttl", id="bool-ttl"),
        pytest.param({"webhook": "http://127.0.0.1:99999/hook"}, "webhook", id="port-99999"),
        pytest.param({"webhook": "http://127.0.0.1:0/hook"}, "webhook", id="port-0"),
    ],
)
async def test_nonsense_in_a_job_request_is_a_400(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        error = _error(await cb.http.post("/v2/toy/run", json={"input": {}, **body}), 400)
        assert message in error["message"]


async def test_an_absurd_window_is_a_400(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        await cb.runsync("toy", {"value": 1})
        response = await cb.http.get("/v1/endpoints/toy/advice?window=99999999999999999w")
        assert "longer than" in _error(response, 400)["message"]
        response = await cb.http.get("/v1/usage?since=99999999999999999w")
        _error(response, 400)
        assert (await cb.http.get("/v1/endpoints/toy/advice?window=520w")).status_code == 200
        job = await cb.run("toy", {})
        await wait_for(lambda: cb.job(job), lambda j: j["status"] == "COMPLETED")
