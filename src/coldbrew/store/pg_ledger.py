"""PostgreSQL side of the ledger: usage seconds per (worker, kind, hour), budgets, alerts.

As in SQLite, '' stands for the whole account in the budget tables' endpoint column (a primary
key column cannot be NULL); the protocol's `None` is mapped at this edge. Usage is added with
`ON CONFLICT … DO UPDATE`, so two gateways metering into one hour row add up.
"""

from __future__ import annotations

from typing import Any

import orjson

from coldbrew.store.ledger import Ledger
from coldbrew.store.models import Budget, UsageKind, UsageRow
from coldbrew.store.pg_db import Migration, Part, PostgresDatabase

PART = Part(
    "ledger",
    (
        Migration(
            "usage, budgets and budget alerts",
            (
                "CREATE TABLE usage (worker_id TEXT NOT NULL, account TEXT NOT NULL, "
                "endpoint TEXT NOT NULL, version_id BIGINT NOT NULL, hardware TEXT NOT NULL, "
                "kind TEXT NOT NULL, hour_start DOUBLE PRECISION NOT NULL, "
                "seconds DOUBLE PRECISION NOT NULL, PRIMARY KEY (worker_id, kind, hour_start))",
                "CREATE INDEX usage_hour ON usage (hour_start)",
                "CREATE TABLE budgets (account TEXT NOT NULL, endpoint TEXT NOT NULL, "
                "monthly_usd DOUBLE PRECISION NOT NULL, alerts_pct TEXT NOT NULL, "
                "hard_stop BOOLEAN NOT NULL, webhook_url TEXT, "
                "created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (account, endpoint))",
                "CREATE TABLE budget_alerts (account TEXT NOT NULL, endpoint TEXT NOT NULL, "
                "period TEXT NOT NULL, threshold INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (account, endpoint, period, threshold))",
            ),
        ),
    ),
)


class PostgresLedger(PostgresDatabase, Ledger):
    """`Ledger` on PostgreSQL."""

    # usage
    async def add_usage(self, rows: list[UsageRow]) -> None:
        await self._many(
            "INSERT INTO usage (worker_id, account, endpoint, version_id, hardware, kind, "
            "hour_start, seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (worker_id, kind, hour_start) DO UPDATE SET "
            "seconds = usage.seconds + excluded.seconds",
            [
                (
                    r.worker_id,
                    r.account,
                    r.endpoint,
                    r.version_id,
                    r.hardware,
                    r.kind.value,
                    r.hour_start,
                    r.seconds,
                )
                for r in rows
            ],
        )

    async def usage(self, since: float, account: str | None) -> list[UsageRow]:
        rows = await self._all(
            "SELECT worker_id, account, endpoint, version_id, hardware, kind, hour_start, seconds "
            "FROM usage WHERE hour_start >= $1 AND ($2::text IS NULL OR account = $2) "
            "ORDER BY hour_start",
            since,
            account,
        )
        return [UsageRow(r[0], r[1], r[2], r[3], r[4], UsageKind(r[5]), r[6], r[7]) for r in rows]

    # budgets
    async def set_budget(self, budget: Budget) -> None:
        await self._exec(
            "INSERT INTO budgets (account, endpoint, monthly_usd, alerts_pct, hard_stop, "
            "webhook_url, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (account, endpoint) DO UPDATE SET monthly_usd = excluded.monthly_usd, "
            "alerts_pct = excluded.alerts_pct, hard_stop = excluded.hard_stop, "
            "webhook_url = excluded.webhook_url, created_at = excluded.created_at",
            budget.account,
            budget.endpoint or "",
            budget.monthly_usd,
            orjson.dumps(budget.alerts_pct).decode(),
            budget.hard_stop,
            budget.webhook_url,
            budget.created_at,
        )

    async def budgets(self, account: str | None) -> list[Budget]:
        rows = await self._all(
            "SELECT account, endpoint, monthly_usd, alerts_pct, hard_stop, webhook_url, "
            "created_at FROM budgets WHERE ($1::text IS NULL OR account=$1) "
            'ORDER BY account COLLATE "C", endpoint COLLATE "C"',
            account or None,
        )
        return [
            Budget(r[0], r[1] or None, r[2], orjson.loads(r[3]), bool(r[4]), r[5], r[6])
            for r in rows
        ]

    async def record_alert(
        self, account: str, endpoint: str | None, period: str, threshold: int, at: float
    ) -> bool:
        changed = await self._exec(
            "INSERT INTO budget_alerts (account, endpoint, period, threshold, at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            account,
            endpoint or "",
            period,
            threshold,
            at,
        )
        return changed == 1

    async def alerts(self, account: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT endpoint, period, threshold, at FROM budget_alerts WHERE account=$1 "
            "ORDER BY at",
            account,
        )
        return [
            {"endpoint": r[0] or None, "period": r[1], "thresholdPct": r[2], "at": r[3]}
            for r in rows
        ]
