"""The autoscaling policy as tables: observation in, worker count and start/stop out.

Modelled on Ray Serve's `tests/unit/test_autoscaling_policy.py`: `decide` is pure, so each row
states the load at one instant and the decision the scheduler must act on.
"""

from __future__ import annotations

from typing import Any

import pytest

from coldbrew.control.autoscaler import (
    Decision,
    Observation,
    ScalerState,
    WorkerView,
    decide,
)
from coldbrew.spec import DeploymentSpec, Scaler

NOW = 1_000.0


def idle(worker_id: str, since: float) -> WorkerView:
    return WorkerView(worker_id, ready=True, active_jobs=0, idle_since=since)


def busy(worker_id: str, jobs: int = 1) -> WorkerView:
    return WorkerView(worker_id, ready=True, active_jobs=jobs, idle_since=None)


def starting(worker_id: str) -> WorkerView:
    return WorkerView(worker_id, ready=False, active_jobs=0, idle_since=None)


def observe(
    *,
    queued: int = 0,
    running: int = 0,
    oldest_s: float = 0.0,
    workers: tuple[WorkerView, ...] = (),
    retired: bool = False,
    now: float = NOW,
) -> Observation:
    return Observation(
        now=now,
        queued=queued,
        running=running,
        oldest_queued_age_s=oldest_s,
        workers=workers,
        retired=retired,
    )


def want(desired: int, start: int, *stop: str) -> Decision:
    return Decision(desired_workers=desired, start=start, stop=stop)


# spec fields, observation, decision. Spec defaults: min 0, max 4, concurrency 1, buffer 0,
# idle_timeout_s 300.
REQUEST_COUNT_ROWS = [
    pytest.param({}, observe(), want(0, 0), id="no-load-no-workers"),
    pytest.param({}, observe(queued=1), want(1, 1), id="first-job-scales-from-zero"),
    pytest.param({}, observe(queued=3), want(3, 3), id="one-worker-per-queued-job"),
    pytest.param({}, observe(queued=10), want(4, 4), id="bounded-by-max-workers"),
    pytest.param({"max_workers": 1}, observe(queued=5), want(1, 1), id="max-workers-one"),
    pytest.param(
        {},
        observe(queued=1, running=2, workers=(busy("a"), busy("b"))),
        want(3, 1),
        id="running-jobs-count-as-demand",
    ),
    pytest.param({"concurrency": 4}, observe(queued=5), want(2, 2), id="concurrency-packs-jobs"),
    pytest.param(
        {"concurrency": 4},
        observe(queued=3, running=1, workers=(busy("a"),)),
        want(1, 0),
        id="concurrency-fills-one-worker",
    ),
    pytest.param(
        {},
        observe(queued=2, workers=(starting("a"), starting("b"))),
        want(2, 0),
        id="starting-workers-count-as-live",
    ),
    pytest.param({"min_workers": 2}, observe(), want(2, 2), id="min-workers-started-without-load"),
    pytest.param(
        {"min_workers": 2},
        observe(workers=(idle("a", NOW - 1000), idle("b", NOW - 1000))),
        want(2, 0),
        id="min-workers-kept-past-idle-timeout",
    ),
    pytest.param({"min_workers": 3}, observe(queued=1), want(3, 3), id="min-workers-above-demand"),
    pytest.param({"buffer_workers": 1}, observe(queued=1), want(2, 2), id="buffer-on-top"),
    pytest.param({"buffer_workers": 2}, observe(), want(0, 0), id="no-buffer-without-demand"),
    pytest.param({"buffer_workers": 2}, observe(queued=3), want(4, 4), id="buffer-bounded-by-max"),
    pytest.param(
        {},
        observe(queued=6, running=4, workers=tuple(busy(w) for w in "abcd")),
        want(4, 0),
        id="at-max-starts-nothing",
    ),
]

