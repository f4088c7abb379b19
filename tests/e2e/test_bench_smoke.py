"""`bench/coldstart.py --smoke` runs end to end: two coldbrew servers, echo, no Ray, no PSS.

The benchmark's figures are not checked (they depend on the machine); only that it finishes,
stops what it started and ends with the JSON report it promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "coldstart.py"


@pytest.mark.slow
def test_bench_coldstart_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDBREW_")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=170,  # a hang guard only, under pytest's own timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])

    assert isinstance(report, dict)
    expected = {"coldbrew_fast", "coldbrew_spawn", "ray_serve", "pss_mb", "ratios"}
    expected |= {"tries", "smoke"}
    assert expected <= report.keys()
    assert report["smoke"] is True
    assert report["tries"] == 2
    assert "skipped" in report["ray_serve"]  # --smoke never starts Ray
    assert report["pss_mb"] == {}
    for system in ("coldbrew_fast", "coldbrew_spawn"):
        echo = report[system]["echo"]
        assert {"p50_ms", "p90_ms", "samples_ms"} <= echo.keys()
        assert len(echo["samples_ms"]) == 2, echo
        assert "errors" not in echo, echo["errors"]
    assert set(report["ratios"]["echo"]) == {"spawn_over_fast_p50", "ray_over_fast_p50"}
    assert any(line.startswith("echo") for line in lines[:-1])  # the table's row


THROUGHPUT = ROOT / "bench" / "throughput.py"


@pytest.mark.slow
def test_bench_throughput_smoke() -> None:
    """`bench/throughput.py --smoke`: coldbrew only, noop, short runs; wrk when installed, else
    the Python load generator. Checks the report's shape and that no request failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDBREW_")}
    done = subprocess.run(
        [sys.executable, str(THROUGHPUT), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["smoke"] is True and report["rounds"] == 1
    noop = report["summary"]["noop"]["coldbrew"]
    assert noop["rounds"] == 1, noop
    assert noop["errors_seen"] == 0
    assert noop["c1_requests"] >= 100 and noop["c32_rps"] > 0
    assert noop["pss_loaded_mb"] > 0 and noop["pss_zero_workers_mb"] > 0
    assert set(report["ratios"]["noop"]) == {
        "c1_p50_vs_litserve",
        "c32_rps_vs_litserve",
        "c32_rps_vs_ray_serve",
    }
    assert report["summary"]["noop"]["ceiling"]["c32_rps"] > 0  # the model alone, same run
    assert any(line.startswith("noop") for line in lines[:-1])  # the table's row
