"""The store's credentials: keys with expiry and revocation, endpoint secrets sealed at rest, and
databases from before either (plaintext webhook secrets, the old api_keys table)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from coldbrew.crypto import Sealer, is_sealed
from coldbrew.errors import SecretUnreadable
from coldbrew.store.credentials import key_id
from coldbrew.store.sqlite import SQLiteStore

HASH_A = "a" * 64
HASH_B = "b" * 64
HASH_C = "c" * 64


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def raw(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


@pytest.fixture
def sealer(tmp_path: Path) -> Sealer:
    return Sealer.from_file(tmp_path / "secrets.key")


def test_keys_list_with_ids_expire_and_revoke_within_their_account(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:")

    async def scenario() -> None:
        await store.create_account("acme", "s", 1.0)
        await store.create_account("beta", "s", 1.0)
        made = await store.add_key(HASH_A, "acme", True, 1.0, prefix="cb_AbCd")
        await store.add_key(HASH_B, "acme", False, 2.0, expires_at=100.0)
        await store.add_key(HASH_C, "beta", False, 3.0)
        assert made.id == key_id(HASH_A) == "a" * 16
        assert [k.id for k in await store.list_keys("acme")] == ["a" * 16, "b" * 16]
        assert len(await store.list_keys(None)) == 3
        expiring = await store.principal(HASH_B)
        assert expiring is not None and expiring.expires_at == 100.0
        assert expiring.key_id == "b" * 16

        assert await store.revoke_key("c" * 16, "acme", 5.0) is None  # beta's key: not found
        assert await store.revoke_key("c" * 8, None, 5.0) is None  # ids are whole
        assert await store.revoke_key("'; DROP TABLE api_keys; --", None, 5.0) is None
        revoked = await store.revoke_key("c" * 16, "beta", 5.0)
        assert revoked is not None and revoked.revoked_at == 5.0
        assert not revoked.active(6.0)
        assert await store.principal(HASH_C) is None
        again = await store.revoke_key("c" * 16, None, 9.0)
        assert again is not None and again.revoked_at == 5.0  # first revocation kept

        await store.touch_key(HASH_A, 42.0)
        (listed, *_) = await store.list_keys("acme")
        assert listed.last_used_at == 42.0 and listed.prefix == "cb_AbCd"
        await store.close()

    run(scenario())


def test_secrets_are_set_removed_listed_by_name_and_sealed_at_rest(
    tmp_path: Path, sealer: Sealer
) -> None:
    db = tmp_path / "coldbrew.db"
    store = SQLiteStore(db, sealer)

    async def scenario() -> None:
        await store.set_secrets("acme", "chat", {"HF_TOKEN": "hf-value-1", "B": "b-1"}, 1.0)
        await store.set_secrets("beta", "chat", {"HF_TOKEN": "beta-value"}, 1.0)
        await store.set_secrets("acme", "chat", {"B": None, "C": "c-1"}, 2.0)
        assert [(s.name, s.updated_at) for s in await store.secret_names("acme", "chat")] == [
            ("C", 2.0),
            ("HF_TOKEN", 1.0),
        ]
        assert await store.all_secrets() == {
            ("acme", "chat"): {"HF_TOKEN": "hf-value-1", "C": "c-1"},
            ("beta", "chat"): {"HF_TOKEN": "beta-value"},
        }
        await store.close()

    run(scenario())
    values = [row[0] for row in raw(db, "SELECT value FROM endpoint_secrets")]
    assert values and all(is_sealed(v) for v in values)
    content = b"".join(p.read_bytes() for p in tmp_path.glob("coldbrew.db*"))
    for plain in (b"hf-value-1", b"beta-value", b"c-1"):
        assert plain not in content


def test_a_secret_moved_to_another_account_does_not_open(tmp_path: Path, sealer: Sealer) -> None:
    db = tmp_path / "coldbrew.db"
    run(SQLiteStore(db, sealer).set_secrets("acme", "chat", {"TOKEN": "acme-only"}, 1.0))
    with sqlite3.connect(db) as conn:  # someone with write access to the file, not the key
        conn.execute("UPDATE endpoint_secrets SET account='beta'")
    with pytest.raises(SecretUnreadable):
        run(SQLiteStore(db, sealer).all_secrets())


def test_plaintext_webhook_secrets_are_sealed_on_open(tmp_path: Path, sealer: Sealer) -> None:
    db = tmp_path / "coldbrew.db"
    old = SQLiteStore(db)  # no sealer: what coldbrew 0.1 wrote
    run(old.create_account("acme", "whsec_plaintext", 1.0))
    run(old.close())
    assert raw(db, "SELECT webhook_secret FROM accounts") == [("whsec_plaintext",)]

    store = SQLiteStore(db, sealer)
    account = run(store.get_account("acme"))
    assert account is not None and account.webhook_secret == "whsec_plaintext"
    run(store.create_account("beta", "whsec_new", 2.0))
    run(store.close())
    stored = [row[0] for row in raw(db, "SELECT webhook_secret FROM accounts")]
    assert len(stored) == 2 and all(is_sealed(s) for s in stored)
    assert not any("whsec_" in s for s in stored)


def test_a_replaced_key_file_fails_the_start_not_the_first_webhook(tmp_path: Path) -> None:
    db = tmp_path / "coldbrew.db"
    first = SQLiteStore(db, Sealer.from_file(tmp_path / "one.key"))
    run(first.create_account("acme", "whsec_x", 1.0))
    run(first.close())
    with pytest.raises(SecretUnreadable) as failed:
        SQLiteStore(db, Sealer.from_file(tmp_path / "other.key"))
    assert "other.key" in failed.value.message


def test_an_old_api_keys_table_gains_expiry_and_revocation(tmp_path: Path) -> None:
    db = tmp_path / "coldbrew.db"
    with sqlite3.connect(db) as conn:  # the 0.1 schema of these two tables
        conn.executescript(
            "CREATE TABLE accounts (name TEXT PRIMARY KEY, webhook_secret TEXT NOT NULL, "
            "created_at REAL NOT NULL);"
            "CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, account TEXT NOT NULL "
            "REFERENCES accounts(name), admin INTEGER NOT NULL, created_at REAL NOT NULL);"
            "INSERT INTO accounts VALUES ('acme', 'whsec_x', 1.0);"
            f"INSERT INTO api_keys VALUES ('{HASH_A}', 'acme', 1, 1.0);"
        )
    store = SQLiteStore(db)
    principal = run(store.principal(HASH_A))
    assert principal is not None and principal.admin and principal.expires_at is None
    (listed,) = run(store.list_keys(None))
    assert listed.prefix == "" and listed.active(2.0)
    assert run(store.revoke_key(listed.id, "acme", 3.0)) is not None
    assert run(store.principal(HASH_A)) is None
    run(store.close())
