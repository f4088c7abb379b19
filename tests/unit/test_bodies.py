"""The management API's bodies (`api/bodies.py`): camelCase names, the old snake_case names still
read for a release, and every refusal naming the camelCase field and what to send."""

from __future__ import annotations

import logging

import orjson
import pytest

from coldbrew.api.bodies import account_changes, budget_from, camel_keys
from coldbrew.errors import InvalidRequest
from coldbrew.store.models import Principal

ACME = Principal("acme", False)


def body(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_a_budget_reads_camel_case_and_fills_the_defaults() -> None:
    budget = budget_from(body(monthlyUsd=5, hardStop=True, endpoint="toy"), ACME, 100.0)
    assert (budget.account, budget.endpoint, budget.monthly_usd) == ("acme", "toy", 5.0)
    assert (budget.hard_stop, budget.alerts_pct, budget.created_at) == (True, [50, 80, 100], 100.0)


def test_the_old_snake_case_names_are_still_read_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="coldbrew.api.bodies"):
        budget = budget_from(body(monthly_usd=2, hard_stop=True), ACME, 0.0)
        changes = account_changes(body(max_queued_jobs=7))
    assert (budget.monthly_usd, budget.hard_stop, changes) == (2.0, True, {"max_queued_jobs": 7})
    assert "send ['hardStop', 'monthlyUsd']" in caplog.text
    assert "send ['maxQueuedJobs']" in caplog.text


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        pytest.param(body(), "'monthlyUsd' must be a positive number", id="missing"),
        pytest.param(body(monthlyUsd=0), "'monthlyUsd' must be a positive number", id="zero"),
        pytest.param(body(monthlyUsd=True), "'monthlyUsd' must be a positive", id="bool"),
        pytest.param(body(monthlyUsd="5"), "'monthlyUsd' must be a positive", id="string"),
        pytest.param(body(monthlyUsd=1, alerts=[0]), "percentages", id="alert-0"),
        pytest.param(body(monthlyUsd=1, hardStop=1), "'hardStop' must be true or false", id="int"),
        pytest.param(body(monthlyUsd=1, webhook="ftp://x"), "http(s) URL", id="webhook"),
        pytest.param(body(monthlyUsd=1, account="Not Valid"), "account name", id="account"),
        pytest.param(b"[1]", "must be a JSON object", id="list"),
        pytest.param(b"{", "not JSON", id="not-json"),
    ],
)
def test_bad_budgets_say_what_to_send(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says.replace("(", r"\(").replace(")", r"\)")):
        budget_from(raw, ACME, 0.0)


@pytest.mark.parametrize(
    ("raw", "changes"),
    [
        pytest.param(body(weight=2), {"weight": 2.0}, id="weight"),
        pytest.param(body(maxQueuedJobs=10), {"max_queued_jobs": 10}, id="limit"),
        pytest.param(body(maxQueuedJobs=None), {"clear_max_queued_jobs": True}, id="default"),
    ],
)
def test_account_changes(raw: bytes, changes: dict[str, object]) -> None:
    assert account_changes(raw) == changes


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        pytest.param(body(), "'weight' and/or 'maxQueuedJobs'", id="empty"),
        pytest.param(body(weight=-1), "'weight' must be a number above 0", id="negative"),
        pytest.param(body(weight=None), "'weight' must be a number above 0", id="null"),
        pytest.param(body(maxQueuedJobs=0), "'maxQueuedJobs' must be a whole number", id="zero"),
        pytest.param(body(maxQueuedJobs=1.5), "'maxQueuedJobs' must be a whole", id="float"),
        pytest.param(body(colour="red"), "'colour' is not a field here", id="unknown"),
    ],
)
def test_bad_account_changes_say_what_to_send(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        account_changes(raw)


def test_answer_keys_become_camel_case_and_nested_maps_stay() -> None:
    row = {"cold_start_s": 1.0, "total_usd": 2.0, "cost_usd": {"cold_start": 3.0}}
    assert camel_keys(row) == {"coldStartS": 1.0, "totalUsd": 2.0, "costUsd": {"cold_start": 3.0}}
