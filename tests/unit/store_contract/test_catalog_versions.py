"""The catalog contract, part two: traffic splits, canaries taken back, rollbacks."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.store_contract.helpers import deploy

from coldbrew.store.models import CanaryRule, TrafficSplit, Version

RULE = CanaryRule(window_s=60.0, max_error_rate=0.05, max_p99_ms=500.0, min_jobs=10)


def three_versions(store: Any) -> list[Version]:
    """acme/echo at versions 1, 2 and 3 (3 current)."""
    store.create_account("acme", "whsec_acme", 1.0)
    return [deploy(store, artifact_sha=f"sha-{n}") for n in (1, 2, 3)]


def current(store: Any) -> int:
    endpoint = store.get_endpoint("acme", "echo")
    return int(endpoint.current_version_id)


def test_no_split_until_one_is_set(store: Any) -> None:
    v1, _, _ = three_versions(store)
    assert store.get_split(v1.endpoint_id) is None
    assert store.list_splits() == []


def test_a_split_round_trips_with_its_rule(store: Any) -> None:
    _, v2, v3 = three_versions(store)
    split = store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 50.0)
    assert split == TrafficSplit(v2.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 50.0)
    assert store.get_split(v2.endpoint_id) == split
    assert store.list_splits() == [split]
    assert split.live == {v2.id, v3.id}


def test_the_largest_share_becomes_current(store: Any) -> None:
    _, v2, v3 = three_versions(store)  # 3 was just deployed: 3=10 makes it the canary
    store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, None, 50.0)
    assert current(store) == v2.id


def test_a_tie_keeps_the_current_version(store: Any) -> None:
    v1, _, v3 = three_versions(store)
    store.set_split(v1.endpoint_id, {v1.id: 50, v3.id: 50}, None, 50.0)
    assert current(store) == v3.id


def test_one_version_at_100_is_no_split(store: Any) -> None:
    v1, v2, v3 = three_versions(store)
    store.set_split(v1.endpoint_id, {v2.id: 90, v3.id: 10}, None, 50.0)
    assert store.set_split(v1.endpoint_id, {v1.id: 100, v3.id: 0}, None, 60.0) is None
    assert store.get_split(v1.endpoint_id) is None
    assert current(store) == v1.id


def test_a_new_deploy_drops_the_split(store: Any) -> None:
    _, v2, v3 = three_versions(store)
    store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, None, 50.0)
    v4 = deploy(store, artifact_sha="sha-4")
    assert store.get_split(v2.endpoint_id) is None
    assert current(store) == v4.id


def test_a_deleted_endpoint_has_no_split(store: Any) -> None:
    _, v2, v3 = three_versions(store)
    store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, None, 50.0)
    store.delete_endpoint("acme", "echo", 70.0)
    assert store.list_splits() == []
    assert store.get_split(v2.endpoint_id) is None


def test_ending_a_canary_moves_its_share_and_records_why(store: Any) -> None:
    v1, v2, v3 = three_versions(store)
    store.set_split(v1.endpoint_id, {v1.id: 80, v2.id: 10, v3.id: 10}, RULE, 50.0)
    assert store.end_canary(v1.endpoint_id, v3.id, "error rate 0.5 > 0.05", 60.0) is True
    split = store.get_split(v1.endpoint_id)
    assert split.weights == {v1.id: 90, v2.id: 10, v3.id: 0}
    assert split.rule == RULE
    ended = store.get_version(v3.id)
    assert (ended.rolled_back_at, ended.rollback_reason) == (60.0, "error rate 0.5 > 0.05")
    assert current(store) == v1.id


def test_ending_the_last_canary_leaves_no_split(store: Any) -> None:
    _, v2, v3 = three_versions(store)
    store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 50.0)
    assert store.end_canary(v2.endpoint_id, v3.id, "p99 900 ms > 500 ms", 60.0) is True
    assert store.get_split(v2.endpoint_id) is None
    assert current(store) == v2.id


@pytest.mark.parametrize("which", ["current", "no share", "again"])
def test_ending_a_canary_twice_or_the_current_changes_nothing(store: Any, which: str) -> None:
    v1, v2, v3 = three_versions(store)
    store.set_split(v1.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 50.0)
    target = {"current": v2.id, "no share": v1.id, "again": v3.id}[which]
    if which == "again":
        store.end_canary(v1.endpoint_id, v3.id, "first", 60.0)
    before = store.get_split(v1.endpoint_id)
    assert store.end_canary(v1.endpoint_id, target, "second", 70.0) is False
    assert store.get_split(v1.endpoint_id) == before
    assert store.get_version(target).rollback_reason in (None, "first")


def test_a_share_again_clears_the_rollback_mark(store: Any) -> None:
    _, v2, v3 = three_versions(store)
    store.set_split(v2.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 50.0)
    store.end_canary(v2.endpoint_id, v3.id, "errors", 60.0)
    store.set_split(v2.endpoint_id, {v2.id: 95, v3.id: 5}, RULE, 70.0)
    again = store.get_version(v3.id)
    assert (again.rolled_back_at, again.rollback_reason) == (None, None)


def test_rollback_makes_an_older_version_current(store: Any) -> None:
    v1, v2, v3 = three_versions(store)
    back = store.rollback(v1.endpoint_id, v2.id, "coldbrew rollback", 80.0)
    assert back == store.get_version(v2.id)
    assert back.number == 2 and back.rolled_back_at is None
    assert current(store) == v2.id
    left = store.get_version(v3.id)
    assert (left.rolled_back_at, left.rollback_reason) == (80.0, "coldbrew rollback")


def test_rollback_drops_a_split_and_clears_the_targets_mark(store: Any) -> None:
    v1, v2, v3 = three_versions(store)
    store.rollback(v1.endpoint_id, v2.id, "to 2", 80.0)
    store.set_split(v1.endpoint_id, {v2.id: 90, v3.id: 10}, RULE, 90.0)
    back = store.rollback(v1.endpoint_id, v3.id, "forward to 3", 95.0)
    assert back.rolled_back_at is None
    assert store.get_split(v1.endpoint_id) is None
    assert store.get_version(v2.id).rollback_reason == "forward to 3"
    assert store.get_version(v1.id).rolled_back_at is None


def test_a_redeploy_after_rollback_compares_with_the_rolled_back_to_version(store: Any) -> None:
    v1, v2, _ = three_versions(store)
    store.rollback(v1.endpoint_id, v2.id, "to 2", 80.0)
    again = deploy(store, artifact_sha="sha-2")
    assert again == store.get_version(v2.id)  # identical to the current version: no new one
    newer = deploy(store, artifact_sha="sha-3")
    assert newer.number == 4


def test_steering_a_deleted_endpoint_is_a_key_error(store: Any) -> None:
    v1, v2, _ = three_versions(store)
    store.delete_endpoint("acme", "echo", 70.0)
    with pytest.raises(KeyError):
        store.set_split(v1.endpoint_id, {v1.id: 50, v2.id: 50}, None, 80.0)
    with pytest.raises(KeyError):
        store.rollback(v1.endpoint_id, v1.id, "x", 80.0)
