"""API keys: listed without the key, scoped to their account, expiring, and revoked within the
key cache's TTL (at once on the gateway that revoked them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from coldbrew.platform import hash_key
from tests.integration.conftest import Running, running, wait_for

pytestmark = pytest.mark.anyio


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _make(cb: Running, headers: dict[str, str] | None = None, **body: Any) -> Any:
    response = await cb.http.post("/v1/keys", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_keys_are_listed_without_the_key_and_only_to_their_account(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        acme = await _make(cb, account="acme", expires="30d")
        assert acme["key"].startswith(acme["prefix"].rstrip("…"))
        assert acme["expiresAt"] is not None and acme["active"]
        await cb.http.get("/v1/endpoints", headers=bearer(acme["key"]))

        everything = (await cb.http.get("/v1/keys")).json()["keys"]
        assert {k["account"] for k in everything} == {"default", "acme"}
        assert cb.key not in str(everything) and acme["key"] not in str(everything)
        (listed,) = [k for k in everything if k["id"] == acme["id"]]
        assert listed["lastUsedAt"] is not None and listed["admin"] is False

        mine = await cb.http.get("/v1/keys", headers=bearer(acme["key"]))
        assert [k["id"] for k in mine.json()["keys"]] == [acme["id"]]
        other = await cb.http.get("/v1/keys?account=default", headers=bearer(acme["key"]))
        assert other.status_code == 403


async def test_a_non_admin_manages_only_its_own_keys(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        user = await _make(cb, account="acme", expires="1d")
        as_user = bearer(user["key"])
        own = await _make(cb, as_user, expires="1h")  # its own account, shorter-lived: fine
        assert own["account"] == "acme"
        for body in ({"account": "beta"}, {"admin": True}):
            assert (await cb.http.post("/v1/keys", json=body, headers=as_user)).status_code == 403
        longer = await cb.http.post("/v1/keys", json={}, headers=as_user)
        assert longer.status_code == 400
        assert "outlive" in longer.json()["error"]["message"]

        admin_of_acme = await _make(cb, account="acme", admin=True)
        default_keys = (await cb.http.get("/v1/keys?account=default")).json()["keys"]
        theirs = await cb.http.delete(f"/v1/keys/{default_keys[0]['id']}", headers=as_user)
        assert theirs.status_code == 404  # another account's key does not exist for it
        admin_key = await cb.http.delete(f"/v1/keys/{admin_of_acme['id']}", headers=as_user)
        assert admin_key.status_code == 403
        revoked = await cb.http.delete(f"/v1/keys/{own['id']}", headers=as_user)
        assert revoked.status_code == 200 and revoked.json()["active"] is False


async def test_a_revoked_key_stops_at_once_here_and_within_the_ttl_elsewhere(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, key_cache_ttl_s=0.3) as cb:
        first = await _make(cb, account="acme")
        assert (await cb.http.get("/v1/endpoints", headers=bearer(first["key"]))).is_success
        assert (await cb.http.delete(f"/v1/keys/{first['id']}")).status_code == 200
        refused = await cb.http.get("/v1/endpoints", headers=bearer(first["key"]))
        assert refused.status_code == 401  # the very next request

        second = await _make(cb, account="acme")
        assert (await cb.http.get("/v1/endpoints", headers=bearer(second["key"]))).is_success
        # revoked behind this gateway's back (another gateway, or by hand in the database)
        await cb.platform.store.revoke_key(second["id"], None, time.time())

        async def status() -> int:
            response = await cb.http.get("/v1/endpoints", headers=bearer(second["key"]))
            return response.status_code

        await wait_for(status, lambda code: code == 401, timeout_s=10)
        again = await cb.http.delete(f"/v1/keys/{second['id']}")
        assert again.status_code == 200  # revoking twice is not an error


async def test_an_expired_key_is_refused_with_when_it_expired(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        key, record = await cb.platform.create_key("acme", False, expires_at=time.time() - 1)
        refused = await cb.http.get("/v1/endpoints", headers=bearer(key))
        assert refused.status_code == 401
        assert f"{record.id} expired at" in refused.json()["error"]["message"]
        listed = (await cb.http.get("/v1/keys?account=acme")).json()["keys"]
        assert [k["active"] for k in listed] == [False]
        for expires in ("soon", "0m", "99999w"):
            bad = await cb.http.post("/v1/keys", json={"account": "acme", "expires": expires})
            assert bad.status_code == 400, expires


async def test_the_last_admin_key_is_not_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        (admin,) = (await cb.http.get("/v1/keys")).json()["keys"]
        assert admin["id"] == hash_key(cb.key)[:16]
        refused = await cb.http.delete(f"/v1/keys/{admin['id']}")
        assert refused.status_code == 409
        assert "admin key first" in refused.json()["error"]["hint"]
        spare = await _make(cb, admin=True)
        assert (await cb.http.delete(f"/v1/keys/{admin['id']}")).status_code == 200
        assert (await cb.http.get("/v1/keys")).status_code == 401
        still = await cb.http.get("/v1/keys", headers=bearer(spare["key"]))
        assert still.status_code == 200
        last = await cb.http.delete(f"/v1/keys/{spare['id']}", headers=bearer(spare["key"]))
        assert last.status_code == 409


async def test_an_expiring_admin_key_does_not_count_as_the_one_left(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        (admin,) = (await cb.http.get("/v1/keys")).json()["keys"]
        await _make(cb, admin=True, expires="1h")  # gone in an hour: every admin locked out
        refused = await cb.http.delete(f"/v1/keys/{admin['id']}")
        assert refused.status_code == 409, refused.text
        assert "others expire before it" in refused.json()["error"]["message"]
        await _make(cb, admin=True)  # one that does not expire: now it may go
        assert (await cb.http.delete(f"/v1/keys/{admin['id']}")).status_code == 200
