"""Validation: one Poisson endpoint with exponential service on a fixed pool of workers is an
M/M/c queue, and the simulator must agree with the Erlang-C formula."""

from __future__ import annotations

import pytest

from coldbrew.sim.erlang import check_erlang, erlang_c


def test_erlang_c_formula_on_known_cases() -> None:
    # M/M/1: P(wait) = rho, mean wait = rho / (mu - lambda)
    assert erlang_c(0.5, 1.0, 1) == pytest.approx((0.5, 1.0))
    # M/M/2 with a = 1: C = 1/3, Wq = C / (2 mu - lambda)
    assert erlang_c(1.0, 1.0, 2) == pytest.approx((1 / 3, 1 / 3))
    with pytest.raises(ValueError, match="utilisation"):
        erlang_c(4.0, 1.0, 4)


@pytest.mark.parametrize(
    ("servers", "arrival_per_s", "seed"), [(4, 3.0, 0), (4, 3.0, 1), (8, 6.0, 2)]
)
def test_simulated_mmc_matches_erlang_c(servers: int, arrival_per_s: float, seed: int) -> None:
    check = check_erlang(servers=servers, arrival_per_s=arrival_per_s, seed=seed)
    assert check.requests > 250_000
    assert check.p_wait_error < 0.05
    assert check.mean_error < 0.05
