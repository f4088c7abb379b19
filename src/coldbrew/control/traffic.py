"""Which version a new job goes to: the one the caller pinned, else a weighted pick from the
endpoint's traffic split, else its current version.

Pure parsing and choice (tested as tables) plus `TrafficRouter`, the gateway's in-memory copy
of every split, reloaded whenever the catalog changes (deploy, delete, `coldbrew traffic`,
rollback, a canary taken back). The pick is deterministic per job id (a hash, not a shared
random stream), so it is reproducible in tests and the same job id always lands on the same
version on every gateway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from coldbrew.errors import InvalidRequest, NotFound
from coldbrew.store.models import Endpoint, TrafficSplit, Version, VersionState

#: The request header that pins a job to a version number (RunPod clients never send it).
PIN_HEADER = "x-coldbrew-version"
_PINNED_NAME = re.compile(r"^(?P<name>[^@]+)@(?P<number>[^@]*)\Z")


def _number(text: str, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(
            f"{where} {text!r} is not a version number",
            hint="use a positive number from `coldbrew versions NAME`, e.g. echo@3",
        )
    return int(text)


def parse_pin(path_name: str, header: str | None = None) -> tuple[str, int | None]:
    """The endpoint name and the pinned version number, if any.

    `echo@3` in the path or `X-Coldbrew-Version: 3` pin a job to version 3; both at once must
    agree. A plain name pins nothing, so RunPod clients work unchanged.
    """
    name, pinned = path_name, None
    match = _PINNED_NAME.match(path_name)
    if match:
        name, pinned = match["name"], _number(match["number"], "the path's version")
    if header is not None and header.strip():
        from_header = _number(header.strip(), "X-Coldbrew-Version")
        if pinned is not None and pinned != from_header:
            raise InvalidRequest(
                f"the path pins version {pinned} and X-Coldbrew-Version pins {from_header}",
                hint="pin one version, in the path (name@N) or in the header",
            )
        pinned = from_header
    return name, pinned


def pinned_version(endpoint: str, number: int, versions: Sequence[Version]) -> Version:
    """The endpoint's version `number`; 404 naming the versions it has."""
    for version in versions:
        if version.number == number:
            return version
    have = ", ".join(str(v.number) for v in sorted(versions, key=lambda v: v.number))
    raise NotFound(
        f"endpoint {endpoint!r} has no version {number}",
        hint=f"its versions are {have}; `coldbrew versions {endpoint}` lists them",
    )


def draw_for(job_id: str) -> float:
    """A number in [0, 1) fixed by the job id: the same job lands on the same version."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(weights: Mapping[int, int], draw: float) -> int:
    """The version whose cumulative share (in version id order) covers `draw` in [0, 1)."""
    live = [(vid, pct) for vid, pct in sorted(weights.items()) if pct > 0]
    total = sum(pct for _, pct in live)
    point = draw * total
    for vid, pct in live:
        if point < pct:
            return vid
        point -= pct
    return live[-1][0]


def check_weights(
    endpoint: str, requested: Mapping[int, int], versions: Sequence[Version]
) -> dict[int, int]:
    """Shares by version number → shares by version id; a 400 that says what to fix unless
    every number names a version of this endpoint, every share is 0-100 and they sum to 100."""
    by_number = {v.number: v for v in versions}
    have = ", ".join(str(n) for n in sorted(by_number))
    unknown = sorted(set(requested) - set(by_number))
    if unknown:
        raise InvalidRequest(
            f"endpoint {endpoint!r} has no version {', '.join(map(str, unknown))}",
            hint=f"its versions are {have}",
        )
    bad = {n: pct for n, pct in requested.items() if not 0 <= pct <= 100}
    if bad:
        raise InvalidRequest(
            f"shares must be 0-100 percent: got {bad}", hint="e.g. 3=90 4=10 (no negatives)"
        )
    if sum(requested.values()) != 100:
        raise InvalidRequest(
            f"shares must sum to 100: {dict(requested)} sums to {sum(requested.values())}",
            hint="e.g. 3=90 4=10",
        )
    return {by_number[n].id: pct for n, pct in requested.items()}


def parse_weights(raw: Any) -> dict[int, int]:
    """`{"3": 90, "4": 10}` (a JSON body) → `{3: 90, 4: 10}`; a 400 for anything else."""
    if not isinstance(raw, dict) or not raw:
        raise InvalidRequest(
            "'weights' must map version numbers to percent", hint='send {"weights": {"3": 90}}'
        )
    weights: dict[int, int] = {}
    for key, value in raw.items():
        number = _number(str(key), "the weight's version")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(
                f"the share of version {number} must be a whole percent, not {value!r}",
                hint="e.g. 3=90 4=10",
            )
        weights[number] = value
    return weights


def version_state(version: Version, endpoint: Endpoint, split: TrafficSplit | None) -> VersionState:
    """What the version does now: current, canary (a share but not current), rolled back
    (with a reason recorded) or retired."""
    if version.id == endpoint.current_version_id:
        return VersionState.CURRENT
    if split is not None and split.weights.get(version.id, 0) > 0:
        return VersionState.CANARY
    if version.rolled_back_at is not None:
        return VersionState.ROLLED_BACK
    return VersionState.RETIRED


def share_of(version: Version, endpoint: Endpoint, split: TrafficSplit | None) -> int:
    """The percent of new (unpinned) jobs the version gets."""
    if split is None:
        return 100 if version.id == endpoint.current_version_id else 0
    return split.weights.get(version.id, 0)


class TrafficRouter:
    """Every endpoint's split in memory, so admission reads nothing from the store to choose.

    `draw` maps a job id to [0, 1); inject another (a seeded `random.Random().random`
    ignoring its argument) in tests that want a different stream.
    """

    def __init__(self, draw: Callable[[str], float] = draw_for) -> None:
        self._draw = draw
        self._splits: dict[int, TrafficSplit] = {}

    def load(self, splits: Iterable[TrafficSplit]) -> None:
        """Replace the splits (after anything that changes them)."""
        self._splits = {s.endpoint_id: s for s in splits}

    def split(self, endpoint_id: int) -> TrafficSplit | None:
        return self._splits.get(endpoint_id)

    def choose(self, endpoint: Endpoint, job_id: str) -> int:
        """The version id a new, unpinned job of `endpoint` goes to."""
        split = self._splits.get(endpoint.id)
        if split is None:
            return endpoint.current_version_id
        return pick(split.weights, self._draw(job_id))

    def live(self, current_version_ids: Iterable[int]) -> set[int]:
        """The versions that get new jobs: every current version and every share above 0."""
        live = set(current_version_ids)
        for split in self._splits.values():
            live |= split.live
        return live

    def splits(self) -> list[TrafficSplit]:
        return list(self._splits.values())
