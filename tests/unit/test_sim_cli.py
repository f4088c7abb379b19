"""`python -m coldbrew.sim`: the same arguments print the same bytes; sweeps and traces work."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from coldbrew.sim.__main__ import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sim"
SMALL = ["--endpoints", "40", "--rate", "60", "--duration", "40", "--warmup", "20", "--no-erlang"]


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_same_seed_prints_the_same_report() -> None:
    args = [*SMALL, "--sweep", "idle_timeout_s=0,60", "--json"]
    first = _run(args)
    assert first == _run(args)
    report = json.loads(first)
    assert report["workload"]["endpoints"] == 40
    sweep = report["sweeps"]["idle_timeout_s"]
    assert [row["value"] for row in sweep] == ["0", "60"]
    # no keep-warm window: more cold starts than with a minute of it
    assert sweep[0]["cold_start_pct"] > sweep[1]["cold_start_pct"]
    assert _run([*args[:-4], "--seed", "1", "--json"]) != _run([*args[:-4], "--json"])


def test_tables_and_a_simple_trace() -> None:
    out = _run(["--trace", str(FIXTURES / "requests.csv"), "--no-erlang"])
    assert "cold_start_pct" in out and "requests" in out
    assert "sweep" not in out


def test_a_bad_sweep_says_what_is_wrong() -> None:
    result = CliRunner().invoke(main, [*SMALL, "--sweep", "idle_timeout_s=-1"])
    assert result.exit_code != 0
    assert "idle_timeout_s" in result.output


def test_an_azure_window_is_simulated_whole() -> None:
    args = ["--azure", str(FIXTURES / "azure_invocations.csv"), "--minutes", "1:5"]
    report = json.loads(_run([*args, "--no-erlang", "--json"]))
    assert report["config"]["duration_s"] == 300.0 and report["config"]["warmup_s"] == 0.0
    assert report["result"]["requests"] == 43
    assert report["result"]["completed_pct"] == 100.0