SCALE_DOWN_ROWS = [
    pytest.param(
        {}, observe(workers=(idle("a", NOW - 299.5),)), want(0, 0), id="idle-within-window-kept"
    ),
    pytest.param(
        {}, observe(workers=(idle("a", NOW - 300),)), want(0, 0, "a"), id="idle-timeout-reached"
    ),
    pytest.param(
        {"min_workers": 1},
        observe(workers=(idle("a", NOW - 400), idle("b", NOW - 900))),
        want(1, 0, "b"),
        id="oldest-idle-stopped-first",
    ),
    pytest.param(
        {},
        observe(workers=(idle("a", NOW - 400), idle("b", NOW - 900), idle("c", NOW - 600))),
        want(0, 0, "b", "c", "a"),
        id="all-expired-stopped-oldest-first",
    ),
    pytest.param(
        {},
        observe(workers=(idle("a", NOW - 10), idle("b", NOW - 500))),
        want(0, 0, "b"),
        id="only-expired-idle-stopped",
    ),
    pytest.param(
        {},
        observe(running=1, workers=(busy("a"), idle("b", NOW - 500))),
        want(1, 0, "b"),
        id="idle-stopped-busy-kept",
    ),
    pytest.param(
        {"max_workers": 1},
        observe(running=2, workers=(busy("a"), busy("b"))),
        want(1, 0),
        id="busy-never-stopped-even-above-max",
    ),
    pytest.param({}, observe(workers=(starting("a"),)), want(0, 0), id="starting-never-stopped"),
    pytest.param(
        {},
        observe(workers=(WorkerView("a", ready=False, active_jobs=0, idle_since=NOW - 900),)),
        want(0, 0),
        id="not-ready-never-stopped-whatever-its-idle-time",
    ),
    pytest.param(
        {},
        observe(running=1, workers=(busy("a"), idle("b", NOW - 301), starting("c"))),
        want(1, 0, "b"),
        id="excess-stops-idle-not-starting",
    ),
    pytest.param(
        {"idle_timeout_s": 0},
        observe(workers=(idle("a", NOW),)),
        want(0, 0, "a"),
        id="zero-idle-timeout-stops-at-once",
    ),
]

RETIRED_ROWS = [
    pytest.param(
        {}, observe(retired=True, workers=(idle("a", NOW),)), want(0, 0, "a"), id="idle-stops-now"
    ),
    pytest.param(
        {"min_workers": 2},
        observe(retired=True, workers=(idle("a", NOW), idle("b", NOW - 1))),
        want(0, 0, "b", "a"),
        id="min-workers-ignored",
    ),
    pytest.param({}, observe(retired=True, queued=1), want(1, 1), id="still-drains-its-queue"),
    pytest.param(
        {},
        observe(retired=True, running=1, workers=(busy("a"),)),
        want(1, 0),
        id="busy-worker-finishes-its-job",
    ),
    pytest.param(
        {}, observe(retired=True, workers=(starting("a"),)), want(0, 0), id="starting-not-stopped"
    ),
]


@pytest.mark.parametrize(("fields", "obs", "expected"), REQUEST_COUNT_ROWS)
def test_request_count_scaling(
    fields: dict[str, Any], obs: Observation, expected: Decision
) -> None:
    decision, _ = decide(obs, DeploymentSpec(**fields), ScalerState())
    assert decision == expected


@pytest.mark.parametrize(("fields", "obs", "expected"), SCALE_DOWN_ROWS)
def test_scale_down_stops_only_expired_idle_workers(
    fields: dict[str, Any], obs: Observation, expected: Decision
) -> None:
    decision, _ = decide(obs, DeploymentSpec(**fields), ScalerState())
    assert decision == expected


@pytest.mark.parametrize(("fields", "obs", "expected"), RETIRED_ROWS)
def test_retired_version_goes_to_zero_when_idle(
    fields: dict[str, Any], obs: Observation, expected: Decision
) -> None:
    decision, _ = decide(obs, DeploymentSpec(**fields), ScalerState())
    assert decision == expected


# queue_delay with scaler_target_s = 2: spec fields, state before, observation, decision,
# last_scale_up_at after.
QUEUE_DELAY_ROWS = [
    pytest.param({}, None, observe(), want(0, 0), None, id="no-load-no-workers"),
    pytest.param(
        {}, None, observe(queued=1), want(1, 1), NOW, id="first-job-scales-from-zero-at-once"
    ),
    pytest.param(
        {},
        None,
        observe(queued=3, running=1, oldest_s=1.5, workers=(busy("a"),)),
        want(1, 0),
        None,
        id="wait-under-target-holds",
    ),
    pytest.param(
        {},
        None,
        observe(queued=3, running=1, oldest_s=2.0, workers=(busy("a"),)),
        want(1, 0),
        None,
        id="wait-equal-to-target-holds",
    ),
    pytest.param(
        {},
        None,
        observe(queued=3, running=1, oldest_s=2.5, workers=(busy("a"),)),
        want(2, 1),
        NOW,
        id="wait-over-target-adds-one",
    ),
    pytest.param(
        {},
        None,
        observe(queued=50, running=2, oldest_s=30.0, workers=(busy("a"), busy("b"))),
        want(3, 1),
        NOW,
        id="long-queue-still-adds-only-one",
    ),
    pytest.param(
        {},
        None,
        observe(queued=3, running=1, oldest_s=10.0, workers=(busy("a"), starting("b"))),
        want(2, 0),
        None,
        id="not-while-a-worker-is-starting",
    ),
    pytest.param(
        {},
        NOW - 1.5,
        observe(queued=3, running=1, oldest_s=10.0, workers=(busy("a"),)),
        want(1, 0),
        NOW - 1.5,
        id="cooldown-after-last-scale-up",
    ),
    pytest.param(
        {},
        NOW - 2.0,
        observe(queued=3, running=1, oldest_s=10.0, workers=(busy("a"),)),
        want(2, 1),
        NOW,
        id="cooled-after-one-target-window",
    ),
    pytest.param(
        {"max_workers": 2},
        None,
        observe(queued=3, running=2, oldest_s=10.0, workers=(busy("a"), busy("b"))),
        want(2, 0),
        None,
        id="bounded-by-max-workers",
    ),
    pytest.param(
        {},
        None,
        observe(queued=1, oldest_s=0.5, workers=(idle("a", NOW - 400),)),
        want(1, 0),
        None,
        id="queued-work-keeps-expired-idle-worker",
    ),
    pytest.param(
        {},
        None,
        observe(running=2, workers=(busy("a"), busy("b"))),
        want(2, 0),
        None,
        id="empty-queue-keeps-busy-workers",
    ),
    pytest.param(
        {},
        None,
        observe(running=1, workers=(busy("a"), idle("b", NOW - 300))),
        want(1, 0, "b"),
        None,
        id="empty-queue-stops-expired-idle",
    ),
    pytest.param(
        {},
        None,
        observe(running=1, workers=(busy("a"), idle("b", NOW - 10))),
        want(1, 0),
        None,
        id="empty-queue-keeps-idle-within-window",
    ),
    pytest.param(
        {"concurrency": 2},
        None,
        observe(running=3, workers=(busy("a", jobs=2), busy("b"))),
        want(2, 0),
        None,
        id="concurrency-rounds-busy-up",
    ),
    pytest.param({"min_workers": 1}, None, observe(), want(1, 1), NOW, id="min-workers-floor"),
]


