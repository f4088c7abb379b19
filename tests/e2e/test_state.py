"""`coldbrew.state` end to end: a chat keeps its history across calls, workers and a `kill -9`
of the server; entries are the account's and the endpoint's own; the API lists and deletes."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server

CHAT = Path(__file__).parents[2] / "examples" / "chat"


def _say(http: httpx.Client, session: str, message: str) -> dict[str, Any]:
    body = http.post(
        "/v2/chat/runsync", json={"input": {"session_id": session, "message": message}}
    )
    assert body.status_code == 200, body.text
    assert body.json()["status"] == "COMPLETED", body.text
    output: dict[str, Any] = body.json()["output"]
    return output


def test_chat_history_survives_calls_and_a_kill_9_of_the_server(server: Server) -> None:
    server.start(CHAT)
    with server.http() as http:
        assert _say(http, "s1", "my name is Ada")["reply"] == "Nice to meet you, Ada."
        second = _say(http, "s1", "what is my name?")
        assert (second["reply"], second["turn"]) == ("Your name is Ada.", 2)
        assert _say(http, "s2", "what is my name?")["reply"] == "You have not told me your name."
        listed = http.get("/v1/endpoints/chat/state").json()
        assert [e["key"] for e in listed["entries"]] == ["session:s1", "session:s2"]
        assert listed["entries"][0]["expiresAt"] is not None  # the model gave it a ttl
    out = server.cli("state", "list", "chat").stdout
    assert "session:s1" in out and "session:s2" in out

    server.stop(signal.SIGKILL)
    server.start(CHAT)
    with server.http() as http:
        third = _say(http, "s1", "what is my name?")
        assert (third["reply"], third["turn"]) == ("Your name is Ada.", 3)
        history = http.get("/v1/endpoints/chat/state/session:s1").json()["value"]
        assert [t["role"] for t in history] == ["user", "assistant"] * 3
        assert http.delete("/v1/endpoints/chat/state/session:s1").json() == {
            "deleted": "session:s1"
        }
        assert http.get("/v1/endpoints/chat/state/session:s1").status_code == 404
        assert _say(http, "s1", "what is my name?")["reply"] == "You have not told me your name."
    assert "deleted 2 key(s)" in server.cli("state", "delete", "chat", "--all").stdout


def test_state_is_the_accounts_and_endpoints_own(server: Server) -> None:
    server.start(FIXTURES / "stateful")
    beta = server.cli("keys", "create", "--account", "beta").stdout.strip()
    with server.http() as http:
        http.post("/v2/prober/runsync", json={"input": {"op": "set", "key": "secret", "value": 1}})

        def count(n: int) -> dict[str, Any]:
            return http.post("/v2/counter/runsync", json={"input": {"n": n}}).json()["output"]

        with ThreadPoolExecutor(8) as pool:
            outputs = list(pool.map(count, range(40)))
        assert sorted(o["hits"] for o in outputs) == list(range(1, 41))  # incr is atomic
        assert max(o["seen"] for o in outputs) == 40  # update is a compare-and-set: none lost
        assert http.get("/v1/endpoints/counter/state/hits").json()["value"] == 40

        forged = http.post("/v2/prober/runsync", json={"input": {"key": "hits"}}).json()
        assert forged["output"] == {"forged": None, "keys": ["secret"]}  # its own keys only
        big = http.post("/v2/prober/runsync", json={"input": {"op": "big"}}).json()["output"]
        assert big["refused"] == "PayloadTooLarge" and "more than" in big["message"]

    other = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {beta}"})
    with other:
        missing = other.get("/v1/endpoints/counter/state")
        assert missing.status_code == 404  # beta has no endpoint counter: acme's stays hidden
        assert other.delete("/v1/endpoints/counter/state/hits").status_code == 404
    with server.http() as http:
        assert http.get("/v1/endpoints/counter/state/hits").json()["value"] == 40
