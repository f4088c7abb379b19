"""A synthetic workload calibrated to the Azure Functions 2019 traces, and the trace it yields.

Calibration (Shahrad et al., "Serverless in the Wild", USENIX ATC'20; numbers as published):

- Invocation rates span about 8 orders of magnitude and are very skewed: 18.6% of the apps
  carry 99.6% of the invocations. A lognormal per-function rate with sigma 3.5 (natural log)
  reproduces both: the top 18.6% of a lognormal(sigma) holds 1 - Phi(0.893 - sigma) = 99.6% of
  the mass at sigma = 3.54, and +-2.6 sigma spans 10^8. The top 1% then carry ~85-90%.
- Triggers (share of functions): HTTP 55%, timer 15.6%, queue 15.2%, orchestration 6.9%,
  storage 2.8%, event 2.2%, others 2.2%. Timers fire periodically (inter-arrival CV ~0);
  HTTP arrivals are Poisson (CV 1); queue, event, storage, orchestration and others are bursty
  (the paper finds many apps with CV > 1): a gamma renewal process with CV 2.
- Average execution time per function is lognormal with log-mean -0.38 and sigma 2.36
  (seconds; median 0.68 s), the paper's own fit; we truncate it to [10 ms, 60 s] (most
  functions average well under a minute). One invocation's duration is lognormal around its
  function's mean with sigma 0.5 (an assumption: the paper gives per-function min/avg/max,
  not the spread).
- Memory: 90% of apps never use more than 400 MB; the model's size drives the fork latency,
  drawn lognormal with median 60 MB, sigma 1.2, clipped to [1 MB, 4 GB].

Everything is drawn from one `numpy.random.Generator(seed)`, so a seed fixes the trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

RATE_SIGMA = 3.5
EXEC_LOG_MEAN = -0.38
EXEC_LOG_SIGMA = 2.36
EXEC_MIN_S, EXEC_MAX_S = 0.01, 60.0
INVOCATION_SIGMA = 0.5
BURSTY_CV = 2.0
TIMER_PERIODS_S = (1.0, 10.0, 60.0, 300.0, 3600.0)


class Arrivals(StrEnum):
    """How one endpoint's requests arrive."""

    PERIODIC = "periodic"  # timer trigger: every period, with a random phase
    POISSON = "poisson"  # HTTP: exponential gaps
    BURSTY = "bursty"  # queue/event/storage: gamma gaps with CV > 1


#: (trigger, share of functions, how it arrives), from the paper's trigger table.
TRIGGERS: tuple[tuple[str, float, Arrivals], ...] = (
    ("http", 0.550, Arrivals.POISSON),
    ("timer", 0.156, Arrivals.PERIODIC),
    ("queue", 0.152, Arrivals.BURSTY),
    ("orchestration", 0.069, Arrivals.BURSTY),
    ("storage", 0.028, Arrivals.BURSTY),
    ("event", 0.022, Arrivals.BURSTY),
    ("others", 0.023, Arrivals.BURSTY),
)

#: Hardware mix of the synthetic endpoints (an assumption: mostly CPU, a GPU minority).
HARDWARE_MIX: tuple[tuple[str, float], ...] = (("cpu", 0.85), ("L4", 0.1), ("H100", 0.05))


