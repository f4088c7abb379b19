"""The trigger routes over ASGI: who may create which kind, what another account sees, and the
400s that name the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from coldbrew.api.app import create_app
from coldbrew.platform import Platform
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def gateway(home: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient, Any]]:
    platform = Platform.create(make_settings(home))
    admin_key = await platform.start()
    app = create_app(platform, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://coldbrew.test", headers=headers, timeout=60
    ) as http:
        try:
            yield platform, http, app.state.triggers
        finally:
            await app.state.triggers.stop()
            await platform.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CRON = {"name": "tick", "source": {"kind": "cron", "schedule": "0 3 * * *"}, "endpoint": "e"}
REDIS = {"name": "r", "source": {"kind": "redis", "stream": "s"}, "endpoint": "e"}


async def test_tenants_create_cron_and_s3_triggers_and_only_admins_the_rest(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as (platform, http, _):
        acme, _ = await platform.create_key("acme", False)
        beta, _ = await platform.create_key("beta", False)
        refused = await http.post("/v1/triggers", json=REDIS, headers=_bearer(acme))
        assert refused.status_code == 403
        sink = {**CRON, "sink": {"kind": "postgres", "dsn": "postgresql://x", "table": "t"}}
        assert (
            await http.post("/v1/triggers", json=sink, headers=_bearer(acme))
        ).status_code == 403
        created = await http.post("/v1/triggers", json=CRON, headers=_bearer(acme))
        assert created.status_code == 201, created.text
        trigger_id = created.json()["id"]
        assert created.json()["stats"]["received"] == 0
        uploads = {"name": "up", "source": {"kind": "s3"}, "endpoint": "e"}
        pushed = await http.post("/v1/triggers", json=uploads, headers=_bearer(acme))
        assert "/events?sig=" in pushed.json()["eventsUrl"]
        # another account neither sees nor steers it
        assert (await http.get("/v1/triggers", headers=_bearer(beta))).json() == {"triggers": []}
        hidden = await http.post(f"/v1/triggers/{trigger_id}/pause", headers=_bearer(beta))
        assert hidden.status_code == 404
        paused = await http.post("/v1/triggers/tick/pause", headers=_bearer(acme))  # by name
        assert paused.json()["state"] == "PAUSED"
        again = await http.post("/v1/triggers", json=CRON, headers=_bearer(acme))
        assert again.status_code == 409  # one name per account
        gone = await http.delete(f"/v1/triggers/{trigger_id}", headers=_bearer(acme))
        assert gone.status_code == 200
        names = [t["name"] for t in (await http.get("/v1/triggers")).json()["triggers"]]
        assert names == ["up"]  # the admin sees every account's


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "x", "source": {"kind": "ftp"}, "endpoint": "e"}, "unknown trigger source"),
        ({"name": "x", "source": "redis", "endpoint": "e"}, "JSON objects"),
        ({"name": "x", "source": {"kind": "cron", "schedule": "* *"}, "endpoint": "e"}, "cron"),
        ({**CRON, "max_in_flight": 0}, "max_in_flight must be between"),
        ({**CRON, "batch_size": "ten"}, "whole number"),
        ({"source": {"kind": "cron"}}, "needs a name"),
    ],
)
async def test_bad_requests_say_what_is_wrong(tmp_path: Path, body: Any, says: str) -> None:
    async with gateway(tmp_path) as (_, http, _manager):
        response = await http.post("/v1/triggers", json=body)
        assert response.status_code == 400, response.text
        assert says in response.json()["error"]["message"]
