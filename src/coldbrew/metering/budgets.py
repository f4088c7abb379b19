"""Budgets: monthly limits per account or endpoint that alert once per threshold and can stop
new jobs. Spend is the billed worker time (cold start, busy and idle) of the current month.

Hard stops live on a `StopBoard` (`coldbrew.store.shared.stops`): in this process, or in Redis
so that a stop any gateway finds refuses new jobs on every gateway as soon as it is posted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.errors import BudgetExceeded
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.metering.report import row_usd
from coldbrew.store.ledger import Ledger
from coldbrew.store.models import Budget
from coldbrew.store.shared.stops import LocalStops, Stop, StopBoard

log = logging.getLogger("coldbrew.budgets")


def month_bounds(now: float) -> tuple[str, float, float]:
    """('YYYY-MM', start, end) of the UTC month holding `now`."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), start.timestamp(), end.timestamp()


def _scope(budget: Budget | Stop) -> str:
    return f"endpoint {budget.endpoint!r}" if budget.endpoint else f"account {budget.account!r}"


def _still_holds(stop: Stop, budget: Budget | None, period: str) -> bool:
    """Whether a posted stop still applies: same month, and its budget unchanged (spend only
    grows within a month, so a gateway whose usage is behind must not lift it)."""
    return (
        budget is not None
        and budget.hard_stop
        and budget.monthly_usd == stop.monthly_usd
        and stop.period == period
    )


class BudgetKeeper:
    """Computes each budget's spend, sends threshold alerts, and refuses jobs over hard stops."""

    def __init__(
        self,
        store: Ledger,
        clock: Clock,
        settings: Settings,
        webhooks: WebhookSender,
        board: StopBoard | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.webhooks = webhooks
        self.board: StopBoard = board or LocalStops()
        self._stopped: dict[tuple[str, str | None], Stop] = {}
        self._reading: asyncio.Future[None] | None = None
        self._dirty = False
        self.board.on_change(self._board_changed)

    def admit(self, account: str, endpoint: str) -> None:
        """Raise BudgetExceeded when a hard-stop budget of the account or endpoint is spent."""
        for key in ((account, None), (account, endpoint)):
            stop = self._stopped.get(key)
            if stop is not None:
                flag = f"--endpoint {stop.endpoint}" if stop.endpoint else f"--account {account}"
                raise BudgetExceeded(
                    f"the monthly budget of ${stop.monthly_usd:g} for {_scope(stop)} is used "
                    f"up (${stop.spent_usd:.6f} spent this month); new jobs are refused, running "
                    "ones finish",
                    hint=f"raise it with `coldbrew budgets set {flag} --monthly-usd N`, or set it "
                    "again without --hard-stop",
                )

    async def status(self, account: str | None) -> list[dict[str, Any]]:
        """Every budget with this month's spend, its share and a forecast from the recent rate."""
        now = self.clock.time()
        period, start, end = month_bounds(now)
        rows = await self.store.usage(start, account)
        prices = self.settings.prices_per_hour_usd
        report = []
        for budget in await self.store.budgets(account):
            spent = sum(
                row_usd(r, prices, self.settings.reserved_discount)
                for r in rows
                if r.account == budget.account and budget.endpoint in (None, r.endpoint)
            )
            elapsed = max(now - start, 1.0)
            report.append(
                {
                    "account": budget.account,
                    "endpoint": budget.endpoint,
                    "period": period,
                    "monthlyUsd": budget.monthly_usd,
                    "spentUsd": round(spent, 9),
                    "usedPct": round(100 * spent / budget.monthly_usd, 2),
                    "forecastUsd": round(spent / elapsed * (end - start), 9),
                    "alertsPct": budget.alerts_pct,
                    "hardStop": budget.hard_stop,
                    "stopped": budget.hard_stop and spent >= budget.monthly_usd,
                    "webhook": budget.webhook_url,
                }
            )
        return report

    async def check(self) -> None:
        """Recompute spend; alert on newly crossed thresholds; post the hard stops found and
        lift the posted ones whose budget changed or whose month ended."""
        period = month_bounds(self.clock.time())[0]
        budgets = {(b.account, b.endpoint): b for b in await self.store.budgets(None)}
        found: list[Stop] = []
        for line in await self.status(None):
            budget = budgets[(line["account"], line["endpoint"])]
            if line["stopped"]:
                found.append(
                    Stop(
                        budget.account,
                        budget.endpoint,
                        budget.monthly_usd,
                        line["spentUsd"],
                        line["period"],
                    )
                )
            for pct in sorted(budget.alerts_pct):
                if line["usedPct"] >= pct:
                    await self._alert(budget, line, pct)
        posted = await self.board.read()
        lifted = [s for s in posted if not _still_holds(s, budgets.get(s.key), period)]
        fresh = {s.key for s in found}
        kept = [s for s in posted if s not in lifted and s.key not in fresh]
        await self.board.update(found, lifted)
        self._stopped = {s.key: s for s in (*kept, *found)}

    def _board_changed(self) -> None:
        """Another gateway posted or lifted a stop: read the board again (one read at a time;
        a change during a read is read by the next)."""
        self._dirty = True
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_board())

    async def _read_board(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                posted = await self.board.read()
            except Exception:
                log.exception("could not read the budget stops")
                return
            period = month_bounds(self.clock.time())[0]
            self._stopped = {s.key: s for s in posted if s.period == period}

    async def _alert(self, budget: Budget, line: dict[str, Any], pct: int) -> None:
        period = line["period"]
        if not await self.store.record_alert(
            budget.account, budget.endpoint, period, pct, self.clock.time()
        ):
            return  # already sent this period
        log.warning(
            "budget alert: %s reached %d%% of $%g in %s ($%.6f spent, forecast $%.6f)",
            _scope(budget),
            pct,
            budget.monthly_usd,
            period,
            line["spentUsd"],
            line["forecastUsd"],
            extra={"endpoint": budget.endpoint},
        )
        if budget.webhook_url:
            msg_id = f"budget_{budget.account}_{budget.endpoint or ''}_{period}_{pct}"
            self.webhooks.send_event(
                budget.account,
                budget.webhook_url,
                msg_id,
                {"type": "budget.threshold", "thresholdPct": pct, **line},
            )
