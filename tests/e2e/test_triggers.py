"""Triggers end to end against a real `coldbrew serve` and the real services on loopback.

The source kind is a parameter (`FEEDERS` in triggers_helpers.py): every kind must turn N
messages into exactly N jobs and N sink rows, even when the server is `kill -9`ed mid-stream,
and put a poison message in the dead letters after its retries.
"""

from __future__ import annotations

import signal
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import EXAMPLES, FIXTURES
from tests.e2e.conftest import Server
from tests.e2e.test_durability import webhook_receiver
from tests.e2e.triggers_helpers import FEEDERS, PgDatabase, jobs_per_input
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def pg() -> Iterator[PgDatabase]:
    with PgDatabase() as db:
        yield db


def _feeder(kind: str, pg: PgDatabase) -> Any:
    return FEEDERS[kind](pg)


def _create(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    with server.http() as http:
        response = http.post("/v1/triggers", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def _sink_rows(pg: PgDatabase, table: str = "results") -> list[Any]:
    try:
        return pg.query(f"SELECT message_key, status, output, error FROM {table}")
    except Exception as exc:  # the sink creates its table when the trigger starts
        if "does not exist" in str(exc):
            return []
        raise


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FEEDERS))
def test_n_messages_make_n_jobs_and_n_results_across_a_kill_9(
    kind: str, server: Server, pg: PgDatabase
) -> None:
    feeder = _feeder(kind, pg)
    n = 300
    try:
        server.start(EXAMPLES / "echo")
        trigger = _create(
            server,
            {
                "name": "orders",
                "source": feeder.source(),
                "endpoint": "echo",
                "sink": {"kind": "postgres", "dsn": pg.dsn, "table": "results"},
                "batch_size": 20,
                "max_in_flight": 40,
            },
        )
        wait_until(lambda: pg.query("SELECT to_regclass('results')")[0][0], what="sink table")
        feeder.publish([{"i": i} for i in range(n)])
        wait_until(
            lambda: len(_sink_rows(pg)),
            lambda c: c >= n // 4,
            timeout_s=120,
            interval_s=0.02,
            what="a quarter of the results",
        )
        server.stop(signal.SIGKILL)  # mid-stream: jobs queued, running, acked, unacked
        assert len(_sink_rows(pg)) < n, "the kill came after the last result: not mid-stream"
        server.start()
        rows = wait_until(
            lambda: _sink_rows(pg), lambda r: len(r) >= n, timeout_s=180, what="every result"
        )
        assert len(rows) == n
        assert sorted(orjson.loads(r["output"])["i"] for r in rows) == list(range(n))
        assert {r["status"] for r in rows} == {"COMPLETED"}
        jobs = jobs_per_input(server.home, "echo", "i")
        assert sorted(jobs) == list(range(n)) and set(jobs.values()) == {1}, jobs
        with server.http() as http:  # the sink is written before the counters: wait for them
            stats = wait_until(
                lambda: http.get(f"/v1/triggers/{trigger['id']}").json()["stats"],
                lambda st: (st["completed"], st["deadLettered"], st["inFlight"]) == (n, 0, 0),
                what="the trigger's counters",
            )
        assert stats["failed"] == 0
    finally:
        feeder.close()


@pytest.mark.parametrize("kind", sorted(FEEDERS))
def test_a_poison_message_is_dead_lettered_after_its_retries(
    kind: str, server: Server, pg: PgDatabase
) -> None:
    feeder = _feeder(kind, pg)
    try:
        server.start(EXAMPLES / "echo")
        trigger = _create(
            server,
            {
                "name": "poison",
                "source": feeder.source(),
                "endpoint": "echo",
                "sink": {"kind": "postgres", "dsn": pg.dsn, "table": "results"},
                "max_attempts": 2,
            },
        )
        wait_until(lambda: pg.query("SELECT to_regclass('results')")[0][0], what="sink table")
        feeder.publish([{"i": 1}, {"i": 2, "fail": "poison pill"}, {"i": 3}])
        with server.http() as http:
            letters = wait_until(
                lambda: http.get(f"/v1/triggers/{trigger['id']}/dead-letters").json(),
                lambda body: body["deadLetters"],
                timeout_s=90,
                what="a dead letter",
            )["deadLetters"]
            rows = wait_until(lambda: _sink_rows(pg), lambda r: len(r) == 3, what="3 results")
            stats = http.get(f"/v1/triggers/{trigger['id']}").json()["stats"]
        (letter,) = letters
        assert letter["input"]["i"] == 2 and letter["attempts"] == 2
        assert "poison pill" in letter["error"]["message"]
        assert sorted(r["status"] for r in rows) == ["COMPLETED", "COMPLETED", "FAILED"]
        assert jobs_per_input(server.home, "echo", "i") == {1: 1, 2: 2, 3: 1}  # 2 attempts
        assert (stats["completed"], stats["failed"], stats["deadLettered"]) == (2, 2, 1)
        assert "poison pill" in stats["lastError"]["message"]
        if hasattr(feeder, "dead"):  # the source's own dead-letter place has it too
            (dead,) = wait_until(feeder.dead, what="the source's dead letter")
            assert dead["body"]["i"] == 2 and "poison pill" in dead["error"]["message"]
    finally:
        feeder.close()


