"""Versions end to end, with a real server and the CLI: rollback, a 90/10 split over 1,000
routed jobs, pins, and a failing canary rolled back automatically with its reason shown."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

MODEL = """
import coldbrew

app = coldbrew.App("vt")
TAG = {tag!r}


@app.model(max_workers=2, idle_timeout_s=60, retries=0)
class Vt:
    def predict(self, n: int = 0) -> dict:
        if TAG == "broken":
            raise RuntimeError("canary broke")
        return {{"tag": TAG}}
"""
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


def deploy_tag(server: Server, tmp_path: Path, tag: str) -> None:
    directory = tmp_path / "vt"
    directory.mkdir(exist_ok=True)
    (directory / "app.py").write_text(MODEL.format(tag=tag))
    server.cli("deploy", str(directory))


def tag_of(http: httpx.Client, path: str = "/v2/vt/runsync", **headers: str) -> str:
    response = http.post(path, json={"input": {}}, headers=headers)
    assert response.status_code == 200, response.text
    tag: str = response.json()["output"]["tag"]
    return tag


def submit(http: httpx.Client, count: int) -> list[str]:
    """`count` jobs through RunPod's /run, not waiting for them."""
    ids = []
    for n in range(count):
        response = http.post("/v2/vt/run", json={"input": {"n": n}})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def finished(http: httpx.Client, ids: list[str], timeout_s: float = 240.0) -> list[dict]:
    """Every job once all are final (polled with the bulk lookup)."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = []
        for start in range(0, len(ids), 1000):
            body = http.post("/v1/jobs/lookup", json={"ids": ids[start : start + 1000]}).json()
            jobs.extend(body["jobs"])
        if len(jobs) == len(ids) and all(j["status"] in FINAL for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"{sum(j['status'] in FINAL for j in jobs)} final"
        time.sleep(0.5)


def test_rollback_and_pins_from_the_cli(server: Server, tmp_path: Path) -> None:
    server.start()
    for tag in ("one", "two"):
        deploy_tag(server, tmp_path, tag)
    with server.http() as http:
        assert tag_of(http) == "two"
        assert server.cli("rollback", "vt").stdout == "vt: version 2 -> 1\n"
        assert tag_of(http) == "one"
        # pins: a header or a path suffix; RunPod's plain path follows the current version
        assert tag_of(http, **{"X-Coldbrew-Version": "2"}) == "two"
        assert tag_of(http, "/v2/vt@2/runsync") == "two"
        assert tag_of(http, "/v2/vt@1/runsync") == "one"
        missing = http.post("/v2/vt@9/runsync", json={"input": {}})
        assert missing.status_code == 404
        assert "its versions are 1, 2" in missing.json()["error"]["hint"]
    table = server.cli("versions", "vt").stdout
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["VERSION", "CREATED", "(UTC)", "ARTIFACT", "ENVIRONMENT"]
    assert lines[1].split()[0] == "v2" and "rolled_back" in lines[1] and " 0%" in lines[1]
    assert lines[2].split()[0] == "v1" and "current" in lines[2] and "100%" in lines[2]
    assert "v2 rolled back" in table and "rolled back to version 1 by request" in table
    failed = server.cli("rollback", "vt", "--to", "7", check=False)
    assert failed.returncode == 1 and "no version 7" in failed.stderr


@pytest.mark.slow
def test_a_90_10_split_over_1000_jobs_lands_within_3_points(server: Server, tmp_path: Path) -> None:
    server.start()
    for tag in ("one", "two"):
        deploy_tag(server, tmp_path, tag)
    out = server.cli("traffic", "vt", "1=90", "2=10").stdout
    assert "current" in out and "canary" in out
    with server.http() as http:
        jobs = finished(http, submit(http, 1000))
    tags = Counter(j["output"]["tag"] for j in jobs if j["status"] == "COMPLETED")
    assert sum(tags.values()) == 1000
    share = tags["two"] / 1000
    assert abs(share - 0.10) <= 0.03, tags
    table = server.cli("versions", "vt").stdout
    assert " 90%" in table and " 10%" in table


@pytest.mark.slow
def test_a_failing_canary_is_rolled_back_automatically_with_its_reason(
    server: Server, tmp_path: Path
) -> None:
    server.start(COLDBREW_CANARY_CHECK_S="0.5")
    for tag in ("good", "broken"):
        deploy_tag(server, tmp_path, tag)
    server.cli(
        "traffic",
        "vt",
        "1=70",
        "2=30",
        "--max-error-rate",
        "0.05",
        "--window",
        "60s",
        "--min-jobs",
        "10",
    )
    with server.http() as http:
        deadline = time.monotonic() + 120
        while "rolled_back" not in server.cli("versions", "vt").stdout:
            finished(http, submit(http, 20))
            assert time.monotonic() < deadline, "the canary was never rolled back"
        after = finished(http, submit(http, 50))
    assert {j["output"]["tag"] for j in after} == {"good"}  # every new job on version 1
    table = server.cli("versions", "vt").stdout
    v2 = next(line for line in table.splitlines() if line.split()[0] == "v2")
    assert "rolled_back" in v2 and " 0%" in v2
    assert "v2 rolled back" in table and "error rate 1.000" in table and "exceeds 0.05" in table
    server.stop()
    assert "canary rolled back: default/vt version 2 taken to 0%" in server.output
