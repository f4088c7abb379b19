"""The synthetic workload reproduces the Azure Functions 2019 statistics it is calibrated to,
and the CSV loaders read both trace formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coldbrew.sim.traces import load_azure, load_simple
from coldbrew.sim.workload import Arrivals, EndpointLoad, azure_endpoints, generate, top_share

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sim"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rates_are_as_skewed_as_azure(seed: int) -> None:
    endpoints = azure_endpoints(1000, 10_000.0, seed)
    rates = np.array([e.rate_per_s for e in endpoints])
    assert rates.sum() == pytest.approx(10_000.0)
    # the paper: 18.6% of the apps carry 99.6% of the invocations
    assert top_share(rates, 0.186) > 0.97
    # a few % of the functions carry most invocations: the top 1% alone carry about half or more
    assert 0.4 < top_share(rates, 0.01) < 0.95
    # rates span ~8 orders of magnitude (1,000 draws reach most of that)
    assert np.log10(rates.max() / rates.min()) > 6
    # median function's mean execution time: the paper's lognormal fit has median 0.68 s
    median_exec = np.median([e.exec_mean_s for e in endpoints])
    assert 0.4 < median_exec < 1.1


def test_trigger_mix_follows_the_paper() -> None:
    endpoints = azure_endpoints(5000, 1000.0, 0)
    share = {kind: sum(e.arrivals is kind for e in endpoints) / len(endpoints) for kind in Arrivals}
    assert share[Arrivals.POISSON] == pytest.approx(0.55, abs=0.03)  # HTTP
    assert share[Arrivals.PERIODIC] == pytest.approx(0.156, abs=0.02)  # timers


def test_arrival_processes_have_their_burstiness() -> None:
    kinds = [Arrivals.POISSON, Arrivals.BURSTY, Arrivals.PERIODIC] * 10
    endpoints = tuple(EndpointLoad(f"e{i}", 10.0, k, 0.1) for i, k in enumerate(kinds))
    trace = generate(endpoints, 100.0, 3)
    cv: dict[Arrivals, list[float]] = {}
    for i, e in enumerate(endpoints):
        gaps = np.diff(trace.arrival_s[trace.endpoint == i])
        cv.setdefault(e.arrivals, []).append(gaps.std() / gaps.mean())
    assert np.median(cv[Arrivals.POISSON]) == pytest.approx(1.0, abs=0.1)
    assert np.median(cv[Arrivals.BURSTY]) > 1.5  # gamma gaps with CV 2
    assert max(cv[Arrivals.PERIODIC]) < 1e-6  # timers: a fixed period


def test_trace_is_sorted_and_counts_match_rates() -> None:
    endpoints = azure_endpoints(200, 500.0, 4)
    trace = generate(endpoints, 600.0, 4)
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert len(trace) / 600.0 == pytest.approx(500.0, rel=0.1)
    assert trace.arrival_s.max() < 600.0 and trace.duration_s.min() > 0


def test_azure_csv_loader_reads_per_minute_counts() -> None:
    trace = load_azure(
        FIXTURES / "azure_invocations.csv",
        durations=FIXTURES / "azure_durations.csv",
        minutes=(1, 5),
    )
    # the function with no invocations in the window is dropped
    assert len(trace.endpoints) == 3
    assert len(trace) == 9 + 5 + 29
    by_name = {e.name: (i, e) for i, e in enumerate(trace.endpoints)}
    i, http = by_name["fn-f00aa11bb22cc33d"]
    assert http.arrivals is Arrivals.POISSON and http.exec_mean_s == pytest.approx(0.25)
    minutes = np.floor(trace.arrival_s[trace.endpoint == i] / 60).astype(int)
    assert np.bincount(minutes, minlength=5).tolist() == [3, 0, 5, 1, 0]
    _, timer = by_name["fn-f11ee22ff33aa44b"]
    assert timer.arrivals is Arrivals.PERIODIC and timer.rate_per_s == pytest.approx(5 / 300)
    window = load_azure(FIXTURES / "azure_invocations.csv", minutes=(2, 3), max_functions=1)
    assert len(window.endpoints) == 1 and len(window) == 5  # the busiest in minutes 2-3: 5+1


def test_simple_csv_loader() -> None:
    trace = load_simple(FIXTURES / "requests.csv")
    assert [e.name for e in trace.endpoints] == ["fn-embed", "fn-digits"]
    assert trace.arrival_s.tolist() == [0.0, 0.5, 2.0, 3.25]
    assert trace.endpoint.tolist() == [0, 0, 1, 0]
    assert trace.duration_s.tolist() == [0.1, 0.2, 1.5, 0.3]
