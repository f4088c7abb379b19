"""`coldbrew traffic` arguments and the versions table, without a server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from coldbrew.cli.main import main
from coldbrew.cli.versions import _weights, print_versions


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("3=90", "4=10"), {3: 90, 4: 10}), (("v3=100",), {3: 100}), (("3=-5",), {3: -5})],
    ids=["plain", "v prefix", "negative reaches the server's check"],
)
def test_weights(args: tuple[str, ...], expected: dict[int, int]) -> None:
    assert _weights(args) == expected


@pytest.mark.parametrize("bad", ["3:90", "three=90", "3=ninety", "=90"])
def test_a_malformed_weight_is_a_usage_error_before_any_request(bad: str) -> None:
    result = CliRunner().invoke(main, ["traffic", "echo", bad])
    assert result.exit_code == 2
    assert "is not VERSION=PERCENT" in result.output


def test_the_table_shows_status_share_and_the_rollback_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stats = {
        "invocations": 40,
        "byStatus": {"COMPLETED": 10, "FAILED": 28, "TIMED_OUT": 2, "CANCELLED": 0},
        "latencyP99Ms": 12.5,
    }
    line = {
        "version": 4,
        "createdAt": "2026-11-29T01:12:00+00:00",
        "artifact": "88afece9071b" + "0" * 52,
        "environment": "env-1a2b3c4d5e6f7a8b",
        "status": "rolled_back",
        "share": 0,
        "workers": {"idle": 1, "running": 0, "starting": 0},
        "rolledBackAt": "2026-11-29T01:13:00+00:00",
        "rollbackReason": "error rate 0.750 (30 of 40 jobs) over the last 60 s exceeds 0.05",
        "stats": stats,
    }
    rule = {"windowS": 60.0, "maxErrorRate": 0.05, "maxP99Ms": 500.0, "minJobs": 20}
    print_versions({"versions": [line], "rule": rule})
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == [
        "v4", "2026-11-29", "01:12", "88afece9071b", "env-1a2b3c4d5", "rolled_back", "0%",
        "1", "0", "0", "40", "30", "12.5",
    ]  # fmt: skip
    assert out[2] == (
        "canary rule: back to 0% on error rate > 0.05 or p99 > 500 ms over 60 s (after 20 jobs)"
    )
    assert out[3] == f"v4 rolled back 2026-11-29 01:13: {line['rollbackReason']}"