@dataclass(frozen=True)
class EndpointLoad:
    """One endpoint of the workload: how requests arrive and how long they run."""

    name: str
    rate_per_s: float
    arrivals: Arrivals
    exec_mean_s: float
    hardware: str = "cpu"
    model_mb: float = 60.0
    trigger: str = "http"


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival: instants (s), endpoint indices and durations (s)."""

    endpoints: tuple[EndpointLoad, ...]
    arrival_s: np.ndarray
    endpoint: np.ndarray
    duration_s: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def azure_endpoints(n: int, total_rate_per_s: float, seed: int) -> tuple[EndpointLoad, ...]:
    """`n` endpoints whose rates, triggers and execution times follow the Azure statistics,
    scaled so that the rates sum to `total_rate_per_s`."""
    rng = np.random.default_rng([seed, 1])
    shares = np.array([s for _, s, _ in TRIGGERS])
    kinds = rng.choice(len(TRIGGERS), size=n, p=shares / shares.sum())
    rates = rng.lognormal(0.0, RATE_SIGMA, size=n)
    periodic = np.array([TRIGGERS[k][2] is Arrivals.PERIODIC for k in kinds])
    # a timer fires on a round period; it carries little of the load, as in the paper
    periods = rng.choice(TIMER_PERIODS_S, size=n)
    timer_rates = np.where(periodic, 1.0 / periods, 0.0)
    rest = total_rate_per_s - timer_rates.sum()
    other = np.where(periodic, 0.0, rates)
    rates = timer_rates + other * (max(rest, 0.0) / other.sum())
    exec_mean = np.clip(
        rng.lognormal(EXEC_LOG_MEAN, EXEC_LOG_SIGMA, size=n), EXEC_MIN_S, EXEC_MAX_S
    )
    hw_names = [h for h, _ in HARDWARE_MIX]
    hw = rng.choice(len(hw_names), size=n, p=[p for _, p in HARDWARE_MIX])
    model_mb = np.clip(rng.lognormal(math.log(60.0), 1.2, size=n), 1.0, 4096.0)
    width = len(str(n - 1))
    return tuple(
        EndpointLoad(
            name=f"fn-{i:0{width}d}",
            rate_per_s=float(rates[i]),
            arrivals=TRIGGERS[kinds[i]][2],
            exec_mean_s=float(exec_mean[i]),
            hardware=hw_names[hw[i]],
            model_mb=float(model_mb[i]),
            trigger=TRIGGERS[kinds[i]][0],
        )
        for i in range(n)
    )


def _times(load: EndpointLoad, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, duration_s) for one endpoint, drawn in one vectorised step."""
    rate = load.rate_per_s
    if rate <= 0:
        return np.empty(0)
    if load.arrivals is Arrivals.PERIODIC:
        period = 1.0 / rate
        return np.arange(rng.uniform(0, period), duration_s, period)
    if load.arrivals is Arrivals.POISSON:
        count = rng.poisson(rate * duration_s)
        return np.sort(rng.uniform(0.0, duration_s, size=count))
    shape = 1.0 / BURSTY_CV**2  # gamma gaps: mean 1/rate, CV = 1/sqrt(shape)
    expected = rate * duration_s
    chunk = int(expected + 6 * BURSTY_CV * math.sqrt(expected) + 16)
    # start in steady state: the first gap is a fraction of a gap
    gaps = rng.gamma(shape, 1.0 / (rate * shape), size=chunk)
    gaps[0] *= rng.uniform()
    times = np.cumsum(gaps)
    while times[-1] < duration_s:
        more = np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), size=chunk)) + times[-1]
        times = np.concatenate([times, more])
    return times[times < duration_s]


def generate(endpoints: tuple[EndpointLoad, ...], duration_s: float, seed: int) -> Trace:
    """The requests of `endpoints` over `duration_s`, merged in arrival order."""
    rng = np.random.default_rng([seed, 2])
    parts = [_times(load, duration_s, rng) for load in endpoints]
    counts = np.array([p.size for p in parts], dtype=np.int64)
    arrival = np.concatenate(parts) if parts else np.empty(0)
    index = np.repeat(np.arange(len(endpoints), dtype=np.int64), counts)
    means = np.array([e.exec_mean_s for e in endpoints])[index]
    # lognormal around the function's mean: mu chosen so E[duration] = exec_mean_s
    mu = np.log(means) - INVOCATION_SIGMA**2 / 2
    duration = np.exp(mu + INVOCATION_SIGMA * rng.standard_normal(arrival.size))
    order = np.argsort(arrival, kind="stable")
    return Trace(endpoints, arrival[order], index[order], duration[order])


def top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of all invocations carried by the busiest `fraction` of functions."""
    ordered = np.sort(np.asarray(counts, dtype=float))[::-1]
    top = max(1, round(fraction * ordered.size))
    total = ordered.sum()
    return float(ordered[:top].sum() / total) if total else 0.0
