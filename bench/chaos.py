"""Chaos suite: inject one fault at a time into a running `coldbrew serve` and count what
happened to the jobs it had accepted (issue 11).

Faults: kill -9 of the gateway under load (then restarted), kill -9 of a worker and of a
template, SIGSTOP/SIGCONT of a worker, a full disk (a small tmpfs as COLDBREW_HOME), an
exclusive lock held by another process,
and each poison input (deep nesting, a huge input, a log frame whose line is a dict). A read-only
database cannot be made while the server holds it open for writing (a remount is refused), so
that fault is covered by `tests/unit/test_store_faults.py` (`PRAGMA query_only`), not here.

For each fault it prints one row: jobs accepted (answered 200 with an id), completed, lost
(accepted but missing or never final), run twice (attempts > 1), and whether the node served
new work after the fault cleared without a restart. The disk-full fault needs root (to mount);
without it they are skipped and say so.

    make chaos                       # the full suite
    python bench/chaos.py --quick    # fewer jobs per fault (what the CI test runs)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "chaos"
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    """One `coldbrew serve` process on a loopback port, its output in `home/serve.log`."""

    home: Path
    logs: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deploy: bool) -> None:
        env = dict(os.environ, COLDBREW_HOME=str(self.home), COLDBREW_TICK_INTERVAL_S="0.05")
        env["COLDBREW_HARDWARE_SLOTS"] = '{"cpu": 2}'
        args = [sys.executable, "-m", "coldbrew", "serve", "--port", str(self.port)]
        args += ["--deploy", str(MODEL)] if deploy else []
        log = open(self.logs / "serve.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(self.url + "/healthz", timeout=1).status_code == 200
                    and (self.home / "admin.key").exists()
                ) and (not deploy or self.ready_endpoint()):
                    return
            time.sleep(0.2)
        raise RuntimeError("the server did not start; see " + log.name)

    def ready_endpoint(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.http().get("/v2/chaos/health").status_code == 200
        return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
        self.process = None

    def http(self) -> httpx.Client:
        key = (self.home / "admin.key").read_text().strip()
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


@dataclass
class Tally:
    """What the clients saw: ids of accepted jobs, and refusals by status code."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)

    def submit(self, http: httpx.Client, payload: dict[str, Any], sync: bool = False) -> Any:
        verb = "runsync" if sync else "run"
        try:
            response = http.post(f"/v2/chaos/{verb}", json={"input": payload})
        except httpx.HTTPError:
            self.refused[0] = self.refused.get(0, 0) + 1  # connection dropped: not accepted
            return None
        if response.status_code == 200:
            self.accepted.append(response.json()["id"])
            return response.json()
        self.refused[response.status_code] = self.refused.get(response.status_code, 0) + 1
        return None


def settle(http: httpx.Client, ids: list[str], timeout_s: float) -> dict[str, Any]:
    """Every accepted job once final (or as last seen when the time runs out)."""
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, Any] = {}
    while True:
        pending = [i for i in ids if jobs.get(i, {}).get("status") not in FINAL]
        for start in range(0, len(pending), 500):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = http.post("/v1/jobs/lookup", json={"ids": pending[start : start + 500]})
                if body.status_code == 200:
                    jobs.update({j["id"]: j for j in body.json()["jobs"]})
        if all(jobs.get(i, {}).get("status") in FINAL for i in ids):
            return jobs
        if time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def recovered(http: httpx.Client, timeout_s: float = 60) -> bool:
    """Whether the node runs a new job end to end (retrying while it refuses work)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ready = http.get("/readyz").status_code == 200
            if ready:
                answer = http.post("/v2/chaos/runsync", json={"input": {"value": "probe"}})
                if answer.status_code == 200 and answer.json().get("status") == "COMPLETED":
                    return True
        time.sleep(0.2)
    return False


def worker_pids(http: httpx.Client) -> tuple[int, int]:
    """(worker pid, its parent: the template when forked) from a job's output."""
    for _ in range(30):
        answer = http.post("/v2/chaos/runsync", json={"input": {"value": "pid"}}).json()
        if answer.get("status") == "COMPLETED":
            return int(answer["output"]["pid"]), int(answer["output"]["ppid"])
        time.sleep(1)
    raise RuntimeError(f"no worker answered: {answer}")


