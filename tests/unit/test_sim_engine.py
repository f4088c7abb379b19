"""The simulator drives the real autoscaler: scale from zero on the first request, back to
zero after the keep-warm window, nodes added when the cluster is full; and a seed fixes every
number it prints."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from coldbrew.control import autoscaler
from coldbrew.sim import engine
from coldbrew.sim.engine import Simulation
from coldbrew.sim.latency import ColdStarts, Latency
from coldbrew.sim.model import SimConfig
from coldbrew.sim.scenario import history, simulate, sized, summarise
from coldbrew.sim.workload import Arrivals, EndpointLoad, Trace, azure_endpoints, generate
from coldbrew.spec import DeploymentSpec

FIXED = ColdStarts(
    local_fork=Latency(0.01, 0),
    agent_rpc=Latency(0.003, 0),
    spawn=Latency(1.0, 0),
    gpu_setup=Latency(3.0, 0),
    node_provision=Latency(60.0, 0),
    fork_per_mb_s=0.0,
)


def _trace(times: list[float], durations: list[float]) -> Trace:
    load = EndpointLoad("echo", 1.0, Arrivals.POISSON, 0.5, model_mb=0.0)
    n = len(times)
    return Trace((load,), np.array(times), np.zeros(n, dtype=np.int64), np.array(durations))


def test_the_real_decide_scales_from_zero_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []

    def spy(obs: Any, spec: Any, state: Any) -> Any:
        out = autoscaler.decide(obs, spec, state)
        calls.append((obs, out[0]))
        return out

    monkeypatch.setattr(engine, "decide", spy)
    spec = DeploymentSpec(name="echo", idle_timeout_s=30.0)
    trace = _trace([10.0, 12.0, 13.0], [0.2, 0.2, 0.2])
    config = SimConfig(duration_s=100.0, cold=FIXED, drain_s=100.0, tick_interval_s=0.1)
    out = Simulation(trace, [spec], config).run()
    # first request: nothing is up, so the policy asks for one worker (a fresh spawn, 1 s)
    first = calls[0]
    assert first[0].queued == 1 and first[0].workers == () and first[1].start == 1
    assert out.starts == {"local_fork": 0, "agent_fork": 0, "spawn": 1, "gpu": 0}
    assert out.cold.tolist() == [True, False, False]
    assert out.wait_s.tolist() == pytest.approx([1.1, 0.0, 0.0])  # next tick, then the spawn
    # back to zero: the policy stops the worker once it idled for idle_timeout_s
    stops = [(obs.now, d) for obs, d in calls if d.stop]
    assert len(stops) == 1
    last_done = 13.0 + 0.2
    assert last_done + 30.0 <= stops[0][0] <= last_done + 30.0 + 0.1 + 1e-9
    assert stops[0][1].desired_workers == 0
    billed = out.billed_s["cpu"]
    assert billed == pytest.approx(stops[0][0] - 10.0, abs=0.11)


def test_min_workers_keep_a_worker_up() -> None:
    spec = DeploymentSpec(name="echo", idle_timeout_s=1.0, min_workers=1)
    trace = _trace([20.0], [0.1])
    out = Simulation(trace, [spec], SimConfig(duration_s=60.0, cold=FIXED)).run()
    assert out.cold.tolist() == [False] and out.wait_s[0] == 0.0
    assert out.billed_s["cpu"] == pytest.approx(60.0)  # up the whole run, never stopped


def test_a_full_cluster_waits_for_a_new_node() -> None:
    spec = DeploymentSpec(name="echo", concurrency=1)
    trace = _trace([1.0, 1.0, 1.0], [100.0, 100.0, 100.0])
    config = SimConfig(
        duration_s=200.0, cold=FIXED, node_slots={"cpu": 2}, initial_nodes={"cpu": 1}
    )
    out = Simulation(trace, [spec], config).run()
    # the next tick asks for three workers; node 0 has two slots: a spawn (which leaves a
    # template there) and a local fork; the third waits 60 s for a node, then spawns there
    assert out.starts == {"local_fork": 1, "agent_fork": 0, "spawn": 2, "gpu": 0}
    assert out.wait_s.tolist() == pytest.approx([0.11, 1.1, 0.1 + 60.0 + 1.0])
    assert out.cold.all()
    assert out.peak_nodes == {"cpu": 2}


def test_skipping_no_op_decisions_changes_nothing() -> None:
    endpoints = azure_endpoints(60, 100.0, 5)
    trace = generate(endpoints, 120.0, 5)
    config = sized(SimConfig(duration_s=120.0, warmup_s=20.0, seed=5), endpoints)
    for overrides in ({}, {"idle_timeout_s": 2}):
        fast = simulate(trace, config, overrides)
        full = simulate(trace, replace(config, exhaustive=True), overrides)
        assert full.decide_calls > fast.decide_calls
        assert np.array_equal(fast.wait_s, full.wait_s, equal_nan=True)
        assert summarise(fast) | {"decide_calls": 0} == summarise(full) | {"decide_calls": 0}


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    def run(seed: int) -> tuple[dict[str, Any], bytes]:
        endpoints = azure_endpoints(80, 150.0, seed)
        trace = generate(endpoints, 90.0, seed)
        config = sized(SimConfig(duration_s=90.0, warmup_s=30.0, seed=seed), endpoints)
        out = simulate(trace, config, {"idle_timeout_s": 5})
        return summarise(out), out.wait_s.tobytes() + trace.arrival_s.tobytes()

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first[0]["cold_start_pct"] > 0
    assert other[1] != first[1]


def test_prewarm_auto_warms_up_from_yesterdays_traffic() -> None:
    load = EndpointLoad("echo", 0.05, Arrivals.POISSON, 0.2, model_mb=0.0)
    trace = Trace((load,), np.array([30.0]), np.zeros(1, dtype=np.int64), np.array([0.2]))
    config = SimConfig(duration_s=60.0, cold=FIXED)
    for prewarm, cold in (("off", True), ("auto", False)):
        spec = DeploymentSpec(name="echo", prewarm=prewarm)
        out = Simulation(trace, [spec], config, history([load], [spec], seed=0)).run()
        # yesterday's profile expects ~21 arrivals in the next 7 minutes: a worker is up first
        assert out.cold.tolist() == [cold]
