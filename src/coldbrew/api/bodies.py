"""The management API's (`/v1`) request bodies and answer keys, in one naming convention.

`/v1` speaks camelCase, as the RunPod-compatible `/v2` answers do (`monthlyUsd`, `hardStop`,
`maxQueuedJobs`, `coldStartS`); a unit stays the last word (`S`, `Usd`, `Pct`). Bodies are
pydantic models with the camelCase name as the alias; the snake_case name a field had before
(`monthly_usd`) is still accepted for one release, deprecated, and logged. Protocols keep their
own wire format: Replicate's `/v1/files` and `/v1/predictions` stay snake_case.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from coldbrew.control.jobs import is_http_url
from coldbrew.errors import InvalidRequest
from coldbrew.names import NAME_PATTERN
from coldbrew.store.models import Budget, Principal

MAX_WEIGHT = 1_000.0
_log = logging.getLogger(__name__)


def camel_keys(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its keys in camelCase (`cold_start_s` → `coldStartS`). Values, nested maps
    included, are untouched: keys that are values of an enum (`costUsd: {"cold_start": …}`, as
    in the timeseries and the CSV's `kind`) are data, not field names."""
    return {to_camel(key): value for key, value in row.items()}


def _either(name: str, default: Any = ...) -> Any:
    """A field read from its camelCase name, or (deprecated) its old snake_case `name`."""
    return Field(default, validation_alias=AliasChoices(to_camel(name), name))


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def read(cls, raw: bytes, messages: dict[str, tuple[str, str]]) -> Any:
        """Parse and check a JSON body; the first problem becomes an `InvalidRequest` with
        `messages[field]` (what is wrong, what to send), or pydantic's own words."""
        try:
            parsed = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                f"the body is not JSON: {exc}", hint="send a JSON object"
            ) from None
        if not isinstance(parsed, dict):
            raise InvalidRequest("the body must be a JSON object", hint="send {...}, not a list")
        old = sorted(k for k in parsed if "_" in k and to_camel(k) in messages)
        if old:
            _log.warning(
                "deprecated snake_case body fields %s: send %s",
                old,
                [to_camel(k) for k in old],
            )
        try:
            return cls.model_validate(parsed)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = to_camel(str(first["loc"][0])) if first["loc"] else ""
            if first["type"] == "extra_forbidden":
                known = " and/or ".join(f"'{k}'" for k in messages)
                message, hint = f"{field!r} is not a field here: send {known}", ""
            else:
                message, hint = messages.get(field, (f"'{field}': {first['msg']}", ""))
            raise InvalidRequest(message, hint=hint) from None


_BUDGET_MESSAGES = {
    "monthlyUsd": ("'monthlyUsd' must be a positive number of dollars", '{"monthlyUsd": 50}'),
    "alerts": ("'alerts' must be a list of percentages, e.g. [50, 80, 100]", ""),
    "endpoint": ("'endpoint' must be an endpoint name", ""),
    "webhook": ("'webhook' must be an http(s) URL", ""),
    "account": ("'account' must be an account name", ""),
    "hardStop": ("'hardStop' must be true or false", '{"hardStop": true}'),
}


class BudgetBody(_Body):
    """`POST /v1/budgets`: a monthly limit in dollars on an account or one of its endpoints."""

    monthly_usd: StrictFloat | StrictInt = _either("monthly_usd")
    alerts: list[StrictInt] = [50, 80, 100]
    endpoint: StrictStr | None = None
    webhook: StrictStr | None = None
    account: StrictStr | None = None
    hard_stop: StrictBool = _either("hard_stop", False)

    @field_validator("monthly_usd")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("alerts")
    @classmethod
    def _percentages(cls, value: list[int]) -> list[int]:
        if not all(0 < a <= 1000 for a in value):
            raise ValueError("each alert is a percentage in 1..1000")
        return value

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not is_http_url(value):
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("account")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError("not an account name")
        return value


def budget_from(raw: bytes, principal: Principal, now: float) -> Budget:
    """The `Budget` a `POST /v1/budgets` body asks for; every problem says what to send."""
    body: BudgetBody = BudgetBody.read(raw, _BUDGET_MESSAGES)
    return Budget(
        account=body.account or principal.account,
        endpoint=body.endpoint,
        monthly_usd=float(body.monthly_usd),
        alerts_pct=sorted(set(body.alerts)),
        hard_stop=body.hard_stop,
        webhook_url=body.webhook,
        created_at=now,
    )


_ACCOUNT_HINT = '{"weight": 2} or {"maxQueuedJobs": 100000} (null: the server default)'
_ACCOUNT_MESSAGES = {
    "weight": (
        f"'weight' must be a number above 0 and at most {MAX_WEIGHT:g}",
        "1 is the default; 2 gets twice the slots of a weight-1 account",
    ),
    "maxQueuedJobs": (
        "'maxQueuedJobs' must be a whole number of at least 1, or null",
        "null goes back to the server's COLDBREW_ACCOUNT_MAX_QUEUED_JOBS",
    ),
}


class AccountChanges(_Body):
    """`PATCH /v1/accounts/{name}`: a new fair-share weight and/or queue limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: StrictFloat | StrictInt | None = None
    max_queued_jobs: StrictInt | None = _either("max_queued_jobs", None)

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float | None) -> float | None:
        if value is None or not 0 < value <= MAX_WEIGHT:
            raise ValueError("out of range")
        return value

    @field_validator("max_queued_jobs")
    @classmethod
    def _limit(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("below 1")
        return value


def account_changes(raw: bytes) -> dict[str, Any]:
    """The store's `update_account` arguments for a PATCH body (null limit: back to default)."""
    body: AccountChanges = AccountChanges.read(raw, _ACCOUNT_MESSAGES)
    if not body.model_fields_set:
        raise InvalidRequest(
            "send an object with 'weight' and/or 'maxQueuedJobs'", hint=_ACCOUNT_HINT
        )
    changes: dict[str, Any] = {}
    if "weight" in body.model_fields_set:
        changes["weight"] = float(body.weight or 0)
    if "max_queued_jobs" in body.model_fields_set:
        if body.max_queued_jobs is None:
            changes["clear_max_queued_jobs"] = True
        else:
            changes["max_queued_jobs"] = body.max_queued_jobs
    return changes
