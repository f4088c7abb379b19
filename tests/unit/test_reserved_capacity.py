"""Reserved capacity: the spec and settings that declare it, the meter that bills it, the
placement that keeps it up, the usage report that prices it, and the advisor that sizes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.unit.conftest import FakeBackend

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView, decide
from coldbrew.control.fleet import Fleet
from coldbrew.control.placement import Placement
from coldbrew.control.queues import QueueLedger
from coldbrew.control.workers import WorkerState
from coldbrew.errors import SpecError
from coldbrew.metering.advisor import Traffic, advise, busy_intervals
from coldbrew.metering.meter import WorkerMeter
from coldbrew.metering.report import usage_report
from coldbrew.spec import DeploymentSpec, parse_spec
from coldbrew.store.models import JobStatus, JobTiming, QueueStat, UsageKind, UsageRow
from coldbrew.store.sqlite import SQLiteStore


def test_reserved_workers_must_fit_under_max_workers() -> None:
    assert parse_spec({"reserved_workers": 2, "max_workers": 2}, where="m").reserved_workers == 2
    with pytest.raises(SpecError, match=r"reserved_workers \(3\) is above max_workers \(2\)"):
        parse_spec({"reserved_workers": 3, "max_workers": 2}, where="m")
    with pytest.raises(SpecError, match="reserved_workers"):
        parse_spec({"reserved_workers": -1}, where="m")


def test_the_reserved_discount_is_a_fraction_per_hardware_class(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, reserved_discount={"L4": 0.4})
    assert settings.reserved_discount_for("L4") == 0.4
    assert settings.reserved_discount_for("cpu") == 0.25  # the default
    with pytest.raises(ValidationError, match=r"fractions in \[0, 1\)"):
        Settings(home=tmp_path, reserved_discount={"cpu": 1.0})


def test_a_reserved_worker_is_metered_as_reserved_whatever_it_does() -> None:
    meter = WorkerMeter("w", "a", "e", 1, "cpu", UsageKind.COLD_START, 0.0, reserved=True)
    meter.switch(UsageKind.IDLE, 10.0)
    meter.switch(UsageKind.BUSY, 30.0)
    meter.switch(UsageKind.IDLE, 45.0)
    rows = meter.drain(100.0)
    assert [(r.kind, r.seconds) for r in rows] == [(UsageKind.RESERVED, 100.0)]
    burst = WorkerMeter("b", "a", "e", 1, "cpu", UsageKind.COLD_START, 0.0)
    burst.switch(UsageKind.BUSY, 10.0)
    assert {r.kind for r in burst.drain(20.0)} == {UsageKind.COLD_START, UsageKind.BUSY}


def test_the_autoscaler_keeps_reserved_workers_and_stops_idle_burst_ones() -> None:
    spec = DeploymentSpec(reserved_workers=1, max_workers=3, idle_timeout_s=10)
    idle = [
        WorkerView("reserved", True, 0, 0.0, reserved=True),
        WorkerView("burst", True, 0, 50.0),
    ]
    decision, _ = decide(
        Observation(now=100.0, queued=0, running=0, oldest_queued_age_s=0, workers=tuple(idle)),
        spec,
        ScalerState(),
    )
    assert decision.desired_workers == 1 and decision.stop == ("burst",)
    empty = Observation(now=0.0, queued=0, running=0, oldest_queued_age_s=0)
    assert decide(empty, spec, ScalerState())[0].start == 1  # up with no traffic at all


def test_placement_keeps_n_reserved_workers_up_and_never_evicts_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock, store = FakeClock(), SQLiteStore(":memory:")
        await store.create_account("a", "whsec_x", clock.time())
        await store.create_account("b", "whsec_x", clock.time())
        spec = {"reserved_workers": 2, "max_workers": 3, "idle_timeout_s": 0}
        version, _ = await store.add_version("a", "e", "sha", "app", "E", spec, {}, clock.time())
        other, _ = await store.add_version("b", "o", "sha", "app", "O", {}, {}, clock.time())
        settings = Settings(home=tmp_path, hardware_slots={"cpu": 2})
        fleet = Fleet(store, FakeBackend(), clock, settings)
        await fleet.refresh({version.id, other.id})
        placement = Placement(fleet, store, clock, settings, QueueLedger(100))
        plan = await placement.plan({}, 0.0)  # no traffic at all
        assert plan.launch == [version.id, version.id]
        for vid in plan.launch:
            fleet.launch(*fleet.versions[vid])
        assert all(w.reserved for w in fleet.workers.values())
        for worker in fleet.workers.values():
            worker.state, worker.served, worker.idle_since = WorkerState.IDLE, True, 0.0
        clock.advance(3600)
        plan = await placement.plan({other.id: _queued()}, 3600.0)
        assert plan.stop == [] and plan.launch == []  # idle for an hour, another wants a slot
        assert [w.state for w in fleet.workers.values()] == [WorkerState.IDLE] * 2

    asyncio.run(scenario())


def _queued() -> QueueStat:
    return QueueStat(queued=3, oldest_created_at=0.0)


def test_reserved_seconds_are_priced_at_the_discount_and_the_total_reconciles() -> None:
    def row(kind: UsageKind, seconds: float, worker: str = "w") -> UsageRow:
        return UsageRow(worker, "a", "e", 1, "L4", kind, 0.0, seconds)

    rows = [
        row(UsageKind.RESERVED, 3600.0, "r"),
        row(UsageKind.COLD_START, 1.7),
        row(UsageKind.BUSY, 123.4),
        row(UsageKind.IDLE, 300.0),
    ]
    (line,) = usage_report(rows, "endpoint", {"L4": 0.44}, {"L4": 0.25})
    assert line["reserved_s"] == 3600.0
    assert line["reserved_usd"] == pytest.approx(0.44 * 0.75)
    assert line["busy_usd"] == pytest.approx(123.4 * 0.44 / 3600)
    kinds = sum(line[f"{k.value}_usd"] for k in UsageKind)
    assert round(line["total_usd"], 2) == round(kinds, 2)
    assert line["total_usd"] == pytest.approx(kinds, abs=1e-8)


def test_the_advisor_finds_the_known_optimal_reserved_count() -> None:
    # 1,000 s window at $3.60/h ($0.001/s), 25% off reserved: worker k is busy 100%, 100%,
    # 80%, 50%, 10% of the window. A reserved worker pays off when busy >= 75%: reserve 3.
    # Reserve 2: 2 x 0.75 + (0.8 + 0.5 + 0.1) = $2.90; 3: 2.25 + 0.6 = $2.85; 4: 3.0 + 0.1.
    jobs = [(0.0, 1000.0), (0.0, 1000.0), (0.0, 800.0), (0.0, 500.0), (0.0, 100.0)]
    start = 1_000_000.0
    timings = [
        JobTiming("e", JobStatus.COMPLETED, start + a, start + a, start + b, False, False)
        for a, b in jobs
    ] + [
        JobTiming("e", JobStatus.COMPLETED, start, start, start + 999, False, True),  # cached
        JobTiming("e", JobStatus.CANCELLED, start, None, start + 999, False, False),  # queued
    ]
    traffic = Traffic(
        window_s=1000.0,
        requests=len(jobs),
        seconds={UsageKind.BUSY: 3400.0},
        price_per_hour_usd=3.6,
        hardware="H200",
        idle_timeout_s=60.0,
        min_workers=0,
        cold_starts=0,
        busy_intervals=busy_intervals(timings),
        window_end=start + 1000.0,
        reserved_discount=0.25,
    )
    reserved = advise(traffic)["reserved"]
    scale = 30 * 86_400 / 1000
    assert reserved["count"] == 3
    assert reserved["costs_usd"]["2"] == pytest.approx(2.90 * scale)
    assert reserved["monthly_usd"] == pytest.approx(2.85 * scale)
    assert reserved["serverless_monthly_usd"] == pytest.approx(3.40 * scale)
    assert "worker 3: busy 80.0% of the window" in reserved["arithmetic"]
    # at a 10% discount the third worker (busy 80% < 90%) is no longer worth reserving
    assert (
        advise(traffic.__class__(**{**traffic.__dict__, "reserved_discount": 0.1}))["reserved"][
            "count"
        ]
        == 2
    )
