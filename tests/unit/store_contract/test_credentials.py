"""The credentials contract (`coldbrew.store.credentials.CredentialStore`): keys and
principals. Sealing at rest is SQLite's: tests/unit/test_store_credentials.py."""

from __future__ import annotations

from typing import Any

from coldbrew.store.models import (
    Principal,
)


def test_keys_resolve_to_principals(store: Any) -> None:
    store.create_account("acme", "s", 1.0)
    store.add_key("hash-admin", "acme", True, 1.0)
    store.add_key("hash-user", "acme", False, 1.0)
    assert store.principal("hash-admin") == Principal(account="acme", admin=True)
    assert store.principal("hash-user") == Principal(account="acme", admin=False)
    assert store.principal("hash-unknown") is None
