"""Metering: worker life → per-hour usage rows → priced reports, with exact seconds."""

from __future__ import annotations

import pytest

from coldbrew.metering.meter import WorkerMeter, split_by_hour
from coldbrew.metering.report import job_cost_usd, usage_report
from coldbrew.prices import DEFAULT_PRICES_PER_HOUR_USD
from coldbrew.store.models import UsageKind, UsageRow

#: The start of a wall-clock hour (1_699_999_200 = 472_222 * 3600); all instants below are
#: exact binary floats so seconds compare with ==.
H = 1_699_999_200.0
COLD, BUSY, IDLE = UsageKind.COLD_START, UsageKind.BUSY, UsageKind.IDLE


@pytest.mark.parametrize(
    ("start", "end", "pieces"),
    [
        pytest.param(H + 10, H + 10, [], id="empty"),
        pytest.param(H + 10, H + 5, [], id="end-before-start"),
        pytest.param(H + 100, H + 160.5, [(H, 60.5)], id="within-one-hour"),
        pytest.param(H, H + 3600, [(H, 3600.0)], id="exactly-one-hour"),
        pytest.param(H + 3599.5, H + 3600.25, [(H, 0.5), (H + 3600, 0.25)], id="crosses-boundary"),
        pytest.param(
            H + 1800,
            H + 9000,
            [(H, 1800.0), (H + 3600, 3600.0), (H + 7200, 1800.0)],
            id="spans-three-hours",
        ),
        pytest.param(H + 3600, H + 3601, [(H + 3600, 1.0)], id="starts-on-boundary"),
    ],
)
def test_split_by_hour(start: float, end: float, pieces: list[tuple[float, float]]) -> None:
    assert split_by_hour(start, end) == pieces


def _meter(since: float, kind: UsageKind = COLD) -> WorkerMeter:
    return WorkerMeter(
        worker_id="w1",
        account="acme",
        endpoint="echo",
        version_id=7,
        hardware="cpu",
        kind=kind,
        since=since,
    )


def _seconds(rows: list[UsageRow]) -> dict[tuple[UsageKind, float], float]:
    table: dict[tuple[UsageKind, float], float] = {}
    for row in rows:
        assert (row.kind, row.hour_start) not in table, "one row per (kind, hour)"
        table[(row.kind, row.hour_start)] = row.seconds
    return table


def test_worker_life_is_split_into_exact_seconds_per_kind() -> None:
    meter = _meter(since=H + 10)
    meter.switch(IDLE, H + 40.5)  # ready after 30.5 s of cold start
    meter.switch(BUSY, H + 100)  # 59.5 s idle
    meter.switch(IDLE, H + 250.25)  # 150.25 s busy
    rows = meter.drain(H + 300)  # 49.75 s idle
    assert _seconds(rows) == {(COLD, H): 30.5, (IDLE, H): 109.25, (BUSY, H): 150.25}


def test_rows_carry_the_worker_and_its_endpoint() -> None:
    (row,) = _meter(since=H).drain(H + 1)
    assert row == UsageRow(
        worker_id="w1",
        account="acme",
        endpoint="echo",
        version_id=7,
        hardware="cpu",
        kind=COLD,
        hour_start=H,
        seconds=1.0,
    )


def test_segment_crossing_an_hour_becomes_two_rows() -> None:
    meter = _meter(since=H + 3590, kind=BUSY)
    rows = meter.drain(H + 3610)
    assert _seconds(rows) == {(BUSY, H): 10.0, (BUSY, H + 3600): 10.0}


def test_drain_reports_each_second_once() -> None:
    meter = _meter(since=H, kind=IDLE)
    assert _seconds(meter.drain(H + 60)) == {(IDLE, H): 60.0}
    assert meter.drain(H + 60) == []
    assert _seconds(meter.drain(H + 90)) == {(IDLE, H): 30.0}


def test_current_kind_continues_across_drains() -> None:
    meter = _meter(since=H, kind=COLD)
    meter.drain(H + 5)
    meter.switch(BUSY, H + 8)
    assert _seconds(meter.drain(H + 10)) == {(COLD, H): 3.0, (BUSY, H): 2.0}


def test_stopped_worker_reports_its_last_segment() -> None:
    meter = _meter(since=H, kind=IDLE)
    meter.switch(None, H + 42)  # the worker stopped
    assert _seconds(meter.drain(H + 42)) == {(IDLE, H): 42.0}


