"""A hostile tenant against a real `coldbrew serve`: every attack fails, the neighbour is unharmed.

Account `alice` deploys an ordinary model (`fixtures/victim`), remembers a secret in its worker's
memory and uploads a file. Account `mallory` (not an admin) then deploys `fixtures/hostile`,
whose code attacks the platform at deploy time (in the inspection process), when its template
imports it, in `setup()` and in `predict()`, and records each attempt's outcome; then the same
attacks run from a RunPod handler process (`fixtures/hostile_runpod`). One scenario runs for the
whole module; each test asserts one kind of protection on its records. Root-only checks (cgroup
limits) skip without root unless CI is set.

The attacker is told everything about the layout in advance (`target.json`: the data directory,
the gateway's pid and port, alice's worker pids), so a refusal is the sandbox's doing, not luck.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.timeout(900)

HOSTILE = FIXTURES / "hostile"
HOSTILE_RUNPOD = FIXTURES / "hostile_runpod"
VICTIM = FIXTURES / "victim"
SERVICES = {
    "postgres": 5432,
    "redis": 6379,
    "mariadb": 3306,
    "rabbitmq": 5672,
    "nats": 4222,
    "mqtt": 1883,
}
UNIX_SOCKETS = {"postgres": "/run/postgresql/.s.PGSQL.5432", "mariadb": "/run/mysqld/mysqld.sock"}
OPERATOR_SECRET_NAME = "OPERATOR_DB_PASSWORD"
VICTIM_SECRET_NAME = "VICTIM_TOKEN"
MEMORY_PREFIX = "cbvictimsecret-"
HOG_MEMORY_MB = 256
PIDS_MAX = 128  # the server's per-worker process limit here, so 500 forks must hit it
FORK_ATTEMPTS = 500
PHASES = ("deploy", "import", "setup", "predict", "handler-start", "handler")
#: tenant processes may reach the gateway's port inside their namespace: a forwarder that asks
#: the gateway for each connection (RunPod's protocol, signed file links); what they can do
#: there without a key is `api_own_credentials` and `use_admin_key`
FORWARDED = ("connect_gateway", "connect_gateway_v6")

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT and not os.environ.get("CI"),
    reason="the pids limit and killing a worker's whole process tree need cgroups, which need "
    "the server to run as root (CI runs as root)",
)


@dataclass
class Scenario:
    """Everything the attack run left behind, for the tests to judge."""

    server: Server
    keys: dict[str, str]
    secrets: dict[str, str]  # what must never reach the tenant: name -> value
    records: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # phase -> record
    hog: dict[str, Any] = field(default_factory=dict)
    victim_before: dict[str, Any] = field(default_factory=dict)
    victim_after: dict[str, Any] = field(default_factory=dict)
    markers: list[str] = field(default_factory=list)
    orphans_after_deploy: dict[int, str] = field(default_factory=dict)
    orphans_while_running: dict[int, str] = field(default_factory=dict)
    orphans_after_delete: dict[int, str] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)  # what the tenant tries to reach
    reachable_services: list[str] = field(default_factory=list)  # what this test process can
    db_tables: list[str] = field(default_factory=list)
    admin_still_works: bool = False
    health: dict[str, Any] = field(default_factory=dict)
    runpod_job: dict[str, Any] = field(default_factory=dict)
    banner: str = ""


def succeeded(record: dict[str, dict[str, str]], *prefixes: str) -> dict[str, str]:
    """The attacks in `record` (whose names start with one of `prefixes`) that worked."""
    return {
        name: outcome["detail"]
        for name, outcome in record.items()
        if outcome.get("outcome") == "succeeded" and (not prefixes or name.startswith(prefixes))
    }


def orphans(tag: str) -> dict[int, str]:
    """Processes on this machine whose command line carries the hostile tenant's tag."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if tag in cmdline and "-c" in cmdline:
                found[int(proc.name)] = cmdline.strip().rsplit(" ", 1)[-1]
    return found


