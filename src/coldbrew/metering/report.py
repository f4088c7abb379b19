"""Usage reports: billable seconds split into cold start, busy and idle, and their price."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from coldbrew.store.models import UsageKind, UsageRow

GROUPINGS = ("endpoint", "account", "hardware", "version")


def job_cost_usd(
    prices_per_hour_usd: dict[str, float], hardware: str, execution_s: float, share: int = 1
) -> float:
    """What one job costs (the one place it is computed): its execution time at its
    hardware's rate; a job in a batch of `share` pays its share of the batch's time."""
    return execution_s * prices_per_hour_usd.get(hardware, 0.0) / 3600.0 / share


def usage_report(
    rows: list[UsageRow], by: str, prices_per_hour_usd: dict[str, float]
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
        usd = row.seconds * prices_per_hour_usd.get(row.hardware, 0.0) / 3600.0
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
