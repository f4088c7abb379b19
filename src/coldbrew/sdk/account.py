"""The account and operator calls of `Client`: keys, secrets, usage, budgets and advice.

A base class of `Client` (which supplies `_call` and `_http`), kept apart so the client's
invocation and deploy calls read on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from pydantic.alias_generators import to_camel

from coldbrew.sdk.errors import raise_for


class AccountCalls:
    """Keys, secrets, usage, budgets and advice (see `Client`)."""

    _http: httpx.Client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def create_key(self, account: str | None = None, admin: bool = False) -> str:
        """A new key (for your own account when `account` is None); shown only this once."""
        key: str = self.add_key(account, admin)["key"]
        return key

    def add_key(
        self, account: str | None = None, admin: bool = False, expires: str | None = None
    ) -> dict[str, Any]:
        """Create a key (expiring after `expires`, e.g. '30d', if given): the key and its record."""
        body: dict[str, Any] = {"admin": admin}
        if account is not None:
            body["account"] = account
        if expires is not None:
            body["expires"] = expires
        result: dict[str, Any] = self._call("POST", "/v1/keys", json=body)
        return result

    def keys(self, account: str | None = None) -> list[dict[str, Any]]:
        """Keys you may see (ids and prefixes, never the keys themselves)."""
        params = {"account": account} if account is not None else {}
        result: list[dict[str, Any]] = self._call("GET", "/v1/keys", params=params)["keys"]
        return result

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/keys/{key_id}")
        return result

    def secrets(self, endpoint: str) -> list[dict[str, Any]]:
        """The names of `endpoint`'s secrets (values never leave the server)."""
        result: list[dict[str, Any]] = self._call("GET", f"/v1/endpoints/{endpoint}/secrets")[
            "secrets"
        ]
        return result

    def set_secrets(self, endpoint: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
        """Set secrets that `endpoint`'s new workers get as environment variables."""
        return self._patch_secrets(endpoint, dict(values))

    def unset_secrets(self, endpoint: str, names: Iterable[str]) -> list[dict[str, Any]]:
        return self._patch_secrets(endpoint, dict.fromkeys(names))

    def _patch_secrets(self, endpoint: str, patch: dict[str, str | None]) -> list[dict[str, Any]]:
        path = f"/v1/endpoints/{endpoint}/secrets"
        result: list[dict[str, Any]] = self._call("PATCH", path, json=patch)["secrets"]
        return result

    def usage(self, by: str = "endpoint", since: str = "24h") -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/usage", params={"by": by, "since": since})
        return result

    def set_budget(self, **fields: Any) -> dict[str, Any]:
        """`set_budget(monthly_usd=50, endpoint="toy", hard_stop=True)`: sent in the API's
        camelCase (`monthlyUsd`, `hardStop`); camelCase names pass through as they are."""
        body = {to_camel(name): value for name, value in fields.items()}
        result: dict[str, Any] = self._call("POST", "/v1/budgets", json=body)
        return result

    def budgets(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/budgets")
        return result

    def advise(self, name: str, window: str = "7d") -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", f"/v1/endpoints/{name}/advice", params={"window": window}
        )
        return result

    def usage_csv(self, by: str = "endpoint", since: str = "24h") -> str:
        response = self._http.get("/v1/usage", params={"by": by, "since": since, "format": "csv"})
        raise_for(response)
        return response.text
