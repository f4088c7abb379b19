"""Triggers and pipeline runs on two `coldbrew serve` gateways sharing one PostgreSQL database:
each trigger runs on exactly one gateway (its lease), and `kill -9` of that gateway moves the
trigger to the other within the lease TTL + 2 s with exactly N jobs and N sink rows for N
messages; a pipeline run whose driving gateway is killed mid-stage completes on the survivor,
with no restart and no finished stage run again."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import EXAMPLES, FIXTURES
from tests.e2e.conftest import Server
from tests.e2e.test_gateways import TTL_S, _cluster, _db, _gateway
from tests.e2e.triggers_helpers import PgDatabase, RedisFeeder
from tests.helpers import status_is, wait_until
from tests.pg_database import fresh_database

pytestmark = pytest.mark.timeout(420)
N = 200
SLOW = {
    "name": "slowchain",
    "steps": [
        {"name": "first", "endpoint": "other", "input": {"value": "$input.n"}},
        {"name": "slow", "endpoint": "toy", "input": {"value": "$.value", "sleep_s": 4}},
        {"name": "last", "endpoint": "other", "input": {"value": "$.value"}},
    ],
}


def _holder(servers: list[Server], key: str, match: Callable[[str], bool]) -> list[Server]:
    """The live gateways that hold a lease `match` accepts (exactly one, once settled)."""
    return [s for s in servers if any(match(n) for n in _cluster(s, key)["leases"])]


def _sink_rows(pg: PgDatabase) -> list[Any]:
    return pg.query("SELECT message_key, status, output FROM results")


def _jobs_by(url: str, endpoint: str, field: str) -> Counter[Any]:
    """How many jobs of `endpoint` the shared database holds per value of an input field."""
    rows = _db(url, f"SELECT input FROM jobs WHERE endpoint = '{endpoint}'")
    return Counter(orjson.loads(r["input"]).get(field) for r in rows)


@pytest.mark.slow
def test_triggers_and_runs_move_to_the_survivor_of_a_kill_9(tmp_path: Path) -> None:
    with fresh_database("cb_owners_e2e") as url, PgDatabase() as sink:
        feeder = RedisFeeder(sink)
        secrets_key = tmp_path / "secrets.key"
        a, a_env = _gateway(tmp_path, "ga", url, secrets_key)
        b, b_env = _gateway(tmp_path, "gb", url, secrets_key)
        try:
            a.start(FIXTURES / "toys", EXAMPLES / "echo", **a_env)
            (b.home / "artifacts").symlink_to(a.home / "artifacts")
            b.start(**b_env)
            survivor = _trigger_phase(a, b, url, sink, feeder)
            dead = b if survivor is a else a
            # the killed gateway comes back under a new id: two gateways again
            dead.start(**{**(a_env if dead is a else b_env), "COLDBREW_GATEWAY_ID": "gc"})
            _pipeline_phase([a, b], a.key, url)
        finally:
            feeder.close()
            for server in (a, b):
                server.stop(signal.SIGKILL)


def _trigger_phase(a: Server, b: Server, url: str, sink: PgDatabase, feeder: RedisFeeder) -> Server:
    key = a.key
    with a.http() as http:
        created = http.post(
            "/v1/triggers",
            json={
                "name": "orders",
                "source": {**feeder.source(), "claim_idle_ms": 1000},
                "endpoint": "echo",
                "sink": {"kind": "postgres", "dsn": sink.dsn, "table": "results"},
                "batch_size": 20,
                "max_in_flight": 40,
            },
        )
    assert created.status_code == 201, created.text
    lease = f"trigger:{created.json()['id']}"
    (owner,) = wait_until(
        lambda: _holder([a, b], key, lease.__eq__),
        lambda held: len(held) == 1,
        timeout_s=TTL_S * 3,
        what="one gateway running the trigger",
    )
    survivor = b if owner is a else a
    wait_until(lambda: sink.query("SELECT to_regclass('results')")[0][0], what="sink table")
    feeder.publish([{"i": i} for i in range(N)])
    wait_until(
        lambda: len(_sink_rows(sink)),
        lambda c: c >= N // 4,
        timeout_s=120,
        interval_s=0.02,
        what="a quarter of the results",
    )
    killed = time.monotonic()
    owner.stop(signal.SIGKILL)  # mid-stream: jobs queued, running, acked, unacked
    assert len(_sink_rows(sink)) < N, "the kill came after the last result: not mid-stream"
    wait_until(
        lambda: _holder([survivor], key, lease.__eq__),
        timeout_s=TTL_S + 2,
        interval_s=0.05,
        what="the survivor running the dead gateway's trigger",
    )
    print(f"trigger taken over {time.monotonic() - killed:.2f} s after kill -9 (TTL {TTL_S:g} s)")
    rows = wait_until(
        lambda: _sink_rows(sink), lambda r: len(r) >= N, timeout_s=180, what="every result"
    )
    assert len(rows) == N
    assert sorted(orjson.loads(r["output"])["i"] for r in rows) == list(range(N))
    assert {r["status"] for r in rows} == {"COMPLETED"}
    jobs = _jobs_by(url, "echo", "i")
    assert sorted(jobs) == list(range(N)) and set(jobs.values()) == {1}, jobs
    auth = {"Authorization": f"Bearer {key}"}  # made by the first gateway, valid on both
    with httpx.Client(base_url=survivor.url, headers=auth, timeout=60) as http:
        stats = wait_until(
            lambda: http.get(f"/v1/triggers/{created.json()['id']}").json()["stats"],
            lambda s: s["inFlight"] == 0,
            what="nothing in flight",
        )
    assert (stats["completed"], stats["deadLettered"]) == (N, 0), stats
    return survivor


def _pipeline_phase(servers: list[Server], key: str, url: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=servers[0].url, headers=auth, timeout=60) as http:
        assert http.post("/v1/pipelines", json=SLOW).status_code == 201
    wait_until(  # both gateways see each other again
        lambda: [len(_cluster(s, key)["peers"]) for s in servers],
        lambda peers: peers == [2, 2],
        timeout_s=TTL_S * 3,
        what="two live gateways",
    )
    with httpx.Client(base_url=servers[1].url, headers=auth, timeout=60) as http:
        run_id = http.post("/v2/slowchain/run", json={"input": {"n": 5}}).json()["id"]

    def is_lease(name: str) -> bool:
        return name.startswith("pipeline:") and name.endswith("/slowchain")

    (driver,) = wait_until(
        lambda: _holder(servers, key, is_lease),
        lambda held: len(held) == 1,
        timeout_s=TTL_S * 3,
        what="one gateway driving the pipeline's runs",
    )
    survivor = servers[1] if driver is servers[0] else servers[0]
    with httpx.Client(base_url=survivor.url, headers=auth, timeout=60) as http:
        wait_until(
            lambda: http.get(f"/v2/slowchain/status/{run_id}").json()["stages"],
            lambda stages: any(
                s["stage"] == "slow" and s["status"] == "IN_PROGRESS" for s in stages
            ),
            timeout_s=60,
            what="the slow stage running",
        )
        killed = time.monotonic()
        driver.stop(signal.SIGKILL)
        wait_until(
            lambda: _holder([survivor], key, is_lease),
            timeout_s=TTL_S + 2,
            interval_s=0.05,
            what="the survivor driving the dead gateway's runs",
        )
        print(f"pipeline taken over {time.monotonic() - killed:.2f} s after kill -9")
        body = wait_until(
            lambda: http.get(f"/v2/slowchain/status/{run_id}").json(),
            status_is("COMPLETED", "FAILED"),
            timeout_s=90,
            what="the run ending on the survivor",
        )
    assert body["status"] == "COMPLETED" and body["output"]["value"] == 5, body
    assert body["attempt"] == 1 and [s["status"] for s in body["stages"]] == ["COMPLETED"] * 3
    assert _jobs_by(url, "other", "value") == {5: 2}  # first and last, once each
    assert _jobs_by(url, "toy", "value") == {5: 1}  # the slow stage: one job (maybe requeued)
