"""Usage reports: billable seconds split into cold start, busy, idle and reserved, and their price.

Reserved seconds are priced at the hardware's reserved rate (the hourly price less its
discount); every other kind at the full per-second rate. `row_usd` is the one place a usage
row becomes dollars, so reports, charts and budgets agree to the cent."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from coldbrew.prices import DEFAULT_RESERVED_DISCOUNT
from coldbrew.store.models import UsageKind, UsageRow

GROUPINGS = ("endpoint", "account", "hardware", "version")


def job_cost_usd(
    prices_per_hour_usd: dict[str, float], hardware: str, execution_s: float, share: int = 1
) -> float:
    """What one job costs (the one place it is computed): its execution time at its
    hardware's rate; a job in a batch of `share` pays its share of the batch's time."""
    return execution_s * prices_per_hour_usd.get(hardware, 0.0) / 3600.0 / share


def kind_price_per_hour_usd(
    prices_per_hour_usd: Mapping[str, float],
    reserved_discount: Mapping[str, float] | None,
    hardware: str,
    kind: UsageKind,
) -> float:
    """The hourly price of one `kind` second's slot on `hardware`: reserved seconds get the
    hardware's reserved discount (the default for classes not configured)."""
    price = prices_per_hour_usd.get(hardware, 0.0)
    if kind is UsageKind.RESERVED:
        price *= 1 - (reserved_discount or {}).get(hardware, DEFAULT_RESERVED_DISCOUNT)
    return price


def row_usd(
    row: UsageRow,
    prices_per_hour_usd: Mapping[str, float],
    reserved_discount: Mapping[str, float] | None = None,
) -> float:
    """What one usage row costs."""
    price = kind_price_per_hour_usd(prices_per_hour_usd, reserved_discount, row.hardware, row.kind)
    return row.seconds * price / 3600.0


def usage_report(
    rows: list[UsageRow],
    by: str,
    prices_per_hour_usd: Mapping[str, float],
    reserved_discount: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One line per group with seconds and dollars per kind, summed exactly from `rows`.

    Dollars are computed per row and summed, so the totals equal the recorded segments priced
    one by one; rounding happens only for display.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        key = {
            "endpoint": f"{row.account}/{row.endpoint}",
            "account": row.account,
            "hardware": row.hardware,
            "version": f"{row.account}/{row.endpoint}@{row.version_id}",
        }[by]
        usd = row_usd(row, prices_per_hour_usd, reserved_discount)
        group = groups[key]
        group[f"{row.kind.value}_s"] += row.seconds
        group[f"{row.kind.value}_usd"] += usd
    report = []
    for key in sorted(groups):
        group = groups[key]
        line: dict[str, Any] = {by: key}
        for kind in UsageKind:
            line[f"{kind.value}_s"] = round(group[f"{kind.value}_s"], 3)
            line[f"{kind.value}_usd"] = round(group[f"{kind.value}_usd"], 9)
        line["total_s"] = round(sum(group[f"{k.value}_s"] for k in UsageKind), 3)
        line["total_usd"] = round(sum(group[f"{k.value}_usd"] for k in UsageKind), 9)
        report.append(line)
    return report


def usage_csv(by: str, report: list[dict[str, Any]]) -> str:
    """The report as CSV: one row per group, the grouping column first."""
    buffer = io.StringIO()
    columns = [by] + [k for k in (report[0] if report else {}) if k != by]
    if not report:
        columns += [f"{k.value}_{u}" for k in UsageKind for u in ("s", "usd")]
        columns += ["total_s", "total_usd"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report)
    return buffer.getvalue()