def _row(
    seconds: float,
    kind: UsageKind = BUSY,
    *,
    account: str = "acme",
    endpoint: str = "echo",
    version_id: int = 1,
    hardware: str = "cpu",
    worker_id: str = "w1",
    hour_start: float = H,
) -> UsageRow:
    return UsageRow(worker_id, account, endpoint, version_id, hardware, kind, hour_start, seconds)


def test_an_hour_of_busy_cpu_costs_the_cpu_price() -> None:
    (line,) = usage_report([_row(3600.0)], "endpoint", DEFAULT_PRICES_PER_HOUR_USD)
    assert line == {
        "endpoint": "acme/echo",
        "cold_start_s": 0.0,
        "cold_start_usd": 0.0,
        "busy_s": 3600.0,
        "busy_usd": 0.05,
        "idle_s": 0.0,
        "idle_usd": 0.0,
        "reserved_s": 0.0,
        "reserved_usd": 0.0,
        "total_s": 3600.0,
        "total_usd": 0.05,
    }


def test_report_sums_each_kind_and_prices_by_hardware() -> None:
    rows = [
        _row(30.0, COLD, hardware="L4"),
        _row(1800.0, BUSY, hardware="L4"),
        _row(1800.0, BUSY, hardware="L4", hour_start=H + 3600),
        _row(900.0, IDLE, hardware="L4", worker_id="w2"),
    ]
    (line,) = usage_report(rows, "endpoint", DEFAULT_PRICES_PER_HOUR_USD)
    assert (line["cold_start_s"], line["busy_s"], line["idle_s"], line["total_s"]) == (
        30.0,
        3600.0,
        900.0,
        4530.0,
    )
    assert line["cold_start_usd"] == pytest.approx(30 * 0.44 / 3600, abs=1e-6)
    assert line["busy_usd"] == 0.44
    assert line["idle_usd"] == 0.11
    assert line["total_usd"] == pytest.approx(4530 * 0.44 / 3600, abs=1e-6)


@pytest.mark.parametrize(
    ("by", "keys"),
    [
        ("endpoint", ["acme/echo", "acme/embed", "beta/echo"]),
        ("account", ["acme", "beta"]),
        ("hardware", ["L4", "cpu"]),
        ("version", ["acme/echo@1", "acme/echo@2", "acme/embed@3", "beta/echo@4"]),
    ],
)
def test_report_groupings(by: str, keys: list[str]) -> None:
    rows = [
        _row(3600.0, account="acme", endpoint="echo", version_id=1),
        _row(3600.0, account="acme", endpoint="echo", version_id=2),
        _row(3600.0, account="acme", endpoint="embed", version_id=3, hardware="L4"),
        _row(3600.0, account="beta", endpoint="echo", version_id=4),
    ]
    report = usage_report(rows, by, DEFAULT_PRICES_PER_HOUR_USD)
    assert [line[by] for line in report] == keys
    assert sum(line["total_s"] for line in report) == 4 * 3600.0
    assert sum(line["total_usd"] for line in report) == pytest.approx(3 * 0.05 + 0.44)


def test_report_groups_by_account() -> None:
    rows = [_row(3600.0, account="acme"), _row(1800.0, account="acme", endpoint="embed")]
    (line,) = usage_report(rows, "account", DEFAULT_PRICES_PER_HOUR_USD)
    assert (line["account"], line["busy_s"], line["busy_usd"]) == ("acme", 5400.0, 0.075)


def test_unpriced_hardware_counts_seconds_at_zero_dollars() -> None:
    (line,) = usage_report([_row(60.0, hardware="T4")], "hardware", DEFAULT_PRICES_PER_HOUR_USD)
    assert (line["hardware"], line["busy_s"], line["total_usd"]) == ("T4", 60.0, 0.0)


def test_report_of_no_rows_is_empty() -> None:
    assert usage_report([], "endpoint", DEFAULT_PRICES_PER_HOUR_USD) == []


def test_unknown_grouping_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="endpoint, account, hardware, version"):
        usage_report([_row(1.0)], "worker", DEFAULT_PRICES_PER_HOUR_USD)


@pytest.mark.parametrize(
    ("execution_s", "price", "usd"),
    [(3600.0, 0.05, 0.05), (0.0, 1.99, 0.0), (1800.0, 0.44, 0.22), (90.0, 1.99, 0.04975)],
)
def test_job_cost(execution_s: float, price: float, usd: float) -> None:
    assert job_cost_usd({"gpu": price}, "gpu", execution_s) == pytest.approx(usd, rel=1e-12)
