"""Budgets: monthly limits per account or endpoint that alert once per threshold and can stop
new jobs. Spend is the billed worker time (cold start, busy and idle) of the current month."""

from __future__ import annotations

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


def _scope(budget: Budget) -> str:
    return f"endpoint {budget.endpoint!r}" if budget.endpoint else f"account {budget.account!r}"


class BudgetKeeper:
    """Computes each budget's spend, sends threshold alerts, and refuses jobs over hard stops."""

    def __init__(
        self, store: Ledger, clock: Clock, settings: Settings, webhooks: WebhookSender
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.webhooks = webhooks
        self._stopped: dict[tuple[str, str | None], tuple[Budget, float]] = {}

    def admit(self, account: str, endpoint: str) -> None:
        """Raise BudgetExceeded when a hard-stop budget of the account or endpoint is spent."""
        for key in ((account, None), (account, endpoint)):
            if key in self._stopped:
                budget, spent = self._stopped[key]
                flag = (
                    f"--endpoint {budget.endpoint}" if budget.endpoint else f"--account {account}"
                )
                raise BudgetExceeded(
                    f"the monthly budget of ${budget.monthly_usd:g} for {_scope(budget)} is used "
                    f"up (${spent:.6f} spent this month); new jobs are refused, running ones "
                    "finish",
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
        """Recompute spend; alert on newly crossed thresholds; update the hard stops."""
        budgets = {(b.account, b.endpoint): b for b in await self.store.budgets(None)}
        stopped: dict[tuple[str, str | None], tuple[Budget, float]] = {}
        for line in await self.status(None):
            budget = budgets[(line["account"], line["endpoint"])]
            if line["stopped"]:
                stopped[(budget.account, budget.endpoint)] = (budget, line["spentUsd"])
            for pct in sorted(budget.alerts_pct):
                if line["usedPct"] >= pct:
                    await self._alert(budget, line, pct)
        self._stopped = stopped

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
