"""The autoscaling policy: a pure function from what is observed now to how many workers to run.

`decide` never reads a clock or touches a process; the scheduler feeds it an `Observation`
(which includes `now`) and carries the returned `ScalerState` to the next call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from coldbrew.spec import DeploymentSpec, Scaler


@dataclass(frozen=True)
class WorkerView:
    """One live worker of the version, as the policy needs to see it."""

    id: str
    ready: bool  # False while starting (process start, imports, setup)
    active_jobs: int
    idle_since: float | None  # monotonic instant the worker last became idle; None when busy
    reserved: bool = False  # on a reserved slot of a current version: never stopped for idling


@dataclass(frozen=True)
class Observation:
    """The version's load at monotonic instant `now`."""

    now: float
    queued: int
    running: int
    oldest_queued_age_s: float
    workers: tuple[WorkerView, ...] = ()
    retired: bool = False  # an older version: no new traffic, so no warm workers either
    floor_workers: int = 0  # warm windows and prewarming ask for at least this many


@dataclass(frozen=True)
class ScalerState:
    """What the policy remembers between calls."""

    last_scale_up_at: float | None = None


@dataclass(frozen=True)
class Decision:
    desired_workers: int
    start: int
    stop: tuple[str, ...] = field(default=())


def _load_target(obs: Observation, spec: DeploymentSpec, state: ScalerState) -> int:
    """Workers the load asks for, before min/max bounds."""
    live = len(obs.workers)
    if spec.scaler is Scaler.REQUEST_COUNT:
        demand = obs.queued + obs.running
        target = math.ceil(demand / spec.concurrency)
        return target + spec.buffer_workers if demand else 0
    # queue_delay: hold the current count; add one when the oldest job waited too long, but not
    # while a worker is still starting (it will take that job) and at most once per target window.
    busy_or_needed = math.ceil(obs.running / spec.concurrency)
    if obs.queued and live == 0:
        return 1
    starting = any(not w.ready for w in obs.workers)
    cooled = (
        state.last_scale_up_at is None or obs.now - state.last_scale_up_at >= spec.scaler_target_s
    )
    if obs.queued and obs.oldest_queued_age_s > spec.scaler_target_s and not starting and cooled:
        return live + 1
    return max(busy_or_needed, live if obs.queued else busy_or_needed)


def decide(
    obs: Observation, spec: DeploymentSpec, state: ScalerState
) -> tuple[Decision, ScalerState]:
    """How many workers the version should have, which to start and which idle ones to stop.

    Scale-down only ever stops workers that have no job and have been idle for the keep-warm
    window (`idle_timeout_s`; zero for retired versions), oldest idle first, so it never
    interrupts a running job and never stops a worker that is about to be needed again.
    Reserved workers are a floor that never scales down: the reservation is paid either way,
    so the burst workers above it go first.
    """
    wanted = max(spec.min_workers, obs.floor_workers, spec.reserved_workers)
    min_workers = 0 if obs.retired else min(wanted, spec.max_workers)
    idle_timeout_s = 0.0 if obs.retired else spec.idle_timeout_s
    desired = max(min_workers, min(_load_target(obs, spec, state), spec.max_workers))
    live = len(obs.workers)
    start = max(0, desired - live)
    if start:
        state = ScalerState(last_scale_up_at=obs.now)
    stop: list[str] = []
    if live > desired:
        expired = sorted(
            (
                w
                for w in obs.workers
                if w.ready
                and not w.reserved
                and w.active_jobs == 0
                and w.idle_since is not None
                and obs.now - w.idle_since >= idle_timeout_s
            ),
            key=lambda w: w.idle_since or 0.0,
        )
        stop = [w.id for w in expired[: live - desired]]
    return Decision(desired_workers=desired, start=start, stop=tuple(stop)), state
