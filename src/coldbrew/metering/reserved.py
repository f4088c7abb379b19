"""How many workers to reserve: the hybrid pattern's arithmetic.

A reserved worker is billed every hour of the window at a discounted rate, busy or idle; work
beyond the reserved workers bursts onto per-second workers at the full rate. Adding the N-th
reserved worker costs `reserved_rate x window` and saves the full-rate seconds during which at
least N workers were busy, so the cheapest N is the largest one whose worker is busy at least
`1 - discount` of the time (the newsvendor rule). `recommend` computes the whole cost curve
instead of trusting the rule, so ties and odd profiles come out right and the answer shows its
arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

MONTH_S = 30 * 86_400


def busy_profile(
    intervals: Iterable[tuple[float, float]], per_worker: int, start: float, end: float
) -> dict[int, float]:
    """Seconds of [start, end) during which exactly k workers were busy, for each k.

    `intervals` are jobs' (started, finished) instants; `per_worker` jobs share one worker
    (concurrency or batch size), so r running jobs keep ceil(r / per_worker) workers busy.
    """
    if end <= start:
        raise ValueError("the window must end after it starts")
    events: list[tuple[float, int]] = []
    for began, ended in intervals:
        began, ended = max(began, start), min(ended, end)
        if ended > began:
            events += [(began, 1), (ended, -1)]
    events.sort()
    profile: dict[int, float] = {}
    running, now = 0, start
    for instant, step in events:
        busy = math.ceil(running / max(per_worker, 1))
        profile[busy] = profile.get(busy, 0.0) + instant - now
        running, now = running + step, instant
    profile[0] = profile.get(0, 0.0) + end - now
    return {k: s for k, s in sorted(profile.items()) if s > 0}


@dataclass(frozen=True)
class Reservation:
    """The cost-minimal reserved worker count for a recorded busy profile, per month."""

    count: int
    monthly_usd: float  # reserved workers plus the burst beyond them, at that count
    serverless_monthly_usd: float  # nothing reserved: every busy second at the full rate
    costs_usd: dict[int, float] = field(default_factory=dict)  # monthly cost per reserved count
    arithmetic: list[str] = field(default_factory=list)


def recommend(profile: dict[int, float], price_per_hour_usd: float, discount: float) -> Reservation:
    """The reserved count N that minimises `N x reserved + burst(N)` over the profile's window.

    `profile` is `busy_profile`'s answer; `discount` is the reserved rate's discount (0.25 for a
    rate 25% under the per-second price). Busy seconds only: idle keep-warm and cold starts of
    the burst workers are left out, which favours serverless slightly (say so in the answer).
    """
    if not 0 <= discount < 1:
        raise ValueError(f"a reserved discount is a fraction in [0, 1), not {discount!r}")
    window_s = sum(profile.values())
    if window_s <= 0:
        raise ValueError("the busy profile covers no time")
    scale = MONTH_S / window_s
    full_per_s = price_per_hour_usd / 3600
    reserved_per_s = full_per_s * (1 - discount)
    top = max(profile)
    costs: dict[int, float] = {}
    for n in range(top + 1):
        burst_s = sum((k - n) * s for k, s in profile.items() if k > n)
        costs[n] = round((n * reserved_per_s * window_s + burst_s * full_per_s) * scale, 4)
    best = min(costs, key=lambda n: (costs[n], n))
    at_least = {
        n: sum(s for k, s in profile.items() if k >= n) / window_s for n in range(1, top + 1)
    }
    lines = [
        f"reserved rate ${price_per_hour_usd * (1 - discount):g}/h ({discount:.0%} off "
        f"${price_per_hour_usd:g}/h): a reserved worker pays off when it would be busy at least "
        f"{1 - discount:.0%} of the time",
        *(f"worker {n}: busy {share:.1%} of the window" for n, share in at_least.items()),
        *(f"reserve {n}: ${cost:.2f}/month" for n, cost in costs.items()),
        "busy seconds only: burst workers' cold starts and keep-warm would add to serverless",
    ]
    return Reservation(best, costs[best], costs[0], costs, lines)
