"""Which version a new job goes to: pins, weighted picks, the checks on a split (tables)."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from coldbrew.control.traffic import (
    TrafficRouter,
    check_weights,
    draw_for,
    parse_pin,
    parse_weights,
    pick,
    pinned_version,
    share_of,
    version_state,
)
from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.store.models import Endpoint, TrafficSplit, Version, VersionState


def version(number: int, vid: int | None = None, rolled_back: bool = False) -> Version:
    return Version(
        id=vid if vid is not None else 100 + number,
        endpoint_id=7,
        account="acme",
        endpoint="echo",
        number=number,
        artifact_sha="sha",
        module="app",
        class_name="Echo",
        spec={},
        input_schema={},
        created_at=1.0,
        rolled_back_at=5.0 if rolled_back else None,
        rollback_reason="errors" if rolled_back else None,
    )


VERSIONS = [version(1), version(2), version(3)]
ENDPOINT = Endpoint(id=7, account="acme", name="echo", current_version_id=102, created_at=1.0)


@pytest.mark.parametrize(
    ("path", "header", "expected"),
    [
        pytest.param("echo", None, ("echo", None), id="plain: RunPod unchanged"),
        pytest.param("echo@3", None, ("echo", 3), id="path suffix"),
        pytest.param("echo", "3", ("echo", 3), id="header"),
        pytest.param("echo", " 12 ", ("echo", 12), id="header with spaces"),
        pytest.param("echo", "", ("echo", None), id="empty header pins nothing"),
        pytest.param("echo@3", "3", ("echo", 3), id="both agree"),
    ],
)
def test_parse_pin(path: str, header: str | None, expected: tuple[str, int | None]) -> None:
    assert parse_pin(path, header) == expected


@pytest.mark.parametrize(
    ("path", "header", "message"),
    [
        pytest.param("echo@", None, "'' is not a version number", id="empty suffix"),
        pytest.param("echo@v3", None, "'v3' is not a version number", id="v prefix"),
        pytest.param("echo@0", None, "'0' is not a version number", id="zero"),
        pytest.param("echo", "-1", "X-Coldbrew-Version '-1'", id="negative header"),
        pytest.param("echo@3", "4", "pins version 3 and X-Coldbrew-Version pins 4", id="disagree"),
    ],
)
def test_bad_pins_say_what_to_send(path: str, header: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_pin(path, header)


def test_a_pin_to_a_missing_version_names_the_versions_there_are() -> None:
    assert pinned_version("echo", 2, VERSIONS) is VERSIONS[1]
    with pytest.raises(NotFound, match="no version 9") as raised:
        pinned_version("echo", 9, VERSIONS)
    assert "its versions are 1, 2, 3" in raised.value.hint


@pytest.mark.parametrize(
    ("weights", "draw", "expected"),
    [
        pytest.param({1: 90, 2: 10}, 0.0, 1, id="bottom"),
        pytest.param({1: 90, 2: 10}, 0.8999, 1, id="just under 90"),
        pytest.param({1: 90, 2: 10}, 0.9, 2, id="at 90"),
        pytest.param({1: 90, 2: 10}, 0.99999, 2, id="top"),
        pytest.param({2: 10, 1: 90}, 0.5, 1, id="order of the mapping does not matter"),
        pytest.param({1: 0, 2: 100}, 0.0, 2, id="zero share never picked"),
        pytest.param({1: 50, 2: 0, 3: 50}, 0.5, 3, id="zero in the middle skipped"),
    ],
)
def test_pick(weights: dict[int, int], draw: float, expected: int) -> None:
    assert pick(weights, draw) == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_90_10_split_over_2000_jobs_is_within_2_points(seed: int) -> None:
    rng = random.Random(seed)
    router = TrafficRouter(draw=lambda _job_id: rng.random())
    router.load([TrafficSplit(7, {101: 90, 102: 10}, None, 1.0)])
    counts = Counter(router.choose(ENDPOINT, "any") for _ in range(2000))
    assert abs(counts[102] / 2000 - 0.10) < 0.02


def test_the_default_draw_is_fixed_per_job_id_and_spreads() -> None:
    ids = [str(uuid.UUID(int=n)) for n in range(4000)]
    assert [draw_for(i) for i in ids[:5]] == [draw_for(i) for i in ids[:5]]
    router = TrafficRouter()
    router.load([TrafficSplit(7, {101: 90, 102: 10}, None, 1.0)])
    share = sum(router.choose(ENDPOINT, i) == 102 for i in ids) / len(ids)
    assert abs(share - 0.10) < 0.02


def test_without_a_split_every_job_goes_to_the_current_version() -> None:
    router = TrafficRouter()
    assert {router.choose(ENDPOINT, str(n)) for n in range(50)} == {102}
    assert router.live([102, 205]) == {102, 205}


def test_the_live_set_is_every_share_above_zero() -> None:
    router = TrafficRouter()
    router.load([TrafficSplit(7, {101: 90, 102: 10, 103: 0}, None, 1.0)])
    assert router.live([102, 205]) == {101, 102, 205}


@pytest.mark.parametrize(
    ("requested", "message", "hint"),
    [
        pytest.param({2: 90, 9: 10}, "has no version 9", "its versions are 1, 2, 3", id="unknown"),
        pytest.param({2: 110, 3: -10}, "must be 0-100", "no negatives", id="negative"),
        pytest.param({2: 90, 3: 20}, "sums to 110", "e.g. 3=90 4=10", id="over 100"),
        pytest.param({2: 50}, "sums to 50", "e.g. 3=90 4=10", id="under 100"),
    ],
)
def test_a_bad_split_says_what_to_fix(requested: dict[int, int], message: str, hint: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as raised:
        check_weights("echo", requested, VERSIONS)
    assert hint in raised.value.hint


def test_a_good_split_is_keyed_by_version_id() -> None:
    assert check_weights("echo", {2: 90, 3: 10}, VERSIONS) == {102: 90, 103: 10}


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        pytest.param({"3": 90, "4": 10}, {3: 90, 4: 10}, id="json"),
        pytest.param({"3": 90.5}, None, id="fraction"),
        pytest.param({"3": True}, None, id="bool"),
        pytest.param({"x": 100}, None, id="not a number"),
        pytest.param({}, None, id="empty"),
        pytest.param([3, 90], None, id="list"),
    ],
)
def test_parse_weights(raw: object, ok: dict[int, int] | None) -> None:
    if ok is not None:
        assert parse_weights(raw) == ok
    else:
        with pytest.raises(InvalidRequest):
            parse_weights(raw)


def test_state_and_share() -> None:
    split = TrafficSplit(7, {102: 90, 103: 10}, None, 1.0)
    old, rolled = version(1), version(4, rolled_back=True)
    assert version_state(VERSIONS[1], ENDPOINT, split) is VersionState.CURRENT
    assert version_state(VERSIONS[2], ENDPOINT, split) is VersionState.CANARY
    assert version_state(old, ENDPOINT, split) is VersionState.RETIRED
    assert version_state(rolled, ENDPOINT, None) is VersionState.ROLLED_BACK
    assert [share_of(v, ENDPOINT, split) for v in VERSIONS] == [0, 90, 10]
    assert [share_of(v, ENDPOINT, None) for v in VERSIONS] == [0, 100, 0]
