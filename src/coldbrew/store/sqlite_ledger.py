"""SQLite side of the ledger: usage seconds per (worker, kind, hour), budgets and their alerts.

In the budget tables '' stands for the whole account in the endpoint column (a primary key
column cannot be NULL); the protocol's `None` is mapped at this edge.
"""

from __future__ import annotations

from typing import Any

import orjson

from coldbrew.store.ledger import Ledger
from coldbrew.store.models import Budget, UsageKind, UsageRow
from coldbrew.store.sqlite_db import Migration, Part, SQLiteDatabase, ddl

PART = Part(
    "ledger",
    (
        Migration(
            "usage, budgets and budget alerts as of 0.x",
            (
                ddl(
                    "CREATE TABLE IF NOT EXISTS usage (worker_id TEXT NOT NULL, "
                    "account TEXT NOT NULL, endpoint TEXT NOT NULL, version_id INTEGER NOT NULL, "
                    "hardware TEXT NOT NULL, kind TEXT NOT NULL, hour_start REAL NOT NULL, "
                    "seconds REAL NOT NULL, PRIMARY KEY (worker_id, kind, hour_start))",
                    "CREATE INDEX IF NOT EXISTS usage_hour ON usage(hour_start)",
                    "CREATE TABLE IF NOT EXISTS budgets (account TEXT NOT NULL, "
                    "endpoint TEXT NOT NULL, monthly_usd REAL NOT NULL, "
                    "alerts_pct TEXT NOT NULL, hard_stop INTEGER NOT NULL, webhook_url TEXT, "
                    "created_at REAL NOT NULL, PRIMARY KEY (account, endpoint))",
                    "CREATE TABLE IF NOT EXISTS budget_alerts (account TEXT NOT NULL, "
                    "endpoint TEXT NOT NULL, period TEXT NOT NULL, threshold INTEGER NOT NULL, "
                    "at REAL NOT NULL, PRIMARY KEY (account, endpoint, period, threshold))",
                ),
            ),
        ),
    ),
)


class SQLiteLedger(SQLiteDatabase, Ledger):
    """`Ledger` on the store's database."""

    # usage
    async def add_usage(self, rows: list[UsageRow]) -> None:
        self._db.executemany(
            "INSERT INTO usage (worker_id, account, endpoint, version_id, hardware, kind, "
            "hour_start, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (worker_id, kind, hour_start) DO UPDATE SET "
            "seconds = seconds + excluded.seconds",
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
        sql = (
            "SELECT worker_id, account, endpoint, version_id, hardware, kind, hour_start, seconds "
            "FROM usage WHERE hour_start >= ?"
        )
        params: list[Any] = [since]
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        return [
            UsageRow(r[0], r[1], r[2], r[3], r[4], UsageKind(r[5]), r[6], r[7])
            for r in self._all(sql + " ORDER BY hour_start", params)
        ]

    # budgets
    async def set_budget(self, budget: Budget) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO budgets (account, endpoint, monthly_usd, alerts_pct, "
            "hard_stop, webhook_url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                budget.account,
                budget.endpoint or "",
                budget.monthly_usd,
                orjson.dumps(budget.alerts_pct).decode(),
                int(budget.hard_stop),
                budget.webhook_url,
                budget.created_at,
            ),
        )

    async def budgets(self, account: str | None) -> list[Budget]:
        sql = "SELECT * FROM budgets" + (" WHERE account=?" if account else "")
        rows = self._all(sql + " ORDER BY account, endpoint", [account] if account else [])
        return [
            Budget(
                r["account"],
                r["endpoint"] or None,
                r["monthly_usd"],
                orjson.loads(r["alerts_pct"]),
                bool(r["hard_stop"]),
                r["webhook_url"],
                r["created_at"],
            )
            for r in rows
        ]

    async def record_alert(
        self, account: str, endpoint: str | None, period: str, threshold: int, at: float
    ) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO budget_alerts (account, endpoint, period, threshold, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (account, endpoint or "", period, threshold, at),
        )
        return cursor.rowcount == 1

    async def alerts(self, account: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT endpoint, period, threshold, at FROM budget_alerts WHERE account=? ORDER BY at",
            [account],
        )
        return [
            {"endpoint": r[0] or None, "period": r[1], "thresholdPct": r[2], "at": r[3]}
            for r in rows
        ]
