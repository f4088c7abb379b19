"""Validation against queueing theory: an M/M/c queue simulated with the engine (one Poisson
endpoint, exponential service, `c` fixed workers: min_workers = max_workers = c, up at t=0)
must match the Erlang-C formula for P(wait > 0) and the mean wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coldbrew.sim.engine import Simulation
from coldbrew.sim.model import SimConfig
from coldbrew.sim.workload import Arrivals, EndpointLoad, Trace
from coldbrew.spec import DeploymentSpec


def erlang_c(arrival_per_s: float, service_per_s: float, servers: int) -> tuple[float, float]:
    """(P(wait > 0), mean wait in seconds) of an M/M/c queue; needs load below capacity."""
    offered = arrival_per_s / service_per_s
    rho = offered / servers
    if rho >= 1:
        raise ValueError(f"utilisation {rho:.3f} >= 1: the queue grows without bound")
    # sum_{k<c} a^k/k!, computed in a stable running product
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    last = term * offered / servers / (1 - rho)
    p_wait = last / (total + last)
    return p_wait, p_wait / (servers * service_per_s - arrival_per_s)


@dataclass(frozen=True)
class ErlangCheck:
    """Simulated against formula, for one M/M/c setting."""

    servers: int
    arrival_per_s: float
    service_per_s: float
    requests: int
    p_wait_sim: float
    p_wait_formula: float
    mean_wait_sim_s: float
    mean_wait_formula_s: float

    @property
    def mean_error(self) -> float:
        return abs(self.mean_wait_sim_s / self.mean_wait_formula_s - 1)

    @property
    def p_wait_error(self) -> float:
        return abs(self.p_wait_sim / self.p_wait_formula - 1)


def mmc_trace(arrival_per_s: float, service_per_s: float, duration_s: float, seed: int) -> Trace:
    """Poisson arrivals and exponential service times for one endpoint."""
    rng = np.random.default_rng([seed, 4])
    count = rng.poisson(arrival_per_s * duration_s)
    arrival = np.sort(rng.uniform(0.0, duration_s, size=count))
    service = rng.exponential(1.0 / service_per_s, size=count)
    load = EndpointLoad("mmc", arrival_per_s, Arrivals.POISSON, 1.0 / service_per_s)
    return Trace((load,), arrival, np.zeros(count, dtype=np.int64), service)


def check_erlang(
    servers: int = 4,
    arrival_per_s: float = 3.0,
    service_per_s: float = 1.0,
    duration_s: float = 100_000.0,
    seed: int = 0,
) -> ErlangCheck:
    """Simulate the M/M/c queue (first 5% of requests dropped as warm-up) and compare."""
    trace = mmc_trace(arrival_per_s, service_per_s, duration_s, seed)
    spec = DeploymentSpec(name="mmc", min_workers=servers, max_workers=servers)
    # no ticks needed past t=0: the pool is fixed, so the policy only ever holds it
    config = SimConfig(duration_s=duration_s, warm_start=True, tick_interval_s=duration_s)
    out = Simulation(trace, [spec], config).run()
    waits = out.wait_s[len(out.wait_s) // 20 :]
    p_wait, mean_wait = erlang_c(arrival_per_s, service_per_s, servers)
    return ErlangCheck(
        servers=servers,
        arrival_per_s=arrival_per_s,
        service_per_s=service_per_s,
        requests=int(waits.size),
        p_wait_sim=float((waits > 0).mean()),
        p_wait_formula=p_wait,
        mean_wait_sim_s=float(waits.mean()),
        mean_wait_formula_s=mean_wait,
    )


def describe(check: ErlangCheck) -> str:
    """One line for the report."""
    return (
        f"Erlang-C M/M/{check.servers} (lambda={check.arrival_per_s:g}/s, "
        f"mu={check.service_per_s:g}/s, {check.requests:,} requests): "
        f"P(wait>0) sim {check.p_wait_sim:.4f} vs formula {check.p_wait_formula:.4f} "
        f"({100 * check.p_wait_error:.1f}% off); mean wait sim "
        f"{1000 * check.mean_wait_sim_s:.1f} ms vs formula "
        f"{1000 * check.mean_wait_formula_s:.1f} ms ({100 * check.mean_error:.1f}% off)"
        f"{'' if math.isfinite(check.mean_error) else ' (no wait)'}"
    )
