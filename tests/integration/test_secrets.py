"""Per-endpoint secrets with real workers: delivered to that endpoint's new workers only, never
readable back, scoped to the account, and absent from every response, log and database byte."""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from coldbrew.cli.serve import deploy_local
from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running, wait_for

pytestmark = pytest.mark.anyio
SECRETIVE = FIXTURES / "secretive"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Seen:
    """Every response body a test received, to look for a secret's value in."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, response: httpx.Response) -> httpx.Response:
        self.bodies.append(response.text)
        return response


async def _vault(cb: Running, seen: Seen, endpoint: str = "vault") -> dict[str, Any]:
    answer = seen(
        await cb.http.post(
            f"/v2/{endpoint}/runsync", json={"input": {"names": ["API_TOKEN", "OTHER"]}}
        )
    )
    body = answer.json()
    assert body["status"] == "COMPLETED", body
    output: dict[str, Any] = body["output"]
    return output


def _assert_nowhere(value: str, home: Path, seen: Seen, caplog: pytest.LogCaptureFixture) -> None:
    needle = value.encode()
    for body in seen.bodies:
        assert value not in body
    assert value not in caplog.text
    for path in home.rglob("*"):
        if path.is_file() and path.name != "secrets.key":
            assert needle not in path.read_bytes(), path  # logs, database, WAL, artifacts


@pytest.mark.parametrize("fast_start", [False, True], ids=["spawned", "forked"])
async def test_secrets_reach_only_their_endpoints_workers_and_are_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fast_start: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    value, seen = "sv-" + secrets.token_hex(16), Seen()
    async with running(tmp_path, fast_start=fast_start) as cb:
        # set before the endpoint exists, as on RunPod's template: allowed
        before = seen(await cb.http.patch("/v1/endpoints/vault/secrets", json={"API_TOKEN": value}))
        assert before.status_code == 200
        assert [s["name"] for s in before.json()["secrets"]] == ["API_TOKEN"]
        await deploy_local(cb.platform, SECRETIVE)

        vault = await _vault(cb, seen)
        assert vault["env"] == {"API_TOKEN": digest(value), "OTHER": None}
        assert vault["at_setup"] == digest(value)  # setup() sees it too
        neighbour = await _vault(cb, seen, "neighbour")  # same account, another endpoint
        assert neighbour["env"] == {"API_TOKEN": None, "OTHER": None}

        listed = seen(await cb.http.get("/v1/endpoints/vault/secrets")).json()
        assert [s["name"] for s in listed["secrets"]] == ["API_TOKEN"]
        for path in ("/v1/endpoints/vault", "/v1/endpoints", "/v1/account", "/v1/keys"):
            seen(await cb.http.get(path))
        bad = seen(await cb.http.patch("/v1/endpoints/vault/secrets", json={"LD_PRELOAD": value}))
        assert bad.status_code == 400
        _assert_nowhere(value, tmp_path, seen, caplog)


async def test_another_account_can_neither_read_nor_change_them(tmp_path: Path) -> None:
    value, seen = "sv-" + secrets.token_hex(16), Seen()
    async with running(tmp_path, SECRETIVE, fast_start=False) as cb:
        await cb.http.patch("/v1/endpoints/vault/secrets", json={"API_TOKEN": value})
        key = (await cb.http.post("/v1/keys", json={"account": "acme"})).json()["key"]
        acme = {"Authorization": f"Bearer {key}"}
        theirs = await cb.http.get("/v1/endpoints/vault/secrets", headers=acme)
        assert theirs.json() == {"endpoint": "vault", "secrets": []}
        own = await cb.http.patch(
            "/v1/endpoints/vault/secrets", json={"API_TOKEN": "acme's"}, headers=acme
        )
        assert own.status_code == 200  # acme's own (not yet deployed) endpoint named vault
        gone = await cb.http.patch(
            "/v1/endpoints/vault/secrets", json={"API_TOKEN": None}, headers=acme
        )
        assert gone.json()["secrets"] == []
        assert (await _vault(cb, seen))["env"]["API_TOKEN"] == digest(value)  # untouched
        names = (await cb.http.get("/v1/endpoints/vault/secrets")).json()["secrets"]
        assert [s["name"] for s in names] == ["API_TOKEN"]


@pytest.mark.parametrize("fast_start", [False, True], ids=["spawned", "forked"])
async def test_a_rotation_reaches_new_workers_and_running_ones_keep_theirs(
    tmp_path: Path, fast_start: bool
) -> None:
    seen = Seen()
    async with running(tmp_path, SECRETIVE, fast_start=fast_start) as cb:
        await cb.http.patch("/v1/endpoints/vault/secrets", json={"API_TOKEN": "first"})
        first = await _vault(cb, seen)
        assert first["env"]["API_TOKEN"] == digest("first")
        await cb.http.patch("/v1/endpoints/vault/secrets", json={"API_TOKEN": "second"})
        again = await _vault(cb, seen)
        # a worker keeps the environment it started with
        expected = "first" if again["pid"] == first["pid"] else "second"
        assert again["env"]["API_TOKEN"] == digest(expected)
        await wait_for(lambda: _live(cb), lambda n: n == 0)  # idle_timeout_s=0.2: scales to 0
        fresh = await _vault(cb, seen)
        assert fresh["pid"] != first["pid"]
        assert fresh["env"]["API_TOKEN"] == digest("second")
        await cb.http.patch("/v1/endpoints/vault/secrets", json={"API_TOKEN": None})
        await wait_for(lambda: _live(cb), lambda n: n == 0)
        assert (await _vault(cb, seen))["env"]["API_TOKEN"] is None


async def _live(cb: Running) -> int:
    return cb.live_workers("vault")


async def test_bad_requests_name_the_problem(tmp_path: Path) -> None:
    async with running(tmp_path) as cb:
        for body, status in (({}, 400), ({"A": 1}, 400), ({"PATH": "x"}, 400)):
            response = await cb.http.patch("/v1/endpoints/vault/secrets", json=body)
            assert response.status_code == status, body
            assert response.json()["error"]["hint"]
        bad_name = await cb.http.get("/v1/endpoints/Not A Name/secrets")
        assert bad_name.status_code == 400
        anonymous = await cb.http.get("/v1/endpoints/vault/secrets", headers={"Authorization": ""})
        assert anonymous.status_code == 401