@pytest.mark.parametrize(
    ("fields", "last_before", "obs", "expected", "last_after"), QUEUE_DELAY_ROWS
)
def test_queue_delay_scaling(
    fields: dict[str, Any],
    last_before: float | None,
    obs: Observation,
    expected: Decision,
    last_after: float | None,
) -> None:
    spec = DeploymentSpec(scaler=Scaler.QUEUE_DELAY, scaler_target_s=2.0, **fields)
    decision, state = decide(obs, spec, ScalerState(last_scale_up_at=last_before))
    assert decision == expected
    assert state == ScalerState(last_scale_up_at=last_after)


def test_scale_up_records_when_it_happened() -> None:
    _, state = decide(observe(queued=2), DeploymentSpec(), ScalerState(last_scale_up_at=5.0))
    assert state == ScalerState(last_scale_up_at=NOW)


def test_state_is_carried_unchanged_when_nothing_starts() -> None:
    before = ScalerState(last_scale_up_at=5.0)
    obs = observe(queued=1, workers=(starting("a"),))
    _, after = decide(obs, DeploymentSpec(), before)
    assert after == before


def test_request_count_wakes_serves_and_sleeps() -> None:
    """One job: a worker starts, runs it, stays warm for idle_timeout_s, then stops."""
    spec = DeploymentSpec(idle_timeout_s=300)
    state = ScalerState()
    ticks = [
        (observe(now=0.0, queued=1), want(1, 1)),
        (observe(now=1.0, queued=1, workers=(starting("w"),)), want(1, 0)),
        (observe(now=5.0, running=1, workers=(busy("w"),)), want(1, 0)),
        (observe(now=309.9, workers=(idle("w", 10.0),)), want(0, 0)),
        (observe(now=310.0, workers=(idle("w", 10.0),)), want(0, 0, "w")),
    ]
    for obs, expected in ticks:
        decision, state = decide(obs, spec, state)
        assert decision == expected, f"at t={obs.now}"


def test_queue_delay_adds_one_worker_per_target_window() -> None:
    """A backlog grows the fleet one worker at a time, waiting for each to start."""
    spec = DeploymentSpec(scaler=Scaler.QUEUE_DELAY, scaler_target_s=2.0)
    state = ScalerState()
    ticks = [
        (observe(now=0.0, queued=5), want(1, 1)),
        (observe(now=1.0, queued=5, oldest_s=1.0, workers=(starting("w1"),)), want(1, 0)),
        (
            observe(now=3.0, queued=4, running=1, oldest_s=3.0, workers=(busy("w1"),)),
            want(2, 1),
        ),
        (
            observe(
                now=4.0, queued=4, running=1, oldest_s=4.0, workers=(busy("w1"), starting("w2"))
            ),
            want(2, 0),
        ),
        (
            observe(now=4.5, queued=3, running=2, oldest_s=4.5, workers=(busy("w1"), busy("w2"))),
            want(2, 0),
        ),
        (
            observe(now=5.0, queued=3, running=2, oldest_s=5.0, workers=(busy("w1"), busy("w2"))),
            want(3, 1),
        ),
    ]
    for obs, expected in ticks:
        decision, state = decide(obs, spec, state)
        assert decision == expected, f"at t={obs.now}"
    assert state == ScalerState(last_scale_up_at=5.0)
