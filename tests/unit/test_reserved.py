"""The reserved-capacity arithmetic on synthetic traffic with a known optimum."""

from __future__ import annotations

import pytest

from coldbrew.metering.reserved import busy_profile, recommend


def test_busy_profile_counts_workers_not_jobs() -> None:
    # two jobs overlap for 5 s on workers taking 2 jobs each: one worker busy throughout
    profile = busy_profile([(0, 10), (5, 15)], per_worker=2, start=0, end=20)
    assert profile == {0: 5.0, 1: 15.0}
    profile = busy_profile([(0, 10), (5, 15)], per_worker=1, start=0, end=20)
    assert profile == {0: 5.0, 1: 10.0, 2: 5.0}


def test_busy_profile_clips_to_the_window() -> None:
    assert busy_profile([(-5, 5), (8, 30)], per_worker=1, start=0, end=10) == {0: 3.0, 1: 7.0}
    with pytest.raises(ValueError, match="must end after"):
        busy_profile([], per_worker=1, start=5, end=5)


# Worker 1 and 2 are busy all the time, worker 3 half of it, worker 4 a tenth.
PROFILE = {2: 40.0, 3: 50.0, 4: 10.0}


@pytest.mark.parametrize(
    ("discount", "expected"),
    [
        (0.25, 2),  # reserve a worker busy >= 75% of the time: workers 1-2
        (0.55, 3),  # >= 45%: worker 3 (busy 60%) too
        (0.95, 4),  # >= 5%: all four
        (0.0, 0),  # no discount: reserving only ties with per-second billing, so reserve none
    ],
)
def test_recommend_finds_the_known_optimum(discount: float, expected: int) -> None:
    reservation = recommend(PROFILE, price_per_hour_usd=3.6, discount=discount)
    assert reservation.count == expected
    assert reservation.monthly_usd == min(reservation.costs_usd.values())
    assert reservation.serverless_monthly_usd == reservation.costs_usd[0]


def test_recommend_shows_its_arithmetic() -> None:
    reservation = recommend(PROFILE, price_per_hour_usd=3.6, discount=0.25)
    text = "\n".join(reservation.arithmetic)
    assert "busy at least 75% of the time" in text
    assert "worker 3: busy 60.0% of the window" in text
    # 3.6 $/h = 0.001 $/s; the month is 25,920 windows of 100 s; 2 reserved at 0.00075 $/s
    # for 100 s = 0.15, plus the burst: 50 s x 1 + 10 s x 2 = 70 s x 0.001 = 0.07 -> 0.22/window
    assert reservation.costs_usd[2] == pytest.approx(0.22 * 25_920)


def test_recommend_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="fraction"):
        recommend(PROFILE, price_per_hour_usd=1.0, discount=1.5)
    with pytest.raises(ValueError, match="no time"):
        recommend({}, price_per_hour_usd=1.0, discount=0.2)