def platform_pids(account: str) -> list[int]:
    """Template and worker processes running `account`'s code: by artifact path, or (with the
    sandbox as root) by the account's own uid."""
    uid = -1
    with contextlib.suppress(ImportError):
        from coldbrew.runtime.sandbox.policy import account_uid

        uid = account_uid(account) if IS_ROOT else -1
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "coldbrew.runtime." in cmdline and (
                f"artifacts/{account}/" in cmdline or proc.stat().st_uid == uid
            ):
                pids.append(int(proc.name))
    return sorted(pids)


def as_account(server: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def cli_as(server: Server, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldbrew", *args],
        env=server.env | {"COLDBREW_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_job(http: httpx.Client, job_id: str, timeout_s: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("IN_QUEUE", "IN_PROGRESS"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spec_has(field_name: str) -> bool:
    from coldbrew.spec import DeploymentSpec

    return field_name in DeploymentSpec.model_fields


def _victim_side(s: Scenario, tmp: Path) -> None:
    """alice: an endpoint secret (when `coldbrew secrets` exists), a deploy, a file, a secret
    in her worker's memory."""
    alice = s.keys["alice"]
    token = "victim-token-" + secrets.token_hex(12)
    has_secrets = cli_as(s.server, alice, "secrets", "--help").returncode == 0
    if has_secrets:  # before the deploy, so the template and every worker start with it
        done = cli_as(s.server, alice, "secrets", "set", "victim", f"{VICTIM_SECRET_NAME}={token}")
        assert done.returncode == 0, done.stdout + done.stderr
        s.secrets[VICTIM_SECRET_NAME] = token
    deployed = cli_as(s.server, alice, "deploy", str(VICTIM))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with as_account(s.server, alice) as http:
        canary = "victim-file-canary-" + secrets.token_hex(12)
        up = http.post("/v1/files", files={"content": ("note.txt", canary.encode(), "text/plain")})
        assert up.status_code == 201, up.text
        s.secrets["alice's uploaded file"] = canary
        remembered = MEMORY_PREFIX + secrets.token_hex(16)
        s.secrets["alice's worker memory"] = remembered
        s.victim_before = http.post(
            "/v2/victim/runsync", json={"input": {"value": 1, "remember": remembered}}
        ).json()
        assert s.victim_before["status"] == "COMPLETED", s.victim_before
        assert s.victim_before["output"]["token_set"] is has_secrets
        s.secrets["alice's webhook secret"] = http.get("/v1/account").json()["webhookSecret"]


def _hostile_side(s: Scenario, tmp: Path, tag: str) -> None:
    """mallory: deploy the hostile model with everything it could want to know, run it."""
    home, mallory = s.server.home, s.keys["mallory"]
    assert s.server.process is not None
    hostile = tmp / "hostile"
    shutil.copytree(HOSTILE, hostile)
    victim_pids = sorted({*platform_pids("alice"), s.victim_before["output"]["pid"]})
    target = json.dumps(
        {
            "home": str(home),
            "gateway_pid": s.server.process.pid,
            "gateway_port": s.server.port,
            "victim_account": "alice",
            "own_account": "mallory",
            "victim_pids": victim_pids,
            "secret_names": [OPERATOR_SECRET_NAME, VICTIM_SECRET_NAME],
            "memory_prefix": MEMORY_PREFIX,
            "services": s.services,
            "unix_sockets": UNIX_SOCKETS,
            "orphan_tag": tag,
            "fork_attempts": FORK_ATTEMPTS,
            "hog_spec": {"memory_mb": HOG_MEMORY_MB} if spec_has("memory_mb") else {},
        }
    )
    (hostile / "target.json").write_text(target)
    deployed = cli_as(s.server, mallory, "deploy", str(hostile))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # the inspection process has exited; its leftovers go with it, though not at once on a
    # loaded machine: wait for them (a bound only; an escaped sleeper lives 300 s)
    deadline = time.monotonic() + 15
    while (early := orphans(f"{tag}-deploy")) and time.monotonic() < deadline:
        time.sleep(0.2)
    s.orphans_after_deploy = early  # tagged "-deploy": the template's own may run by now
    with as_account(s.server, mallory) as http:
        schema = http.get("/v1/endpoints/hostile").json()["inputSchema"]
        s.records["deploy"] = schema.get("x-deploy-record", {})
        job = wait_job(http, http.post("/v2/hostile/run", json={"input": {}}).json()["id"])
        assert job["status"] == "COMPLETED", job
        out = job["output"]
        assert out["import_phase"] == "import", out["import_phase"]
        for phase in ("import", "setup", "predict"):
            s.records[phase] = out[phase]
        s.orphans_while_running = orphans(tag)
        s.hog = wait_job(http, http.post("/v2/hog/run", json={"input": {}}).json()["id"])
        _runpod_handler(s, tmp, hostile, http)
        for name in ("hostile", "hog", "hostile-runpod"):
            assert http.delete(f"/v1/endpoints/{name}").status_code == 200
    deadline = time.monotonic() + 15
    while (left := orphans(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    s.orphans_after_delete = left


def _runpod_handler(s: Scenario, tmp: Path, hostile: Path, http: httpx.Client) -> None:
    """The same attacks from a RunPod handler process (its own process type, with a forwarder
    to the gateway inside its network namespace)."""
    handler = tmp / "hostile_runpod"
    shutil.copytree(HOSTILE_RUNPOD, handler)
    for name in ("probes.py", "uring.py", "target.json"):
        shutil.copy(hostile / name, handler / name)
    deployed = cli_as(s.server, s.keys["mallory"], "deploy", str(handler))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    s.runpod_job = wait_job(
        http, http.post("/v2/hostile-runpod/run", json={"input": {}}).json()["id"]
    )
    if s.runpod_job["status"] == "COMPLETED":  # else `test_a_runpod_handler_ran` says why
        s.records["handler-start"] = s.runpod_job["output"]["start"]
        s.records["handler"] = s.runpod_job["output"]["handler"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("attacks")
    server = Server(home=tmp / "home", port=free_port())
    operator_secret = "operator-secret-" + secrets.token_hex(12)
    tag = "cb-hostile-orphan-" + secrets.token_hex(6)
    listener = socket.create_server(("127.0.0.1", 0))  # one service that surely listens here
    try:
        banner = server.start(
            **{OPERATOR_SECRET_NAME: operator_secret, "COLDBREW_SANDBOX_PIDS_MAX": str(PIDS_MAX)}
        )
        with server.http() as admin:
            keys = {
                name: admin.post("/v1/keys", json={"account": name}).json()["key"]
                for name in ("alice", "mallory")
            }
        s = Scenario(server, keys, {OPERATOR_SECRET_NAME: operator_secret}, banner=banner)
        s.secrets["admin key"] = server.key
        s.secrets["files signing key"] = (server.home / "files" / ".signing-key").read_text()
        if (server.home / "secrets.key").exists():  # the key that seals secrets at rest
            raw = (server.home / "secrets.key").read_bytes()
            s.secrets["secrets key"] = raw.decode(errors="replace").strip()[:32]
        s.services = {**SERVICES, "test_listener": listener.getsockname()[1]}
        s.reachable_services = [n for n, port in s.services.items() if reachable(port)]
        _victim_side(s, tmp)
        _hostile_side(s, tmp, tag)
        with as_account(server, keys["alice"]) as http:
            s.victim_after = http.post("/v2/victim/runsync", json={"input": {"value": 2}}).json()
        with server.http() as admin:
            s.admin_still_works = admin.get("/v1/endpoints").status_code == 200
        s.health = httpx.get(f"{server.url}/healthz", timeout=10).json()
        s.markers = sorted(p.name for p in server.home.glob("pwned-*"))
        if report := os.environ.get("COLDBREW_ATTACKS_REPORT"):  # every outcome, for a person
            Path(report).write_text(json.dumps({"health": s.health, **s.records}, indent=1))
        with contextlib.closing(sqlite3.connect(server.home / "coldbrew.db")) as db:
            s.db_tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master")]
        yield s
    finally:
        for pid in orphans(tag):  # what the sandbox failed to stop: ours to clean up
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        server.stop(signal.SIGKILL if server.process and server.process.poll() is None else 0)
        listener.close()


def _attacks_in(s: Scenario, *prefixes: str) -> dict[str, dict[str, str]]:
    found = {phase: succeeded(s.records.get(phase, {}), *prefixes) for phase in PHASES}
    for phase in PHASES:
        for name in FORWARDED:
            found[phase].pop(name, None)
    return found


def _assert_none(found: dict[str, dict[str, str]]) -> None:
    worked = {phase: attacks for phase, attacks in found.items() if attacks}
    assert not worked, "attacks that worked:\n" + json.dumps(worked, indent=1)


def test_a_runpod_handler_ran_its_attacks(scenario: Scenario) -> None:
    job = scenario.runpod_job
    assert job.get("status") == "COMPLETED", json.dumps(job.get("error"))[:2000]


def test_every_phase_ran_its_attacks(scenario: Scenario) -> None:
    for phase in PHASES[:4]:
        record = scenario.records.get(phase, {})
        assert "read_admin_key" in record and "fork_bomb" in record, (phase, record)


def test_the_platform_files_are_out_of_reach(scenario: Scenario) -> None:
    _assert_none(_attacks_in(scenario, "list_home", "read_", "write_"))
    assert scenario.markers == []
    assert not [t for t in scenario.db_tables if t.startswith("pwned")]


def test_other_processes_are_out_of_reach(scenario: Scenario) -> None:
    _assert_none(_attacks_in(scenario, "environ_", "mem_", "own_environ", "signal_", "proc_"))


def test_no_secret_reaches_the_tenant(scenario: Scenario) -> None:
    text = json.dumps(scenario.records)
    leaked = [
        name
        for name, value in scenario.secrets.items()
        if json.dumps(value.strip())[1:-1] in text  # as the records' JSON spells it
    ]
    assert leaked == [], f"the hostile tenant's records hold: {leaked}"
    assert "victim-code-canary" not in text, "the hostile tenant read alice's model code"


def test_the_api_cannot_be_used_with_stolen_keys(scenario: Scenario) -> None:
    _assert_none(_attacks_in(scenario, "use_admin_key", "api_own_credentials"))


def test_no_network_but_its_own_channel(scenario: Scenario) -> None:
    assert "test_listener" in scenario.reachable_services  # so a refusal proves something
    _assert_none(_attacks_in(scenario, "connect_", "unix_", "uring_unix_"))


@needs_root
def test_a_fork_bomb_hits_the_process_limit(scenario: Scenario) -> None:
    _assert_none(_attacks_in(scenario, "fork_bomb", "cgroup_escape"))
    for phase in PHASES:
        if phase not in scenario.records:
            continue  # a handler that did not start: test_a_runpod_handler_ran_its_attacks
        detail = scenario.records[phase]["fork_bomb"]["detail"]
        assert detail.startswith("forked "), detail  # it forked some, then the limit said no


def test_the_memory_limit_gives_the_job_a_clear_error(scenario: Scenario) -> None:
    hog = scenario.hog
    assert hog["status"] == "FAILED", hog
    error = json.dumps(hog.get("error"))
    assert "memory limit" in error and f"{HOG_MEMORY_MB} MB" in error, error


@needs_root
def test_nothing_the_tenant_started_outlives_its_endpoint(scenario: Scenario) -> None:
    left = {
        "after the deploy-time inspection": scenario.orphans_after_deploy,
        "after the endpoint was deleted": scenario.orphans_after_delete,
    }
    assert left == {k: {} for k in left}, left


def test_the_neighbour_and_the_platform_are_unaffected(scenario: Scenario) -> None:
    after = scenario.victim_after
    assert after["status"] == "COMPLETED", after
    assert after["output"]["value"] == 2
    assert after["output"]["remembered"] == [scenario.secrets["alice's worker memory"]]
    assert scenario.admin_still_works
