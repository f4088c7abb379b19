"""A run from end to end: endpoint specs for a workload, prewarm history, the simulation, and
the summary numbers (cold-start rate, queue-wait percentiles, dollars, utilisation).

Specs are what a user would declare for each function: its hardware, a concurrency that keeps
the endpoint under `max_workers` at its offered load (rate x mean execution time, with 25%
headroom: powers of two, 1 for most), and coldbrew's defaults for everything else. A sweep
overrides one field (`idle_timeout_s`, `min_workers`, `prewarm`, ...) on every endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from coldbrew.control.warmth import TrafficProfile
from coldbrew.sim.cluster import GPU_NODE_SLOTS
from coldbrew.sim.engine import WALL_START_S, Simulation
from coldbrew.sim.model import Outcome, SimConfig
from coldbrew.sim.workload import EndpointLoad, Trace
from coldbrew.spec import DeploymentSpec

MAX_WORKERS = 1000  # DeploymentSpec's own cap
HEADROOM = 1.25


def concurrency_for(load: EndpointLoad, max_workers: int = MAX_WORKERS // 2) -> int:
    """The smallest power of two that serves the offered load with `max_workers` workers."""
    busy = load.rate_per_s * load.exec_mean_s * HEADROOM
    conc = 1
    while busy / conc > max_workers and conc < 1024:
        conc *= 2
    return conc


def specs_for(
    endpoints: Sequence[EndpointLoad], overrides: Mapping[str, Any] | None = None
) -> list[DeploymentSpec]:
    """One validated spec per endpoint, with `overrides` applied to all of them."""
    out = []
    for load in endpoints:
        fields: dict[str, Any] = {
            "name": load.name,
            "hardware": load.hardware,
            "concurrency": concurrency_for(load),
            "max_workers": MAX_WORKERS,
            "memory_mb": max(64, math.ceil(load.model_mb * 2)),
        }
        fields.update(overrides or {})
        out.append(DeploymentSpec(**fields))
    return out


def history(
    endpoints: Sequence[EndpointLoad], specs: Sequence[DeploymentSpec], seed: int, days: int = 1
) -> list[TrafficProfile | None]:
    """What a prewarming endpoint learned before t=0: Poisson counts per 300 s bucket at its
    rate, on the `days` before the simulated day (None where prewarm is off)."""
    rng = np.random.default_rng([seed, 3])
    out: list[TrafficProfile | None] = []
    first_day = int(WALL_START_S // 86_400) - days
    for load, spec in zip(endpoints, specs, strict=True):
        if spec.prewarm != "auto":
            out.append(None)
            continue
        profile = TrafficProfile()
        per_day = 86_400 // profile.bucket_s
        counts = rng.poisson(load.rate_per_s * profile.bucket_s, size=(days, per_day))
        for d, b in zip(*np.nonzero(counts), strict=True):
            profile.counts[(first_day + int(d), int(b))] = int(counts[d, b])
        out.append(profile)
    return out


def simulate(
    trace: Trace, config: SimConfig, overrides: Mapping[str, Any] | None = None
) -> Outcome:
    """Run `trace` with the default specs plus `overrides`."""
    specs = specs_for(trace.endpoints, overrides)
    profiles = history(trace.endpoints, specs, config.seed)
    return Simulation(trace, specs, config, profiles).run()


def summarise(out: Outcome) -> dict[str, Any]:
    """The report's numbers for one run (plain floats, rounded for stable printing)."""
    measured = out.arrival_s >= out.measure_from_s
    wait_s, cold = out.wait_s[measured], out.cold[measured]
    started = ~np.isnan(wait_s)
    waits = wait_s[started]
    requests = int(wait_s.size)
    window_s = out.duration_s - out.measure_from_s
    prices = out.prices_per_hour_usd
    billed_usd = sum(s * prices.get(h, 0.0) / 3600 for h, s in out.billed_s.items())
    node_usd = sum(
        s * out.node_slots.get(h, 1) * prices.get(h, 0.0) / 3600 for h, s in out.node_s.items()
    )
    billed_s = sum(out.billed_s.values())
    slot_s = sum(s * out.node_slots.get(h, 1) for h, s in out.node_s.items())
    return {
        "requests": requests,
        "completed_pct": _r(100 * started.mean() if requests else 0.0),
        "req_per_s": _r(requests / window_s),
        "cold_start_pct": _r(100 * cold.mean() if requests else 0.0),
        "wait_p50_ms": _r(1000 * _pct(waits, 50)),
        "wait_p99_ms": _r(1000 * _pct(waits, 99)),
        "wait_mean_ms": _r(1000 * float(waits.mean()) if waits.size else 0.0),
        "usd_per_1k_req": _r(1000 * billed_usd / requests if requests else 0.0, 6),
        "billed_usd": _r(billed_usd, 4),
        "node_usd": _r(node_usd, 4),
        "billed_worker_s": _r(billed_s, 1),
        "node_slot_s": _r(slot_s, 1),
        "billed_over_node_pct": _r(100 * billed_s / slot_s if slot_s else 0.0),
        "peak_nodes": out.peak_nodes,
        "starts": out.starts,
        "decide_calls": out.decide_calls,
    }


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else 0.0


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def initial_nodes(
    endpoints: Sequence[EndpointLoad], node_slots: Mapping[str, int], gpu_slots: int
) -> dict[str, int]:
    """Nodes for the offered load when the run starts (a cluster already sized for its
    traffic): per class, a worker per endpoint plus the workers its load keeps busy."""
    workers: dict[str, int] = {}
    for load in endpoints:
        busy = load.rate_per_s * load.exec_mean_s * HEADROOM / concurrency_for(load)
        workers[load.hardware] = workers.get(load.hardware, 0) + max(1, math.ceil(busy))
    return {hw: -(-n // node_slots.get(hw, gpu_slots)) for hw, n in sorted(workers.items())}


def sized(config: SimConfig, endpoints: Sequence[EndpointLoad]) -> SimConfig:
    """`config` with its initial nodes sized for `endpoints` (see `initial_nodes`)."""
    return replace(
        config, initial_nodes=initial_nodes(endpoints, config.node_slots, GPU_NODE_SLOTS)
    )
