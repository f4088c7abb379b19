"""Fair sharing of hardware slots as tables: demands and weights in, slots per account out;
who gets the next free slot; which worker gives its slot back."""

from __future__ import annotations

import pytest

from coldbrew.control.fairshare import (
    Holder,
    fair_shares,
    interleave,
    next_claimant,
    pick_victim,
)


@pytest.mark.parametrize(
    ("capacity", "demands", "weights", "expected"),
    [
        pytest.param(4, {"a": 10_000, "b": 1}, {}, {"a": 3, "b": 1}, id="backlog-vs-one-job"),
        pytest.param(4, {"a": 10, "b": 10}, {}, {"a": 2, "b": 2}, id="equal-split"),
        pytest.param(4, {"a": 10}, {}, {"a": 4}, id="alone-takes-everything"),
        pytest.param(4, {"a": 1, "b": 1}, {}, {"a": 1, "b": 1}, id="under-capacity"),
        pytest.param(4, {"a": 0, "b": 9}, {}, {"a": 0, "b": 4}, id="no-demand-no-share"),
        pytest.param(6, {"a": 9, "b": 9}, {"a": 2.0}, {"a": 4, "b": 2}, id="weight-two"),
        pytest.param(4, {"a": 9, "b": 9}, {"a": 3.0}, {"a": 3, "b": 1}, id="weight-three"),
        pytest.param(
            6, {"a": 9, "b": 1, "c": 9}, {}, {"a": 3, "b": 1, "c": 2}, id="spare-share-shared"
        ),
        pytest.param(
            5, {"a": 9, "b": 9, "c": 9}, {}, {"a": 2, "b": 2, "c": 1}, id="remainder-by-name"
        ),
        pytest.param(
            5, {"a": 9, "b": 9, "c": 9}, {"c": 1.5}, {"a": 2, "b": 1, "c": 2}, id="weighted-rest"
        ),
        pytest.param(
            3, {"a": 9, "b": 9, "c": 9, "d": 9}, {}, {"a": 1, "b": 1, "c": 1, "d": 0}, id="scarce"
        ),
        pytest.param(0, {"a": 3}, {}, {"a": 0}, id="no-slots"),
        pytest.param(2, {"a": 5, "b": 5}, {"a": 0.0}, {"a": 1, "b": 1}, id="bad-weight-is-one"),
    ],
)
def test_fair_shares(
    capacity: int, demands: dict[str, int], weights: dict[str, float], expected: dict[str, int]
) -> None:
    shares = fair_shares(capacity, demands, weights)
    assert shares == expected
    assert sum(shares.values()) == min(capacity, sum(demands.values()))


@pytest.mark.parametrize(
    ("held", "wanting", "weights", "expected"),
    [
        pytest.param({"a": 4, "b": 0}, ["a", "b"], {}, "b", id="fewest-slots-first"),
        pytest.param({"a": 2, "b": 1}, ["a", "b"], {"a": 3.0}, "a", id="per-unit-of-weight"),
        pytest.param({"a": 1, "b": 1}, ["b", "a"], {}, "a", id="tie-by-name"),
        pytest.param({"a": 0, "b": 0}, ["b"], {}, "b", id="only-those-wanting"),
        pytest.param({}, [], {}, None, id="nobody"),
    ],
)
def test_next_claimant(
    held: dict[str, int], wanting: list[str], weights: dict[str, float], expected: str | None
) -> None:
    assert next_claimant(held, wanting, weights) == expected


def holder(
    worker_id: str,
    account: str,
    version_id: int,
    *,
    idle: bool = False,
    jobs: int = 1,
    last_used: float = 0.0,
    spare: bool = True,
) -> Holder:
    return Holder(worker_id, account, version_id, idle, 0 if idle else jobs, last_used, spare)


A_BUSY = [holder(f"a{i}", "a", 1, last_used=float(i)) for i in range(4)]


@pytest.mark.parametrize(
    ("holders", "account", "version_id", "held", "shares", "expected"),
    [
        pytest.param(
            A_BUSY, "b", 2, {"a": 4}, {"a": 3, "b": 1}, "a0", id="busy-over-share-is-drained"
        ),
        pytest.param(A_BUSY, "a", 1, {"a": 4}, {"a": 4}, None, id="never-its-own-version"),
        pytest.param(
            [holder("b0", "b", 2, idle=True), *A_BUSY[:3]],
            "a",
            1,
            {"a": 3, "b": 1},
            {"a": 3, "b": 1},
            None,
            id="idle-within-share-is-kept",
        ),
        pytest.param(
            [holder("a9", "a", 3, idle=True, last_used=5.0), *A_BUSY[:3]],
            "a",
            1,
            {"a": 4},
            {"a": 4},
            "a9",
            id="same-account-idle-lru",
        ),
        pytest.param(
            [holder("c0", "c", 4, idle=True), *A_BUSY],
            "b",
            2,
            {"a": 4, "c": 1},
            {"a": 2, "b": 1, "c": 1},
            "a0",
            id="busy-over-share-before-idle-within",
        ),
        pytest.param(
            [*A_BUSY[:3], holder("a3", "a", 1, idle=True, last_used=9.0)],
            "b",
            2,
            {"a": 4},
            {"a": 3, "b": 1},
            "a3",
            id="idle-over-share-first",
        ),
        pytest.param(
            [holder("a0", "a", 1, spare=False)],
            "b",
            2,
            {"a": 1},
            {"a": 0, "b": 1},
            None,
            id="min-workers-kept",
        ),
        pytest.param(
            [holder("b0", "b", 2), holder("c0", "c", 3)],
            "a",
            1,
            {"b": 1, "c": 1},
            {"a": 1, "b": 1, "c": 0},
            "c0",
            id="the-account-over-its-share",
        ),
        pytest.param(
            A_BUSY, "b", 2, {"a": 4, "b": 1}, {"a": 3, "b": 1}, None, id="at-share-takes-nothing"
        ),
    ],
)
def test_pick_victim(
    holders: list[Holder],
    account: str,
    version_id: int,
    held: dict[str, int],
    shares: dict[str, int],
    expected: str | None,
) -> None:
    victim = pick_victim(holders, account, version_id, held, shares)
    assert (victim.id if victim else None) == expected


@pytest.mark.parametrize(
    ("by_account", "rotation", "expected"),
    [
        pytest.param({"a": [1, 2], "b": [3]}, 0, [("a", [1, 2]), ("b", [3])], id="sorted"),
        pytest.param({"a": [1, 2], "b": [3]}, 1, [("b", [3]), ("a", [2, 1])], id="rotated"),
        pytest.param({}, 3, [], id="empty"),
    ],
)
def test_interleave(
    by_account: dict[str, list[int]], rotation: int, expected: list[tuple[str, list[int]]]
) -> None:
    assert interleave(by_account, rotation) == expected
