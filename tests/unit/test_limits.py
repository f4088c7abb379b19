"""Request limits: which limit each route gets, refusal while reading, JSON depth, tar bombs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from coldbrew.api.contain import ContainErrors
from coldbrew.api.limits import MB, BodyLimits, body_limit, too_deep
from coldbrew.config import Settings
from coldbrew.control.unpack import UnpackLimits, unpack
from coldbrew.errors import InvalidRequest, PayloadTooLarge


@pytest.mark.parametrize(
    ("method", "path", "field", "mb"),
    [
        pytest.param("POST", "/v2/echo/run", "run_body_max_mb", 10, id="run"),
        pytest.param("POST", "/v2/echo/runsync", "runsync_body_max_mb", 20, id="runsync"),
        pytest.param("POST", "/v1/files", "upload_max_mb", 100, id="upload"),
        pytest.param("PUT", "/v1/artifacts/ab", "artifact_max_mb", 2048, id="artifact"),
        pytest.param("POST", "/v1/runpod-worker/job-done/w/j", "output_max_mb", 50, id="output"),
        pytest.param("POST", "/v1/predictions", "body_max_mb", 20, id="other"),
        pytest.param("POST", "/v2/models/m/infer", "body_max_mb", 20, id="oip"),
    ],
)
def test_each_route_has_its_limit(method: str, path: str, field: str, mb: int) -> None:
    limit = body_limit(Settings(), method, path)
    assert (limit.field, limit.max_bytes) == (field, mb * MB)
    assert f"COLDBREW_{field.upper()}" in limit.error().hint


class _Client:
    """An ASGI receive that would send `total` bytes in `chunk`-byte messages; counts what
    the application pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.left, self.chunk, self.pulled = total, chunk, 0

    async def receive(self) -> dict[str, Any]:
        n = min(self.chunk, self.left)
        self.left -= n
        self.pulled += n
        return {"type": "http.request", "body": b"x" * n, "more_body": self.left > 0}


async def _reads_everything(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read %d" % len(body)})


async def _call(app: Any, client: _Client, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/echo/run", "headers": headers}
    await app(scope, client.receive, send)
    return sent


@pytest.mark.anyio
async def test_a_chunked_500_mb_body_is_refused_after_the_limit_not_read_whole() -> None:
    settings = Settings(run_body_max_mb=10)
    client = _Client(500 * MB)
    sent = await _call(BodyLimits(_reads_everything, settings), client, [])
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    error = orjson.loads(sent[1]["body"])["error"]
    assert error["type"] == "payload_too_large"
    assert error["setting"] == "run_body_max_mb"
    assert "COLDBREW_RUN_BODY_MAX_MB" in error["hint"]
    # what the gateway ever held: the limit plus one chunk, not 500 MB
    assert client.pulled <= 10 * MB + client.chunk


@pytest.mark.anyio
async def test_a_declared_500_mb_body_is_refused_before_a_byte_is_read() -> None:
    client = _Client(500 * MB)
    headers = [(b"content-length", str(500 * MB).encode())]
    sent = await _call(BodyLimits(_reads_everything, Settings()), client, headers)
    assert sent[0]["status"] == 413
    assert client.pulled == 0


@pytest.mark.anyio
async def test_a_body_under_the_limit_passes_whole() -> None:
    client = _Client(3 * MB)
    sent = await _call(BodyLimits(_reads_everything, Settings()), client, [])
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"read %d" % (3 * MB)


@pytest.mark.anyio
async def test_an_unexpected_error_is_answered_without_raising() -> None:
    """uvicorn closes the connection of an application that raises; a contained 500 keeps it."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    sent = await _call(ContainErrors(broken), _Client(0), [])
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"])["error"]["message"] == "RuntimeError: boom"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "max_depth", "deep"),
    [
        pytest.param(1, 1, False, id="scalar"),
        pytest.param({}, 1, False, id="empty-object"),
        pytest.param(_nested(64), 64, False, id="at-limit"),
        pytest.param(_nested(65), 64, True, id="one-over"),
        pytest.param({"a": [1, {"b": _nested(900)}]}, 64, True, id="deep-branch"),
        pytest.param({"a": list(range(10_000))}, 2, False, id="wide"),
    ],
)
def test_json_depth(value: Any, max_depth: int, deep: bool) -> None:
    assert too_deep(value, max_depth) is deep


def _tar(members: dict[str, bytes], *, gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _unpack(tmp_path: Path, data: bytes, **limits: Any) -> Path:
    src = tmp_path / "upload.tar"
    src.write_bytes(data)
    values = {"max_bytes": 100 * MB, "max_files": 100, "max_ratio": 100.0, **limits}
    unpack(src, tmp_path / "tree", UnpackLimits(**values))
    return tmp_path / "tree"


def test_a_tar_bomb_is_refused_before_it_is_written(tmp_path: Path) -> None:
    bomb = _tar({"zeros.bin": bytes(64 * MB)}, gz=True)  # ~64 KB that unpacks to 64 MB
    with pytest.raises(PayloadTooLarge, match="times its") as caught:
        _unpack(tmp_path, bomb)
    assert caught.value.fields["setting"] == "artifact_max_ratio"
    assert not (tmp_path / "tree" / "zeros.bin").exists()


def test_unpacked_size_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="unpacks to more than 1 MB"):
        _unpack(tmp_path, _tar({"big": bytes(2 * MB)}), max_bytes=MB)


def test_file_count_is_bounded(tmp_path: Path) -> None:
    many = {f"f{i}.py": b"" for i in range(11)}
    with pytest.raises(PayloadTooLarge, match="more than 10 files"):
        _unpack(tmp_path, _tar(many), max_files=10)


def test_an_empty_tar_is_a_400_that_names_no_server_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="empty tar") as caught:
        _unpack(tmp_path, _tar({}))
    assert str(tmp_path) not in caught.value.message


def test_a_valid_tar_unpacks(tmp_path: Path) -> None:
    tree = _unpack(tmp_path, _tar({"app.py": b"print(1)\n", "sub/w.bin": bytes(1000)}))
    assert (tree / "app.py").read_bytes() == b"print(1)\n"
    assert (tree / "sub" / "w.bin").stat().st_size == 1000
