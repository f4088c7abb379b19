"""The ledger contract (`coldbrew.store.ledger.Ledger`): usage, budgets and alerts."""

from __future__ import annotations

from typing import Any

from tests.unit.store_contract.helpers import HOUR

from coldbrew.store.models import (
    Budget,
    UsageKind,
    UsageRow,
)


def _usage(
    seconds: float,
    *,
    kind: UsageKind = UsageKind.BUSY,
    hour_start: float = 10 * HOUR,
    worker_id: str = "w1",
    account: str = "acme",
) -> UsageRow:
    return UsageRow(worker_id, account, "echo", 1, "cpu", kind, hour_start, seconds)


def test_usage_accumulates_into_one_row_per_worker_kind_and_hour(store: Any) -> None:
    store.add_usage([_usage(10.0)])
    store.add_usage([_usage(5.5), _usage(2.0, kind=UsageKind.IDLE)])
    store.add_usage([_usage(1.0, hour_start=11 * HOUR), _usage(4.0, worker_id="w2")])
    rows = store.usage(0.0, None)
    assert sorted(rows, key=lambda r: (r.hour_start, r.worker_id, r.kind.value)) == [
        _usage(15.5),
        _usage(2.0, kind=UsageKind.IDLE),
        _usage(4.0, worker_id="w2"),
        _usage(1.0, hour_start=11 * HOUR),
    ]


def test_usage_filters_by_hour_and_account(store: Any) -> None:
    store.add_usage(
        [
            _usage(1.0, hour_start=9 * HOUR),
            _usage(2.0, hour_start=10 * HOUR),
            _usage(3.0, hour_start=11 * HOUR, worker_id="w2", account="beta"),
        ]
    )
    assert [r.seconds for r in store.usage(10 * HOUR, None)] == [2.0, 3.0]
    assert [r.seconds for r in store.usage(10 * HOUR, "acme")] == [2.0]
    assert [r.seconds for r in store.usage(0.0, "beta")] == [3.0]
    assert store.usage(12 * HOUR, None) == []


def test_budgets_are_replaced_per_account_and_endpoint(store: Any) -> None:
    whole = Budget("acme", None, 100.0, [50, 90], False, None, 1.0)
    echo = Budget("acme", "echo", 10.0, [80], True, "https://example.test/hook", 2.0)
    store.set_budget(whole)
    store.set_budget(echo)
    store.set_budget(Budget("beta", None, 5.0, [], False, None, 3.0))
    raised = Budget("acme", "echo", 20.0, [80], True, None, 4.0)
    store.set_budget(raised)

    assert store.budgets("acme") == [whole, raised]  # the whole account first, then endpoints
    assert [b.account for b in store.budgets(None)] == ["acme", "acme", "beta"]
    assert store.budgets("nobody") == []


def test_an_alert_is_recorded_once_per_period_and_threshold(store: Any) -> None:
    assert store.record_alert("acme", None, "2026-11", 50, 10.0) is True
    assert store.record_alert("acme", None, "2026-11", 50, 11.0) is False
    assert store.record_alert("acme", "echo", "2026-11", 50, 12.0) is True
    assert store.record_alert("acme", None, "2026-12", 50, 13.0) is True
    assert store.record_alert("beta", None, "2026-11", 50, 14.0) is True

    assert store.alerts("acme") == [
        {"endpoint": None, "period": "2026-11", "thresholdPct": 50, "at": 10.0},
        {"endpoint": "echo", "period": "2026-11", "thresholdPct": 50, "at": 12.0},
        {"endpoint": None, "period": "2026-12", "thresholdPct": 50, "at": 13.0},
    ]