def load(
    http: httpx.Client, tally: Tally, jobs: int, sleep_s: float, gap_s: float = 0.0
) -> threading.Thread:
    """Submit `jobs` jobs from a thread, as a steady client would (`gap_s` apart)."""

    def run() -> None:
        for i in range(jobs):
            tally.submit(http, {"value": i, "sleep_s": sleep_s})
            time.sleep(gap_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


Row = dict[str, Any]


def row(name: str, tally: Tally, jobs: dict[str, Any], ok: bool | str, note: str = "") -> Row:
    done = [jobs.get(i, {}) for i in tally.accepted]
    return {
        "fault": name,
        "accepted": len(tally.accepted),
        "completed": sum(1 for j in done if j.get("status") == "COMPLETED"),
        "failed": sum(1 for j in done if j.get("status") in FINAL - {"COMPLETED"}),
        "lost": sum(1 for j in done if j.get("status") not in FINAL),
        "run twice": sum(1 for j in done if j.get("attempts", 0) > 1),
        "refused": sum(tally.refused.values()),
        "recovered without restart": ok if isinstance(ok, str) else ("yes" if ok else "NO"),
        "note": note,
    }


# the faults
def gateway_kill(node: Node, n: int) -> Row:
    tally = Tally()
    with node.http() as http:
        thread = load(http, tally, n, 0.02)
        while len(tally.accepted) < n // 2 and thread.is_alive():
            time.sleep(0.01)
        node.kill()
        thread.join()
    node.start(deploy=False)
    with node.http() as http:
        jobs = settle(http, tally.accepted, 120)
    return row("kill -9 gateway under load", tally, jobs, "restart (is the fault)")


def worker_signal(node: Node, n: int, stop: bool) -> Row:
    tally = Tally()
    with node.http() as http:
        pid, _ = worker_pids(http)
        thread = load(http, tally, n, 0.05)
        time.sleep(0.3)
        if stop:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(3)
            os.kill(pid, signal.SIGCONT)
        else:
            os.kill(pid, signal.SIGKILL)
        thread.join()
        jobs = settle(http, tally.accepted, 120)
        ok = recovered(http)
    name = "SIGSTOP 3 s / SIGCONT of a worker" if stop else "kill -9 of a worker"
    return row(name, tally, jobs, ok)


def template_kill(node: Node, n: int) -> Row:
    tally = Tally()
    with node.http() as http:
        pid, template = _forked_worker(http)
        os.kill(template, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)  # the next job needs a cold start: a fork, or a spawn
        thread = load(http, tally, n, 0.02)
        thread.join()
        jobs = settle(http, tally.accepted, 120)
        ok = recovered(http)
        forked = [
            j.get("coldStartDetail", {}).get("forked") for j in jobs.values() if j.get("coldStart")
        ]
        again = _cold_start_after_idle(http)
    note = (
        f"cold starts during the load: forked={forked.count(True)} spawned={forked.count(False)}; "
        f"next cold start from zero: {again} (a fork means the template was recreated)"
    )
    return row("kill -9 of a template", tally, jobs, ok and again == "forked", note)


def _forked_worker(http: httpx.Client) -> tuple[int, int]:
    """(worker pid, template pid) of a forked worker. Right after a deploy the template may still
    be loading and the first worker is spawned (its parent is the gateway, never to be killed
    here): wait for the endpoint to go idle and cold-start again until a fork answers."""
    for _ in range(10):
        pid, parent = worker_pids(http)
        with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
            if b"coldbrew.runtime.template" in cmdline.read():
                return pid, parent
        time.sleep(4)
    raise RuntimeError("no worker was forked from a template")


def _cold_start_after_idle(http: httpx.Client) -> str:
    """Let the endpoint go back to zero (its keep-warm window is 2 s), then cold-start it once:
    'forked' when a template forked the worker, 'spawned' when a fresh process was started."""
    for _ in range(10):
        time.sleep(4)
        answer = http.post("/v2/chaos/runsync", json={"input": {"value": "idle"}}).json()
        if answer.get("coldStart"):
            return "forked" if answer.get("coldStartDetail", {}).get("forked") else "spawned"
    return "no cold start seen"


def db_lock(node: Node, n: int) -> Row:
    tally = Tally()
    with node.http() as http, node.http() as probe:
        thread = load(http, tally, n, 0.02, gap_s=12 / n)  # before, during and after the lock
        time.sleep(1)
        locker = sqlite3.connect(node.home / "coldbrew.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        time.sleep(0.5)
        started = time.monotonic()
        healthz = probe.get("/healthz")
        healthz_ms = (time.monotonic() - started) * 1000
        time.sleep(6)  # past the busy timeout: the fault is known
        ready = probe.get("/readyz").status_code
        time.sleep(3.5)
        locker.execute("ROLLBACK")
        locker.close()
        thread.join()
        jobs = settle(http, tally.accepted, 120)
        ok = recovered(http)
    codes = ", ".join(f"{k} x {c}" for c, k in sorted(tally.refused.items()))
    note = (
        f"/healthz {healthz.status_code} in {healthz_ms:.0f} ms and /readyz {ready} during the "
        f"lock; refused {codes or 'none'}"
    )
    return row("external exclusive lock, 10 s", tally, jobs, ok, note)


def disk_full(node: Node, n: int, mount_dir: Path) -> Row:
    tally = Tally()
    filler = mount_dir / "filler"
    with node.http() as http:
        before = [tally.submit(http, {"value": i, "sleep_s": 0.5}) for i in range(n // 2)]
        del before
        # an empty WAL first, so the next writes need new blocks (otherwise they reuse the WAL)
        with contextlib.closing(sqlite3.connect(node.home / "coldbrew.db")) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=100000"],
            capture_output=True,
            check=False,
        )
        for i in range(n // 2):
            tally.submit(http, {"value": i, "sleep_s": 0.01})
        ready = http.get("/readyz")
        time.sleep(2)
        filler.unlink()
        jobs = settle(http, tally.accepted, 120)
        ok = recovered(http)
    codes = ", ".join(f"{k} x {c}" for c, k in sorted(tally.refused.items()))
    note = (
        f"refused {codes or 'none'}; /readyz {ready.status_code} {ready.json().get('reason', '')}"
    )
    return row("disk full (tmpfs)", tally, jobs, ok, note[:160])


def poison(node: Node, n: int) -> list[Row]:
    rows = []
    cases: list[tuple[str, Callable[[], dict[str, Any]], bool]] = [
        ("poison: input nested 300 deep (warm runsync)", lambda: {"value": nest(300)}, True),
        ("poison: input nested 300 deep (run)", lambda: {"value": nest(300)}, False),
        ("poison: 20 MB input (run)", lambda: {"value": "x" * 20_000_000}, False),
        ("poison: log frame whose line is a dict", lambda: {"dict_log": True}, True),
    ]
    for name, make, sync in cases:
        tally = Tally()
        with node.http() as http:
            worker_pids(http)  # a warm worker, so runsync takes the sync lane
            bad = Tally()
            bad.submit(http, make(), sync=sync)
            for i in range(n):
                tally.submit(http, {"value": i})
            tally.accepted += bad.accepted
            tally.refused.update(bad.refused)
            jobs = settle(http, tally.accepted, 60)
            ok = recovered(http)
            stats = http.get("/v1/stats").status_code
        bad_state = jobs.get(bad.accepted[0], {}).get("status") if bad.accepted else None
        note = f"the poison: {bad_state or f'refused {bad.refused}'}; /v1/stats {stats}"
        rows.append(row(name, tally, jobs, ok, note))
    return rows


def nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@contextlib.contextmanager
def tmpfs(size_mb: int) -> Iterator[Path | None]:
    """A small tmpfs of our own (root only), unmounted afterwards; None without root."""
    with tempfile.TemporaryDirectory(prefix="coldbrew-chaos-") as tmp:
        mount_dir = Path(tmp) / "mnt"
        mount_dir.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount_dir)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            yield None
            return
        try:
            yield mount_dir
        finally:
            subprocess.run(["umount", "-l", str(mount_dir)], check=False)


def table(rows: list[Row]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs per fault (CI)")
    parser.add_argument(
        "--only", help="comma-separated: gateway,worker,template,stop,disk,lock,poison"
    )
    args = parser.parse_args(argv)
    n = 10 if args.quick else 100
    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    rows: list[Row] = []
    with tmpfs(512) as mount_dir:
        base = mount_dir or Path(tempfile.mkdtemp(prefix="coldbrew-chaos-"))
        logs = Path(tempfile.mkdtemp(prefix="coldbrew-chaos-logs-"))
        print(f"server output: {logs / 'serve.log'}", flush=True)
        node = Node(home=base / "home", logs=logs)
        node.home.mkdir(parents=True, exist_ok=True)
        node.start(deploy=True)
        try:
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("worker", lambda: worker_signal(node, n, stop=False)),
                ("stop", lambda: worker_signal(node, n, stop=True)),
                ("template", lambda: template_kill(node, n)),
                ("lock", lambda: db_lock(node, n)),
                ("poison", lambda: poison(node, n)),
                ("gateway", lambda: gateway_kill(node, n)),
            ]
            if mount_dir is not None:
                steps.insert(4, ("disk", lambda: disk_full(node, n, mount_dir)))
            else:
                print("disk full: skipped (mounting a tmpfs needs root)")
            for name, step in steps:
                if not wanted(name):
                    continue
                result = step()
                for one in result if isinstance(result, list) else [result]:
                    rows.append(one)
                    print(f"{one['fault']}: {one}", flush=True)
        finally:
            node.kill(signal.SIGTERM)
    print()
    print(table(rows))
    lost = sum(r["lost"] for r in rows)
    stuck = [r["fault"] for r in rows if r["recovered without restart"] == "NO"]
    print(f"\nlost: {lost}; not recovered: {stuck or 'none'}")
    return 1 if lost or stuck else 0


if __name__ == "__main__":
    sys.exit(main())