def test_a_batched_endpoint_gets_batches(server: Server, pg: PgDatabase) -> None:
    feeder = _feeder("redis", pg)
    try:
        server.start(FIXTURES / "batched")
        _create(
            server,
            {
                "name": "doubles",
                "source": feeder.source(),
                "endpoint": "doubler",
                "sink": {"kind": "postgres", "dsn": pg.dsn, "table": "results"},
                "batch_size": 64,
                "batch_window_ms": 200,
            },
        )
        wait_until(lambda: pg.query("SELECT to_regclass('results')")[0][0], what="sink table")
        feeder.publish([{"x": float(i)} for i in range(64)])
        rows = wait_until(
            lambda: _sink_rows(pg), lambda r: len(r) == 64, timeout_s=90, what="64 results"
        )
        outputs = [orjson.loads(r["output"]) for r in rows]
        assert sorted(o["y"] for o in outputs) == [2.0 * i for i in range(64)]
        assert max(o["batch"] for o in outputs) > 1  # the model got lists of several messages
    finally:
        feeder.close()


def test_an_s3_upload_event_runs_the_endpoint_on_that_key(server: Server) -> None:
    with webhook_receiver() as (hook_url, received):
        _s3_round_trip(server, hook_url, received)


def _s3_round_trip(server: Server, hook_url: str, received: list[Any]) -> None:
    server.start(EXAMPLES / "echo")
    trigger = _create(
        server,
        {
            "name": "uploads",
            "source": {"kind": "s3"},
            "endpoint": "echo",
            "sink": {"kind": "webhook", "url": hook_url},
        },
    )
    url = trigger["eventsUrl"]
    event = {
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",  # MinIO's spelling; S3 omits "s3:"
                "s3": {
                    "bucket": {"name": "photos"},
                    "object": {"key": "cats/a+b%C3%A9.jpg", "size": 1234, "sequencer": "0A1"},
                },
            },
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "photos"}, "object": {"key": "old.jpg"}},
            },
        ]
    }
    with server.http() as http:
        assert http.post(url.split("?")[0] + "?sig=forged", json=event).status_code == 401
        first = http.post(url, json=event)
        again = http.post(url, json=event)  # S3 delivers at least once
        assert first.status_code == again.status_code == 200, first.text
        assert first.json() == {"accepted": 1}
        stats = wait_until(
            lambda: http.get(f"/v1/triggers/{trigger['id']}").json()["stats"],
            lambda s: s["completed"] == 1,
            what="the job",
        )
    assert stats["received"] == 1
    key = urllib.parse.unquote_plus("cats/a+b%C3%A9.jpg")
    assert jobs_per_input(server.home, "echo", "key") == {key: 1}
    (result,) = wait_until(lambda: [orjson.loads(b)["results"] for _, b in received], what="hook")
    assert [(r["status"], r["output"]["key"]) for r in result] == [("COMPLETED", key)]


def test_triggers_cli_create_list_pause_resume_delete(server: Server, pg: PgDatabase) -> None:
    feeder = _feeder("redis", pg)
    try:
        server.start(EXAMPLES / "echo")
        created = server.cli_json(
            "triggers",
            "create",
            "cli-orders",
            "--source",
            "redis",
            "--set",
            f"stream={feeder.stream}",
            "--set",
            "start=0",
            "--endpoint",
            "echo",
            "--sink",
            "postgres:results",
            "--sink-set",
            f"dsn={pg.dsn}",
            "--json",
        )
        assert created["source"]["stream"] == feeder.stream
        feeder.publish([{"i": 1}])
        wait_until(lambda: len(_sink_rows(pg)), lambda c: c == 1, what="a result")
        listing = server.cli("triggers", "list").stdout
        assert "cli-orders" in listing and "ACTIVE" in listing
        assert "PAUSED" in server.cli("triggers", "pause", "cli-orders").stdout
        feeder.publish([{"i": 2}])
        assert "ACTIVE" in server.cli("triggers", "resume", "cli-orders").stdout
        wait_until(lambda: len(_sink_rows(pg)), lambda c: c == 2, what="the message sent paused")
        server.cli("triggers", "delete", "cli-orders")
        assert "cli-orders" not in server.cli("triggers", "list").stdout
    finally:
        feeder.close()
