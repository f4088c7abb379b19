"""Pipelines against a real server: the four-stage example (one id, per-stage jobs and costs that
sum to the run's), the official RunPod client on a pipeline, `kill -9` mid-run then a restart
that resumes without re-running finished stages, `/retry` from a failed stage, the CLI."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, FIXTURES
from tests.e2e.conftest import Server
from tests.helpers import wait_until

runpod = pytest.importorskip("runpod")
pytestmark = pytest.mark.slow

SLOTS = '{"cpu": 4, "L4": 1}'
#: other → toy (slow, or failing once) → counter (streams `n` chunks)
CHAIN: dict[str, Any] = {
    "name": "chain",
    "steps": [
        {"name": "first", "endpoint": "other", "input": {"value": "$input.n"}},
        {
            "name": "middle",
            "endpoint": "toy",
            "input": {
                "value": "$.value",
                "sleep_s": "$input.sleep_s",
                "crash": "$input.crash",
                "once_marker": "$input.marker",
            },
        },
        {"name": "last", "endpoint": "counter", "input": {"n": "$.value", "pause_s": 0.2}},
    ],
}


def _chain_input(n: int = 3, sleep_s: float = 0.0, marker: str | None = None) -> dict[str, Any]:
    return {"n": n, "sleep_s": sleep_s, "crash": "first try fails" if marker else None,
            "marker": marker}  # fmt: skip


def _jobs_of(server: Server, endpoint: str) -> list[dict[str, Any]]:
    with server.http() as http:
        jobs: list[dict[str, Any]] = http.get(f"/v1/endpoints/{endpoint}/jobs").json()["jobs"]
    return jobs


def _status(server: Server, pipeline: str, run_id: str) -> dict[str, Any]:
    with server.http() as http:
        body: dict[str, Any] = http.get(f"/v2/{pipeline}/status/{run_id}").json()
    return body


def _define(server: Server, tmp_path: Path, definition: dict[str, Any]) -> None:
    file = tmp_path / f"{definition['name']}.json"
    file.write_text(json.dumps(definition))
    made = server.cli("pipelines", "create", str(file)).stdout
    assert made.startswith(f"{definition['name']}: first(other) → middle(toy)"), made


def test_the_four_stage_example_has_one_id_and_costs_the_sum_of_its_stages(
    server: Server,
) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    server.start(EXAMPLES / "pipeline", COLDBREW_HARDWARE_SLOTS=SLOTS)
    pixels = [int(v) for v in digits.data[7]]
    with server.http() as http:
        body = http.post(
            "/v2/moods/runsync",
            params={"wait": 120_000},
            json={"input": {"pixels": pixels, "user": "ana"}},
        ).json()
        assert body["status"] == "COMPLETED", body
        assert body["output"]["to"] == "ana"
        assert body["output"]["text"].startswith("Hi ana, your drawing looks lucky.")
        stages = body["stages"]
        assert [(s["stage"], s["endpoint"]) for s in stages] == [
            ("see", "glyph"),
            ("feel", "emotion"),
            ("suggest", "recommend"),
            ("tell", "notify"),
        ]
        assert body["costUsd"] > 0
        assert body["costUsd"] == pytest.approx(sum(s["costUsd"] for s in stages), abs=1e-12)
        for stage in stages:  # each stage is a real job on its own endpoint
            job = http.get(f"/v2/{stage['endpoint']}/status/{stage['id']}").json()
            assert job["status"] == "COMPLETED"
            assert job["costUsd"] == stage["costUsd"]
            assert stage["executionTime"] == job["executionTime"]
        hardware = {e["name"]: e["hardware"] for e in http.get("/v1/endpoints").json()["endpoints"]}
        assert hardware == {"glyph": "cpu", "emotion": "cpu", "recommend": "L4", "notify": "cpu"}
        assert http.get(f"/v2/moods/status/{body['id']}").json()["costUsd"] == body["costUsd"]

    runpod.api_key = server.key
    runpod.endpoint_url_base = f"{server.url}/v2"
    try:
        moods = runpod.Endpoint("moods")
        answer = moods.run_sync({"pixels": [int(v) for v in digits.data[3]], "user": "bo"}, 60)
        assert answer["text"].startswith("Hi bo, your drawing looks curious.")
        job = moods.run({"pixels": pixels, "user": "cy"})
        assert job.output(timeout=60)["to"] == "cy"
        assert job.status() == "COMPLETED"
        health = moods.health()  # the pipeline's four endpoints added up: 3 runs, 12 jobs
        assert health["jobs"]["completed"] == 12
        assert set(health["workers"]) >= {"idle", "running"}
    finally:
        runpod.api_key = None

    listed = server.cli("pipelines", "list").stdout
    assert "see(glyph) → feel(emotion) → suggest(recommend) → tell(notify)" in listed
    table = server.cli("pipelines", "status", "moods", body["id"]).stdout
    assert table.splitlines()[0].startswith(f"{body['id']}  COMPLETED  $0.")
    assert [line.split()[:2] for line in table.splitlines()[2:]] == [
        ["see", "glyph"],
        ["feel", "emotion"],
        ["suggest", "recommend"],
        ["tell", "notify"],
    ]


def test_kill_9_mid_pipeline_then_restart_resumes_without_rerunning_finished_stages(
    server: Server, tmp_path: Path
) -> None:
    server.start(FIXTURES / "toys")
    _define(server, tmp_path, CHAIN)
    with server.http() as http:
        run_id = http.post("/v2/chain/run", json={"input": _chain_input(sleep_s=4)}).json()["id"]
    before = wait_until(
        lambda: _status(server, "chain", run_id),
        lambda s: [st["status"] for st in s["stages"]] == ["COMPLETED", "IN_PROGRESS"],
        what="the slow middle stage running",
        timeout_s=60,
    )
    server.stop(signal.SIGKILL)

    server.start()  # the same home: the run and its stages are in the store
    after = wait_until(
        lambda: _status(server, "chain", run_id),
        lambda s: s["status"] in ("COMPLETED", "FAILED"),
        what="the resumed run ending",
        timeout_s=90,
    )
    assert after["status"] == "COMPLETED", after
    assert after["output"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert after["stages"][0]["id"] == before["stages"][0]["id"]
    assert after["stages"][1]["id"] == before["stages"][1]["id"]  # the same middle job
    assert len(_jobs_of(server, "other")) == 1  # the finished first stage ran once
    assert len(_jobs_of(server, "toy")) == 1
    assert after["costUsd"] == pytest.approx(sum(s["costUsd"] for s in after["stages"]))


def test_retry_resumes_from_the_failed_stage_and_the_client_streams_the_last(
    server: Server, tmp_path: Path
) -> None:
    # the toy marks its first try in a file of the test's: the sandbox would refuse that write
    server.start(FIXTURES / "toys", COLDBREW_SANDBOX="off")
    _define(server, tmp_path, CHAIN)
    runpod.api_key = server.key
    runpod.endpoint_url_base = f"{server.url}/v2"
    try:
        chain = runpod.Endpoint("chain")
        marker = tmp_path / "fail-once"
        job = chain.run(_chain_input(marker=str(marker)))
        assert job.output(timeout=60) is None
        assert job.status() == "FAILED"
        failed = _status(server, "chain", job.job_id)
        assert failed["errorDetail"]["stage"] == "middle"
        assert failed["error"].startswith("stage 'middle' (endpoint 'toy', job ")
        assert "first try fails" in failed["error"]
        assert [s["status"] for s in failed["stages"]] == ["COMPLETED", "FAILED"]

        with server.http() as http:
            retried = http.post(f"/v2/chain/retry/{job.job_id}").json()
            assert retried == {"id": job.job_id, "status": "IN_PROGRESS"}
        assert list(job.stream()) == [{"i": 0}, {"i": 1}, {"i": 2}]
        done = _status(server, "chain", job.job_id)
        assert done["status"] == "COMPLETED"
        assert done["attempt"] == 2
        assert [s["attempt"] for s in done["stages"]] == [1, 2, 2]
        assert done["stages"][0]["id"] == failed["stages"][0]["id"]
        assert len(_jobs_of(server, "other")) == 1  # not re-run
        assert len(_jobs_of(server, "toy")) == 2  # the failed job and the retry's
        middle = done["stages"][1]
        assert middle["earlierAttemptsCostUsd"] == failed["stages"][1]["costUsd"] > 0
        billed = [s["costUsd"] + s.get("earlierAttemptsCostUsd", 0) for s in done["stages"]]
        assert done["costUsd"] == pytest.approx(sum(billed), abs=1e-12)

        with server.http() as http:  # a completed run is not retried
            assert http.post(f"/v2/chain/retry/{job.job_id}").status_code == 409
            assert http.get("/v2/chain/status/nope").status_code == 404
    finally:
        runpod.api_key = None

    server.cli("pipelines", "delete", "chain")
    assert "chain" not in server.cli("pipelines", "list").stdout
    assert _status(server, "chain", job.job_id)["status"] == "COMPLETED"  # runs stay readable
