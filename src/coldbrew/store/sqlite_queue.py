"""SQLite parts of fair sharing: queue counters kept by triggers, and per-account settings.

Counting a deep queue on every scheduler tick (`COUNT(*) … GROUP BY version_id`) cost time in
proportion to the queue: 17,000 queued jobs drained at ~60 jobs/s. Triggers on `jobs` keep one
counter row per version instead, in the same transaction as the change, whichever statement
moves a job in or out of `IN_QUEUE` (create, claim, cancel, requeue, retry, purge, expiry), so
the counts cannot drift from the rows; the oldest queued job is one index seek per version.
The counters are rebuilt from the rows once when the database is opened (a database written by
an older coldbrew, or edited by hand, is counted correctly from then on).
"""

from __future__ import annotations

import sqlite3

from coldbrew.store.models import Account, QueueStat

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_counts (
    version_id INTEGER PRIMARY KEY, account TEXT NOT NULL, queued INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS queue_counts_insert AFTER INSERT ON jobs
WHEN new.status = 'IN_QUEUE' BEGIN
    INSERT INTO queue_counts (version_id, account, queued) VALUES (new.version_id, new.account, 1)
    ON CONFLICT (version_id) DO UPDATE SET queued = queued + 1;
END;
CREATE TRIGGER IF NOT EXISTS queue_counts_enter AFTER UPDATE OF status ON jobs
WHEN new.status = 'IN_QUEUE' AND old.status != 'IN_QUEUE' BEGIN
    INSERT INTO queue_counts (version_id, account, queued) VALUES (new.version_id, new.account, 1)
    ON CONFLICT (version_id) DO UPDATE SET queued = queued + 1;
END;
CREATE TRIGGER IF NOT EXISTS queue_counts_leave AFTER UPDATE OF status ON jobs
WHEN old.status = 'IN_QUEUE' AND new.status != 'IN_QUEUE' BEGIN
    UPDATE queue_counts SET queued = queued - 1 WHERE version_id = old.version_id;
END;
CREATE TRIGGER IF NOT EXISTS queue_counts_delete AFTER DELETE ON jobs
WHEN old.status = 'IN_QUEUE' BEGIN
    UPDATE queue_counts SET queued = queued - 1 WHERE version_id = old.version_id;
END;
"""

_REBUILD = (
    "INSERT INTO queue_counts (version_id, account, queued) "
    "SELECT version_id, MIN(account), COUNT(*) FROM jobs WHERE status = 'IN_QUEUE' "
    "GROUP BY version_id"
)

# the oldest queued job per version: a seek on jobs_queue(status, version_id, created_at)
QUEUE_STATS = (
    "SELECT q.version_id, q.queued, (SELECT MIN(created_at) FROM jobs "
    "WHERE status = 'IN_QUEUE' AND version_id = q.version_id) "
    "FROM queue_counts q WHERE q.queued > 0"
)

_ACCOUNT_COLUMNS = {
    "weight": "REAL NOT NULL DEFAULT 1.0",
    "max_queued_jobs": "INTEGER",
}
ACCOUNT_SELECT = "SELECT name, webhook_secret, created_at, weight, max_queued_jobs FROM accounts"


def install(db: sqlite3.Connection) -> None:
    """Add the fair-sharing columns and triggers, then count the queue once."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(accounts)")}
    for name, kind in _ACCOUNT_COLUMNS.items():
        if name not in columns:
            db.execute(f"ALTER TABLE accounts ADD COLUMN {name} {kind}")
    db.executescript(SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM queue_counts")
        db.execute(_REBUILD)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def queue_stats(db: sqlite3.Connection) -> dict[int, QueueStat]:
    """Queued count and oldest enqueue time per version, from the counters."""
    return {
        r[0]: QueueStat(queued=r[1], oldest_created_at=r[2])
        for r in db.execute(QUEUE_STATS).fetchall()
        if r[2] is not None
    }


def account(row: sqlite3.Row, webhook_secret: str) -> Account:
    """An account from a row of `ACCOUNT_SELECT`, with its webhook secret opened."""
    name, _, created_at, weight, max_queued = tuple(row)
    return Account(
        str(name),
        webhook_secret,
        float(created_at),
        weight=float(weight),
        max_queued_jobs=max_queued if isinstance(max_queued, int) else None,
    )


def update_account(
    db: sqlite3.Connection,
    name: str,
    weight: float | None,
    max_queued_jobs: int | None,
    clear_max_queued_jobs: bool,
) -> sqlite3.Row | None:
    """Change an account's fair-share weight and/or queue limit (or clear the limit back to
    the server's default); its new row, or None if there is no such account."""
    row: sqlite3.Row | None = db.execute(
        "UPDATE accounts SET weight = COALESCE(?, weight), max_queued_jobs = CASE "
        "WHEN ? THEN NULL WHEN ? IS NOT NULL THEN ? ELSE max_queued_jobs END WHERE name = ? "
        "RETURNING name, webhook_secret, created_at, weight, max_queued_jobs",
        (weight, clear_max_queued_jobs, max_queued_jobs, max_queued_jobs, name),
    ).fetchone()
    return row
