"""A real `coldbrew serve` process on a free loopback port, always stopped after the test."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    home: Path
    port: int
    process: subprocess.Popen[str] | None = None
    output: str = ""
    relative_home: bool = False  # start in home's parent with COLDBREW_HOME unset (./.coldbrew)
    python: str = sys.executable  # the interpreter (and so the environment) the server runs in

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(COLDBREW_HOME=str(self.home), COLDBREW_URL=self.url)
        if self.relative_home:
            del env["COLDBREW_HOME"]
        env.pop("COLDBREW_API_KEY", None)
        return env

    @property
    def key(self) -> str:
        return (self.home / "admin.key").read_text().strip()

    def start(self, *deploy: Path, **env: str) -> str:
        """Start the server and return what it printed up to its banner."""
        self.process = subprocess.Popen(
            [
                self.python,
                "-m",
                "coldbrew",
                "serve",
                "--port",
                str(self.port),
                *[arg for d in deploy for arg in ("--deploy", str(d))],
            ],
            env={
                **self.env,
                "COLDBREW_TICK_INTERVAL_S": "0.02",
                "COLDBREW_HARDWARE_SLOTS": '{"cpu": 4}',
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.home.parent,
        )
        assert self.process.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("stop with Ctrl-C"):
                self.output = "".join(lines)
                return self.output
        self.stop()
        raise AssertionError("server did not start:\n" + "".join(lines))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stdout:
            self.output += self.process.stdout.read()
            self.process.stdout.close()
        self.process = None
        return code

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "coldbrew", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"coldbrew {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(home=tmp_path / "home", port=free_port())
    try:
        yield srv
    finally:
        srv.stop(signal.SIGKILL if srv.process and srv.process.poll() is None else 0)


def worker_pids(home: Path) -> set[int]:
    """Live worker and template processes of this home (found by their artifact path)."""
    pids = set()
    # sandboxed processes run from their box under /tmp/coldbrew-<hash of home>-<server pid>
    box = "coldbrew-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10] + "-"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "coldbrew.runtime." in cmdline and (str(home) in cmdline or box in cmdline):
            pids.add(int(proc.name))
    return pids
