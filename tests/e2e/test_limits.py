"""Limits against a real `coldbrew serve`: a 500 MB body costs the gateway at most the limit,
and a read-only state directory is one line with the fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, free_port

MB = 1 << 20


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _send_chunked(port: int, key: str, total: int, chunk: int = 256 * 1024) -> bytes:
    """POST `total` bytes chunked to /v2/echo/run until the server answers and hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"POST /v2/echo/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"%x\r\n" % chunk + b"x" * chunk + b"\r\n"
        try:
            for _ in range(total // chunk):
                sock.sendall(piece)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed: what is expected
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        return answer


def test_refusing_a_500_mb_body_costs_less_than_twice_the_limit(server: Server) -> None:
    server.start(COLDBREW_RUN_BODY_MAX_MB="10")
    assert server.process is not None
    pid = server.process.pid
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before_kb = _kb(pid, "VmRSS")

    answer = _send_chunked(server.port, server.key, 500 * MB)

    grown_mb = (_kb(pid, "VmHWM") - before_kb) / 1024
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"COLDBREW_RUN_BODY_MAX_MB" in answer
    assert grown_mb < 2 * 10, f"the gateway's peak grew by {grown_mb:.1f} MB"

    # a declared Content-Length over the limit is answered before any of the body is sent
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            b"POST /v2/echo/runsync HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Authorization: Bearer %s\r\n\r\n" % (500 * MB, server.key.encode())
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    with server.http() as http:
        assert http.get("/healthz").status_code == 200


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_read_only_home_is_one_line_with_the_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = (
        f"mount --bind -o ro {home} {home} || exit 77; "
        f"exec {sys.executable} -m coldbrew serve --port {free_port()}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        env={**os.environ, "COLDBREW_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode == 77:
        pytest.skip("cannot make a read-only bind mount here")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "COLDBREW_HOME" in lines[0] and "Read-only file system" in lines[0]
