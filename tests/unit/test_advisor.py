"""The advisor's arithmetic on known traffic: dedicated vs serverless, break-even, suggestions."""

from __future__ import annotations

import pytest

from coldbrew.metering.advisor import HOURS_PER_MONTH, Traffic, advise
from coldbrew.store.models import UsageKind

WEEK_S = 7 * 86_400


def traffic(**overrides: object) -> Traffic:
    values: dict[str, object] = {
        "window_s": WEEK_S,
        "requests": 1000,
        "seconds": {UsageKind.BUSY: 500.0, UsageKind.IDLE: 3000.0, UsageKind.COLD_START: 100.0},
        "price_per_hour_usd": 0.34,
        "hardware": "RTX4090",
        "idle_timeout_s": 300.0,
        "min_workers": 0,
        "cold_starts": 50,
    }
    values.update(overrides)
    return Traffic(**values)  # type: ignore[arg-type]


def test_a_quiet_endpoint_is_cheaper_serverless_and_the_arithmetic_is_shown() -> None:
    report = advise(traffic())
    total = 3600 * 0.34 / 3600  # 3,600 billed seconds at $0.34/h
    assert report["cost_usd"]["total"] == pytest.approx(total, abs=1e-6)
    assert report["serverless_monthly_usd"] == pytest.approx(total * 30 / 7, abs=1e-4)
    assert report["dedicated_monthly_usd"] == pytest.approx(0.34 * HOURS_PER_MONTH, abs=0.01)
    assert report["cheaper"] == "serverless"
    per_request = total / 1000
    assert report["break_even_requests_per_hour"] == pytest.approx(
        0.34 * HOURS_PER_MONTH / per_request / HOURS_PER_MONTH, rel=1e-3
    )
    assert any("$0.34/h x 720 h = $244.80/month" in line for line in report["arithmetic"])
    settings = [tip["setting"] for tip in report["suggestions"]]
    assert settings[0] == "idle_timeout_s=75"  # idle cost is 6x busy cost


def test_frequent_cold_starts_suggest_a_warm_worker() -> None:
    report = advise(traffic(cold_starts=400))
    tip = next(t for t in report["suggestions"] if t["setting"].startswith("min_workers=1"))
    assert "400 of 1000 requests waited" in tip["effect"]


def test_a_saturated_endpoint_is_cheaper_dedicated() -> None:
    busy_week = {UsageKind.BUSY: 2 * WEEK_S, UsageKind.IDLE: 0.0, UsageKind.COLD_START: 0.0}
    report = advise(traffic(seconds=busy_week, cold_starts=0))
    assert report["cheaper"] == "dedicated"
    assert any("dedicated RTX4090" in t["setting"] for t in report["suggestions"])
