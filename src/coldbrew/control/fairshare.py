"""Fair sharing of hardware slots between accounts: the arithmetic, as pure functions.

When accounts compete for the slots of one hardware class, each gets a share in proportion to
its weight (an account setting, 1 by default) and never more than it asks for; what one account
does not use goes to the others (weighted max-min fairness, computed by water-filling). The
scheduler hands a free slot to the account furthest below its share, and when no slot is free
it takes one back from an account above its share: an idle worker first, else a busy one, which
finishes the job it runs before it exits. Within one account, placement stays what it was:
the least recently used idle worker of another endpoint gives way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_WEIGHT = 1.0


def fair_shares(
    capacity: int,
    demands: Mapping[str, int],
    weights: Mapping[str, float],
    held: Mapping[str, int] | None = None,
    last_held: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Whole slots per account: weighted max-min fair shares of `capacity`.

    An account never gets more than its demand; capacity an account cannot use is divided
    among the others by weight. Slots left over from rounding go to the largest fractional
    parts, so the shares add up to `min(capacity, total demand)`. Ties among equal fractions:

    - an account whose whole share is 0 (fewer slots than accounts wanting them) first, the
      one holding fewer slots now, then the one that has gone longest without a slot
      (`last_held`, monotonic): the leftover slot takes turns, so no account waits for another
      account's whole backlog (a fixed order, by name, starved the last account on a 1-slot
      node for as long as the first had work);
    - an account with a whole share of at least 1 keeps the leftover it holds (taking it
      back would move a slot back and forth on every job without making anyone wait less);
    - then the lower weight-normalised share, then the name: the answer does not depend on
      dict order.
    """
    held, last_held = held or {}, last_held or {}
    shares = dict.fromkeys(demands, 0)
    active = {a for a, d in demands.items() if d > 0}
    left = Fraction(max(0, capacity))
    exact: dict[str, Fraction] = {}
    while active:
        total = sum(_weight(weights, a) for a in active)
        ideal = {a: left * _weight(weights, a) / total for a in active}
        sated = {a for a in active if demands[a] <= ideal[a]}
        if not sated:
            exact = ideal
            break
        for account in sated:
            shares[account] = demands[account]
            left -= demands[account]
        active -= sated
    for account, value in exact.items():
        shares[account] = int(value)
    spare = int(sum(exact.values(), Fraction(0))) - sum(int(v) for v in exact.values())

    def turn(a: str) -> tuple[Fraction, bool, int, float, Fraction, str]:
        starved, now_held = int(exact[a]) == 0, held.get(a, 0)
        return (
            -(exact[a] - int(exact[a])),
            not starved,
            now_held if starved else -now_held,
            last_held.get(a, float("-inf")) if starved else 0.0,
            exact[a] / _weight(weights, a),
            a,
        )

    ranked = sorted(exact, key=turn)
    for account in ranked[:spare]:
        shares[account] += 1
    return shares


def _weight(weights: Mapping[str, float], account: str) -> Fraction:
    weight = weights.get(account, DEFAULT_WEIGHT)
    return Fraction(weight) if weight > 0 else Fraction(DEFAULT_WEIGHT)


def next_claimant(
    held: Mapping[str, int],
    wanting: Iterable[str],
    weights: Mapping[str, float],
    shares: Mapping[str, int] | None = None,
) -> str | None:
    """The account that gets the next slot: one below its share (when `shares` are given)
    before one at or above it, then the one holding the fewest slots per unit of weight (then
    the fewest slots, then by name), so slots handed out one at a time go round-robin,
    weighted, and a slot freed for an account goes to that account."""

    def order(a: str) -> tuple[bool, Fraction, int, str]:
        taken = held.get(a, 0)
        sated = shares is not None and taken >= shares.get(a, 0)
        return (sated, Fraction(taken) / _weight(weights, a), taken, a)

    candidates = sorted(wanting, key=order)
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class Holder:
    """A live worker holding a slot, as placement needs to see it."""

    id: str
    account: str
    version_id: int
    idle: bool  # ready and running nothing
    active_jobs: int
    last_used: float  # monotonic; least recently used goes first
    spare: bool  # its version can lose it (retired, or more workers than min_workers)
    fresh: bool = False  # has not finished a job yet


def pick_victim(
    holders: Iterable[Holder],
    account: str,
    version_id: int,
    held: Mapping[str, int],
    shares: Mapping[str, int],
) -> Holder | None:
    """Which worker gives its slot to `account`'s version `version_id`, or None.

    - an idle worker of another endpoint of the same account, or of an account above its
      share, least recently used first (what eviction always did within one account);
    - if `account` is below its share: a busy worker of the account furthest above its
      share (fewest running jobs, then least recently used, first); it is drained, so its
      job finishes first.

    A worker whose version needs it (`min_workers`) is never taken, and a version never
    takes its own worker. Another account's worker that has not finished a job yet is not
    taken either: shares that take turns would otherwise hand a slot back and forth on every
    tick, each worker evicted while it starts.
    """

    def over(a: str) -> int:
        return held.get(a, 0) - shares.get(a, 0)

    candidates = [
        h
        for h in holders
        if h.spare and h.version_id != version_id and not (h.fresh and h.account != account)
    ]
    idle = [h for h in candidates if h.idle and (h.account == account or over(h.account) > 0)]
    if idle:
        return min(idle, key=lambda h: (h.last_used, h.id))
    if held.get(account, 0) >= shares.get(account, 0):
        return None
    busy = [h for h in candidates if h.account != account and over(h.account) > 0]
    if not busy:
        return None
    return min(busy, key=lambda h: (-over(h.account), h.active_jobs, h.last_used, h.id))


def interleave(by_account: Mapping[str, list[int]], rotation: int) -> list[tuple[str, list[int]]]:
    """Accounts in dispatch order, each with its versions in the order they take turns.

    Both lists start `rotation` places further on than the sorted order, so over successive
    ticks every account and every endpoint gets to go first.
    """
    accounts = sorted(by_account)
    if not accounts:
        return []
    start = rotation % len(accounts)
    order = accounts[start:] + accounts[:start]
    result = []
    for account in order:
        vids = sorted(by_account[account])
        shift = rotation % len(vids) if vids else 0
        result.append((account, vids[shift:] + vids[:shift]))
    return result
