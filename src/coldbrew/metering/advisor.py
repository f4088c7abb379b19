"""The advisor: what an endpoint's recorded traffic cost serverless, what the same hardware would
cost rented around the clock, where the two meet, which settings would change the bill, and how
many workers to reserve (the hybrid pattern: `metering/reserved.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coldbrew.metering.reserved import busy_profile, recommend
from coldbrew.prices import DEFAULT_RESERVED_DISCOUNT
from coldbrew.store.models import JobTiming, UsageKind

MONTH_S = 30 * 86_400
HOURS_PER_MONTH = MONTH_S / 3600


@dataclass(frozen=True)
class Traffic:
    """What one endpoint did over a window."""

    window_s: float
    requests: int
    seconds: dict[UsageKind, float]
    price_per_hour_usd: float
    hardware: str
    idle_timeout_s: float
    min_workers: int
    cold_starts: int
    # the jobs' (started, finished) wall-clock instants over the window [window_end -
    # window_s, window_end): the busy-worker profile the reserved recommendation is made from
    busy_intervals: Sequence[tuple[float, float]] = ()
    window_end: float | None = None
    per_worker: int = 1  # jobs one worker runs at once (concurrency, or batch size)
    reserved_discount: float = DEFAULT_RESERVED_DISCOUNT
    reserved_workers: int = 0  # what the spec reserves now


def advise(t: Traffic) -> dict[str, Any]:
    """The comparison and suggestions, each with the arithmetic behind it."""
    per_s = t.price_per_hour_usd / 3600
    rate = {UsageKind.RESERVED: per_s * (1 - t.reserved_discount)}
    usd = {kind: t.seconds.get(kind, 0.0) * rate.get(kind, per_s) for kind in UsageKind}
    total = sum(usd.values())
    scale = MONTH_S / t.window_s
    monthly = total * scale
    dedicated = t.price_per_hour_usd * HOURS_PER_MONTH
    per_request = total / t.requests if t.requests else 0.0
    break_even = dedicated / per_request / (MONTH_S / 3600) if per_request else None
    result: dict[str, Any] = {
        "window_s": t.window_s,
        "requests": t.requests,
        "cost_usd": {kind.value: round(v, 6) for kind, v in usd.items()}
        | {"total": round(total, 6)},
        "serverless_monthly_usd": round(monthly, 4),
        "dedicated_monthly_usd": round(dedicated, 2),
        "cheaper": "serverless" if monthly <= dedicated else "dedicated",
        "arithmetic": [
            f"serverless: ${total:.6f} over {t.window_s / 3600:g} h x {scale:.1f} = "
            f"${monthly:.4f}/month",
            f"dedicated {t.hardware}: ${t.price_per_hour_usd:g}/h x {HOURS_PER_MONTH:g} h = "
            f"${dedicated:.2f}/month, whatever the traffic",
        ],
        "suggestions": [],
    }
    if break_even is not None:
        result["break_even_requests_per_hour"] = round(break_even, 1)
        result["arithmetic"].append(
            f"break-even: ${dedicated:.2f} / ${per_request:.8f} per request / "
            f"{HOURS_PER_MONTH:g} h = {break_even:.1f} requests/hour (now "
            f"{t.requests / (t.window_s / 3600):.2f}/hour)"
        )
    result["suggestions"] = _suggest(t, usd, per_s, dedicated, monthly)
    if t.window_end is not None:
        result["reserved"] = reserved_advice(t)
    return result


def busy_intervals(timings: Sequence[JobTiming]) -> list[tuple[float, float]]:
    """The (started, finished) instants of jobs that ran on a worker: never-started jobs and
    cache hits kept no worker busy."""
    return [
        (t.started_at, t.finished_at) for t in timings if t.started_at is not None and not t.cached
    ]


def reserved_advice(t: Traffic) -> dict[str, Any]:
    """The cost-minimal reserved worker count for the window's busy workers, with its costs.

    Made from jobs' running intervals, not from usage rows: usage says what was paid, the jobs
    say how many workers were needed at each instant, which is what a reservation must cover.
    """
    assert t.window_end is not None
    start = t.window_end - t.window_s
    profile = busy_profile(t.busy_intervals, t.per_worker, start, t.window_end)
    pick = recommend(profile, t.price_per_hour_usd, t.reserved_discount)
    return {
        "count": pick.count,
        "current": t.reserved_workers,
        "monthly_usd": pick.monthly_usd,
        "serverless_monthly_usd": pick.serverless_monthly_usd,
        "saving_monthly_usd": round(pick.serverless_monthly_usd - pick.monthly_usd, 4),
        "discount": t.reserved_discount,
        "costs_usd": {str(n): cost for n, cost in pick.costs_usd.items()},
        "busy_workers_s": {str(k): round(s, 3) for k, s in profile.items()},
        "arithmetic": pick.arithmetic,
    }


def _suggest(
    t: Traffic, usd: dict[UsageKind, float], per_s: float, dedicated: float, monthly: float
) -> list[dict[str, str]]:
    tips = []
    idle, busy, cold = usd[UsageKind.IDLE], usd[UsageKind.BUSY], usd[UsageKind.COLD_START]
    scale = MONTH_S / t.window_s
    if idle > busy and t.idle_timeout_s > 60:
        new_timeout = max(30.0, t.idle_timeout_s / 4)
        saved = idle * (1 - new_timeout / t.idle_timeout_s) * scale
        tips.append(
            {
                "setting": f"idle_timeout_s={new_timeout:g}",
                "effect": f"idle keep-warm is ${idle:.6f} of ${idle + busy + cold:.6f}; a "
                f"{new_timeout:g} s window instead of {t.idle_timeout_s:g} s saves up to "
                f"${saved:.4f}/month, at the price of more cold starts after gaps longer than "
                f"{new_timeout:g} s",
            }
        )
    if t.cold_starts and t.requests and t.min_workers == 0 and t.cold_starts / t.requests > 0.2:
        warm_cost = per_s * MONTH_S
        tips.append(
            {
                "setting": "min_workers=1 (or warm_schedule / prewarm='auto' for the busy hours)",
                "effect": f"{t.cold_starts} of {t.requests} requests waited for a cold start; one "
                f"worker kept warm costs ${warm_cost:.2f}/month",
            }
        )
    if monthly > dedicated:
        tips.append(
            {
                "setting": f"min_workers=max_workers, or a dedicated {t.hardware}",
                "effect": f"at this traffic serverless costs ${monthly:.2f}/month, more than "
                f"${dedicated:.2f}/month for the same hardware rented around the clock",
            }
        )
    if not tips:
        tips.append({"setting": "none", "effect": "the current settings fit this traffic"})
    return tips
