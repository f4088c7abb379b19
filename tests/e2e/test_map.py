"""`coldbrew map` and `Client.map` against a real server: order, failures, refusals, and a
resume after `kill -9` of the client that runs no input twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coldbrew import Client, MapProgress
from tests.conftest import FIXTURES
from tests.e2e.conftest import Server
from tests.helpers import wait_until

TOYS = FIXTURES / "toys"


def write_inputs(path: Path, inputs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(value) + "\n" for value in inputs))
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def jobs_created(server: Server, endpoint: str) -> int:
    """Every job the endpoint has (none is purged within a test)."""
    with server.http() as http:
        counts = http.get(f"/v2/{endpoint}/health").json()["jobs"]
    return int(counts["completed"] + counts["failed"] + counts["inProgress"] + counts["inQueue"])


def journal_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().split(b"\n")[1:-1]  # no header, no line cut by the kill
    return [json.loads(line) for line in lines]


def test_map_runs_every_line_and_writes_results_in_input_order(
    server: Server, tmp_path: Path
) -> None:
    server.start(TOYS)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"value": i} for i in range(240)])
    out = tmp_path / "results.jsonl"

    done = server.cli("map", "toy", str(inputs), "--out", str(out), "--max-in-flight", "16")

    results = read_results(out)
    assert [r["index"] for r in results] == list(range(240))
    assert all(r["status"] == "COMPLETED" for r in results)
    assert [r["output"]["value"] for r in results] == list(range(240))
    assert len({r["id"] for r in results}) == 240
    assert jobs_created(server, "toy") == 240
    assert "toy 100% [########################] 240/240" in done.stderr
    assert f"wrote 240 results to {out}: all completed" in done.stderr
    assert not (tmp_path / "results.jsonl.partial").exists()

    again = server.cli("map", "toy", str(inputs), "--out", str(out), check=False)
    assert again.returncode == 2
    assert f"{out} already exists and no map is in progress there" in again.stderr
    assert "pass --overwrite" in again.stderr
    assert jobs_created(server, "toy") == 240


def test_a_map_killed_mid_way_resumes_without_running_any_input_twice(
    server: Server, tmp_path: Path
) -> None:
    server.start(TOYS)
    count = 300
    inputs = write_inputs(
        tmp_path / "in.jsonl", [{"value": i, "sleep_s": 0.05} for i in range(count)]
    )
    out = tmp_path / "results.jsonl"
    journal = tmp_path / "results.jsonl.partial"
    args = ["map", "toy", str(inputs), "--out", str(out), "--max-in-flight", "24"]
    client = subprocess.Popen(
        [sys.executable, "-m", "coldbrew", *args],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: _results(journal, client, "killed"),
            lambda results: results >= 40,
            timeout_s=120,
            interval_s=0.02,
            what="40 results in the journal",
        )
    finally:
        client.kill()  # SIGKILL: no clean-up of any kind
        client.wait()

    events = journal_events(journal)
    submitted = {e["i"]: e["id"] for e in events if "id" in e}
    finished = {e["i"] for e in events if "result" in e}
    assert 40 <= len(finished) < count
    assert set(submitted) - finished, "jobs were in flight when the client died"
    assert not out.exists()

    resumed = server.cli(*args)

    results = read_results(out)
    assert [r["index"] for r in results] == list(range(count))
    assert [r["output"]["value"] for r in results] == list(range(count))
    assert all(r["status"] == "COMPLETED" for r in results)
    for index, job_id in submitted.items():  # polled, not submitted again
        assert results[index]["id"] == job_id
    assert jobs_created(server, "toy") == count
    assert f"{len(finished)} from the journal" in resumed.stderr
    assert not journal.exists()


def test_ctrl_c_stops_a_map_with_a_resume_hint(server: Server, tmp_path: Path) -> None:
    server.start(TOYS)
    inputs = write_inputs(tmp_path / "in.jsonl", [{"value": i, "sleep_s": 0.3} for i in range(300)])
    out = tmp_path / "results.jsonl"
    journal = tmp_path / "results.jsonl.partial"
    client = subprocess.Popen(
        [sys.executable, "-m", "coldbrew", "map", "toy", str(inputs), "--out", str(out)],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: Python leaves SIGINT ignored if it starts ignored, and the test
        # process may have inherited that from whatever ran pytest
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_until(
        lambda: _results(journal, client, "interrupted"),
        lambda results: results >= 20,
        timeout_s=120,
        interval_s=0.02,
        what="20 results in the journal",
    )
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)

    assert client.returncode == 130, stderr[-2000:]
    last = stderr.splitlines()[-1]
    assert last.startswith("interrupted: ")
    assert last.endswith(
        f"of 300 inputs done; run the same command again to resume (journal: {journal})"
    )
    assert journal.exists() and not out.exists()


def test_client_map_returns_results_in_order(server: Server, capsys: Any) -> None:
    server.start(TOYS)
    inputs = [{"value": i, "crash": "boom" if i == 5 else None} for i in range(30)]
    seen: list[MapProgress] = []

    with Client(server.url, server.key) as client:
        results = client.map("toy", inputs, max_in_flight=4, progress=seen.append)
        quiet = capsys.readouterr().err
        again = client.map("toy", inputs[:3], progress=True)

    assert [r["index"] for r in results] == list(range(30))
    assert [r["status"] for r in results] == [
        "FAILED" if i == 5 else "COMPLETED" for i in range(30)
    ]
    assert results[5]["error"] == "boom"
    assert [r["output"]["value"] for r in results if r["status"] == "COMPLETED"] == [
        i for i in range(30) if i != 5
    ]
    assert max(p.in_flight for p in seen) <= 4
    assert (seen[-1].done, seen[-1].failed, seen[-1].finished) == (30, 1, True)
    assert quiet == ""
    assert [r["output"]["value"] for r in again] == [0, 1, 2]
    assert "toy 100% [########################] 3/3" in capsys.readouterr().err
    assert jobs_created(server, "toy") == 33


def test_bad_input_lines_are_refused_up_front_and_nothing_is_submitted(
    server: Server, tmp_path: Path
) -> None:
    server.start(TOYS)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"value": 1}\n{"value": 2}\n{"value": 3\n\n[4]\n{"sleep_s": "long"}\n')
    out = tmp_path / "results.jsonl"

    refused = server.cli("map", "toy", str(inputs), "--out", str(out), check=False)

    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert lines[0] == f"error: {inputs}: 2 input lines refused, nothing was submitted"
    assert lines[1].startswith("  line 3: not JSON (")
    assert lines[2] == "  line 5: a JSON array, not an object"
    assert lines[3] == '  hint: each line must be one JSON object: a job\'s "input"'

    inputs.write_text('{"value": 1}\n\n{"sleep_s": "long"}\n')
    schema = server.cli("map", "toy", str(inputs), "--out", str(out), check=False)
    assert schema.returncode == 2
    assert "  line 3: input.sleep_s: 'long' is not of type 'number'" in schema.stderr
    assert "hint: endpoint 'toy' takes:" in schema.stderr

    assert jobs_created(server, "toy") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.jsonl"]  # no journal


def test_failed_inputs_are_reported_and_run_again_with_retry_failed(
    server: Server, tmp_path: Path
) -> None:
    # sandbox off: the toy leaves its once-markers in the test's directory
    server.start(TOYS, COLDBREW_SANDBOX="off")
    count, flaky = 50, {3, 17, 42}
    inputs = write_inputs(
        tmp_path / "in.jsonl",
        [
            {"value": i, **({"crash": "flaky", "once_marker": str(tmp_path / f"m{i}")})}
            if i in flaky
            else {"value": i}
            for i in range(count)
        ],
    )
    out = tmp_path / "results.jsonl"
    journal = tmp_path / "results.jsonl.partial"
    args = ["map", "toy", str(inputs), "--out", str(out)]

    first = server.cli(*args, check=False)

    assert first.returncode == 1
    results = read_results(out)
    assert {r["index"] for r in results if r["status"] == "FAILED"} == flaky
    assert all(r["error"] == "flaky" for r in results if r["status"] == "FAILED")
    assert f"wrote 50 results to {out}: 3 failed (first: line 4, FAILED: flaky)" in first.stderr
    assert "--retry-failed" in first.stderr
    assert journal.exists()

    other = write_inputs(tmp_path / "other.jsonl", [{"value": 1}])
    mismatch = server.cli("map", "toy", str(other), "--out", str(out), check=False)
    assert mismatch.returncode == 2
    assert f"error: {journal} belongs to another map: endpoint 'toy' over 50 inputs" in (
        mismatch.stderr
    )

    same = server.cli(*args, check=False)
    assert same.returncode == 1
    assert jobs_created(server, "toy") == count

    retried = server.cli(*args, "--retry-failed")

    results = read_results(out)
    assert all(r["status"] == "COMPLETED" for r in results)
    assert [r["output"]["value"] for r in results] == list(range(count))
    assert "all completed" in retried.stderr
    assert jobs_created(server, "toy") == count + len(flaky)
    assert not journal.exists()


def test_an_output_in_a_missing_folder_is_refused(server: Server, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{}])
    out = tmp_path / "nowhere" / "results.jsonl"
    done = server.cli("map", "toy", str(inputs), "--out", str(out), check=False)
    assert done.returncode == 2
    assert f"error: cannot write {out}: the folder {out.parent} does not exist" in done.stderr


@pytest.mark.parametrize("flag", ["--max-in-flight=0", "--max-in-flight=x"])
def test_a_bad_option_is_a_usage_error(server: Server, tmp_path: Path, flag: str) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", [{}])
    done = server.cli("map", "toy", str(inputs), "--out", str(tmp_path / "o"), flag, check=False)
    assert done.returncode == 2
    assert "Invalid value for '--max-in-flight'" in done.stderr


def _results(journal: Path, client: subprocess.Popen[Any], then: str) -> int:
    """Results in the map's journal so far; the map must still be running, to be {then}."""
    assert client.poll() is None, f"the map ended before it could be {then}"
    return sum("result" in e for e in journal_events(journal)) if journal.exists() else 0
