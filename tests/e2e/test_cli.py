"""The CLI and the HTTP API against a running `coldbrew serve`, as a user drives them."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, worker_pids
from tests.helpers import status_is, wait_until

TOYS = FIXTURES / "toys"


def test_deploy_run_status_logs_usage_and_delete_from_the_cli(
    server: Server, tmp_path: Path
) -> None:
    banner = server.start()
    assert "created account 'default' with admin key cb_" in banner
    assert (server.home / "admin.key").stat().st_mode & 0o777 == 0o600

    deployed = server.cli("deploy", str(TOYS)).stdout
    assert "toy: v1 (new version)" in deployed and "other: v1 (new version)" in deployed
    assert "toy: v1 (unchanged, no new version)" in server.cli("deploy", str(TOYS)).stdout

    listing = server.cli("endpoints").stdout.splitlines()
    assert listing[0].split() == [
        "NAME",
        "VERSION",
        "HARDWARE",
        "IDLE",
        "BUSY",
        "STARTING",
        "QUEUE",
    ]
    assert [line.split()[:2] for line in listing[1:]] == [
        ["counter", "v1"],
        ["other", "v1"],
        ["toy", "v1"],
    ]

    result = server.cli_json("run", "toy", "--input", '{"value": 1, "say": "hi there"}')
    assert result["status"] == "COMPLETED" and result["output"]["value"] == 1
    assert "hi there" in server.cli("logs", result["id"]).stdout

    payload = tmp_path / "input.json"
    payload.write_text(json.dumps({"value": "from a file"}))
    queued = server.cli_json("run", "toy", "--async", "--input", f"@{payload}")
    assert queued["status"] == "IN_QUEUE"
    status = wait_until(
        lambda: server.cli_json("status", queued["id"]), status_is("COMPLETED"), what="COMPLETED"
    )
    assert status["output"]["value"] == "from a file"

    failed = server.cli("run", "toy", "--input", '{"crash": "nope"}', check=False)
    assert failed.returncode == 1 and '"status": "FAILED"' in failed.stdout

    usage = server.cli("usage", "--by", "endpoint").stdout
    assert "default/toy" in usage and "TOTAL" in usage
    as_csv = server.cli("usage", "--csv").stdout.splitlines()
    assert as_csv[0].startswith("endpoint,cold_start_s,cold_start_usd")
    assert any(line.startswith("default/toy,") for line in as_csv[1:])

    advice = server.cli("advise", "toy", "--window", "24h").stdout
    assert "requests in the last 24h" in advice and "dedicated cpu" in advice
    budget = server.cli("budgets", "set", "--endpoint", "toy", "--monthly-usd", "10").stdout
    assert budget.startswith("budget set: $10/month")
    listing = server.cli("budgets").stdout
    assert "endpoint toy" in listing and "hard" not in listing
    both = server.cli("budgets", "set", "--monthly-usd", "1", check=False)
    assert both.returncode == 2 and "exactly one of --account or --endpoint" in both.stderr

    missing = server.cli("run", "nope", check=False)
    assert missing.returncode == 1
    assert "error: no endpoint 'nope'" in missing.stderr and "hint:" in missing.stderr

    key = server.cli("keys", "create", "--account", "acme").stdout.strip()
    assert key.startswith("cb_")
    other = server.env | {"COLDBREW_API_KEY": key}
    import subprocess
    import sys

    acme = subprocess.run(
        [sys.executable, "-m", "coldbrew", "endpoints"],
        env=other,
        capture_output=True,
        text=True,
        check=True,
    )
    assert acme.stdout.splitlines()[1:] == []

    assert "deleted other" in server.cli("delete", "other").stdout
    names = [line.split()[0] for line in server.cli("endpoints").stdout.splitlines()[1:]]
    assert names == ["counter", "toy"]
    assert server.stop() == 0


def test_sigterm_stops_the_server_and_every_worker(server: Server) -> None:
    server.start(TOYS)
    with server.http() as http:
        jobs = [
            http.post("/v2/toy/run", json={"input": {"sleep_s": 0.3}}).json()["id"]
            for _ in range(3)
        ]
        for job_id in jobs:
            while http.get(f"/v1/jobs/{job_id}").json()["status"] != "COMPLETED":
                time.sleep(0.05)
    assert worker_pids(server.home)
    assert server.stop(signal.SIGTERM) == 0
    assert "stopping workers" in server.output
    assert worker_pids(server.home) == set()


def test_the_default_relative_home_works_as_make_run_uses_it(server: Server) -> None:
    server.home = server.home.parent / ".coldbrew"
    server.relative_home = True
    banner = server.start(TOYS.resolve())
    assert "deployed toy v1" in banner and "NOT deployed" not in banner
    assert f"admin key: {server.home}" in banner
    with server.http() as http:
        result = http.post("/v2/toy/runsync", json={"input": {"value": 1}}).json()
    assert result["status"] == "COMPLETED"
