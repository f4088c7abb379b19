"""Two `coldbrew serve` gateways on one PostgreSQL database, on two loopback ports: endpoints
are spread over both, every job ends exactly once, `runsync` works on either, a deploy on one
is visible on the other within a second, and `kill -9` of one moves its endpoints to the other
within the lease TTL + 2 s, its running jobs requeued once."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.helpers import status_is, wait_until
from tests.pg_database import fresh_database

TTL_S = float(
    os.environ.get("COLDBREW_TEST_LEASE_TTL_S", "3")
)  # short: quick to watch (default 10)
JOBS = 200


def _gateway(root: Path, name: str, url: str, secrets_key: Path) -> tuple[Server, dict[str, str]]:
    home = root / name
    home.mkdir(mode=0o700)
    env = {
        "COLDBREW_DATABASE_URL": url,
        "COLDBREW_GATEWAY_ID": name,
        "COLDBREW_LEASE_TTL_S": str(TTL_S),
        "COLDBREW_SECRETS_KEY_PATH": str(secrets_key),  # one key seals the shared database
    }
    return Server(home=home, port=free_port()), env


def _cluster(server: Server, key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.url}/v1/cluster", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _db(url: str, query: str) -> list[Any]:
    """Rows read from the shared database itself."""
    import asyncpg

    async def read() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(read())


def _db_jobs(url: str) -> dict[str, tuple[str, int]]:
    """Every job's (status, attempts)."""
    return {r["id"]: (r["status"], r["attempts"]) for r in _db(url, "SELECT * FROM jobs")}


@pytest.mark.slow
def test_two_gateways_share_one_database(tmp_path: Path) -> None:
    with fresh_database("cb_cluster_e2e") as url:
        secrets_key = tmp_path / "secrets.key"
        a, a_env = _gateway(tmp_path, "ga", url, secrets_key)
        b, b_env = _gateway(tmp_path, "gb", url, secrets_key)
        try:
            a.start(FIXTURES / "toys", **a_env)
            (b.home / "artifacts").symlink_to(a.home / "artifacts")  # a shared artifacts dir
            b.start(**b_env)
            _scenario(a, b, url)
        finally:
            for server in (a, b):
                server.stop(signal.SIGKILL)


def _scenario(a: Server, b: Server, url: str) -> None:
    auth = {"Authorization": f"Bearer {a.key}"}  # made by the first gateway, valid on both
    with (
        httpx.Client(base_url=a.url, headers=auth, timeout=60) as ca,
        httpx.Client(base_url=b.url, headers=auth, timeout=60) as cb,
    ):
        _steps(a, b, ca, cb, url)


def _steps(a: Server, b: Server, ca: httpx.Client, cb: httpx.Client, url: str) -> None:
    key = a.key
    ids = {r["name"]: r["id"] for r in _db(url, "SELECT id, name FROM endpoints")}
    assert {"toy", "other", "counter"} <= set(ids)

    # ownership: every endpoint has exactly one owner
    def owners() -> tuple[set[int], set[int]]:
        return set(_cluster(a, key)["owned"]), set(_cluster(b, key)["owned"])

    wait_until(
        owners,
        lambda o: o[0] | o[1] == set(ids.values()) and not o[0] & o[1],
        timeout_s=TTL_S * 3,
        what="every endpoint owned by one gateway",
    )

    # a deploy on one gateway is visible on the other within a second
    started = time.monotonic()
    a.cli("deploy", str(FIXTURES / "chaos"))
    deployed = time.monotonic()
    new = {e["name"] for e in ca.get("/v1/endpoints").json()["endpoints"]} - set(ids)
    assert new
    wait_until(
        lambda: {e["name"] for e in cb.get("/v1/endpoints").json()["endpoints"]},
        lambda names: new <= names,
        timeout_s=1.0,
        interval_s=0.02,
        what="the deploy on gateway a, seen by gateway b",
    )
    seen_s = time.monotonic() - deployed
    print(
        f"deploy visible on the other gateway {seen_s * 1000:.0f} ms after the CLI returned "
        f"(deploy took {deployed - started:.1f} s)"
    )

    # runsync works on either gateway, whichever owns the endpoint
    for client in (ca, cb):
        body = client.post("/v2/other/runsync", json={"input": {"value": 7}}).json()
        assert body["status"] == "COMPLETED" and body["output"] == {"value": 7}, body
    assert _cluster(a, key)["forwarded"] + _cluster(b, key)["forwarded"] >= 1
    forged = ca.post("/v1/cluster/jobs", json={"job": {}, "wait_s": 1})  # skipping admission
    assert forged.status_code == 403, forged.text
    owner_of_other = ca if ids["other"] in _cluster(a, key)["owned"] else cb
    for label, client in (
        ("owner", owner_of_other),
        ("other gateway", cb if owner_of_other is ca else ca),
    ):
        took = []
        for _ in range(20):
            t0 = time.perf_counter()
            client.post("/v2/other/runsync", json={"input": {"value": 1}}).raise_for_status()
            took.append(time.perf_counter() - t0)
        print(f"runsync on the {label}: median {statistics.median(took) * 1000:.1f} ms")

    # /stream on a gateway that does not run the job: its owner's chunks, as they come
    counter = ids["counter"]
    elsewhere = cb if counter in _cluster(a, key)["owned"] else ca
    job_id = elsewhere.post("/v2/counter/run", json={"input": {"n": 6, "pause_s": 0.3}}).json()[
        "id"
    ]
    chunks: list[Any] = []
    live = 0  # polls that brought chunks while the job still ran
    for _ in range(200):
        body = elsewhere.get(f"/v2/counter/stream/{job_id}").json()
        chunks += [c["output"] for c in body["stream"]]
        live += bool(body["stream"]) and body["status"] == "IN_PROGRESS"
        if body["status"] == "COMPLETED":
            break
    assert chunks == [{"i": i} for i in range(6)] and live >= 1, (chunks, live)

    # 200 `run` jobs spread over both gateways and two endpoints: each ends exactly once
    submitted: dict[str, tuple[str, int]] = {}
    for i in range(JOBS):
        client = (ca, cb)[i % 2]
        endpoint = ("other", "toy")[(i // 2) % 2]
        job = client.post(f"/v2/{endpoint}/run", json={"input": {"value": i}}).json()
        submitted[job["id"]] = (endpoint, i)
    for job_id, (endpoint, value) in submitted.items():
        client = (cb, ca)[value % 2]  # read back through the other gateway
        body = wait_until(
            lambda c=client, e=endpoint, j=job_id: c.get(f"/v2/{e}/status/{j}").json(),
            status_is("COMPLETED", "FAILED"),
            timeout_s=60,
            what=f"job {job_id}",
        )
        assert body["status"] == "COMPLETED" and body["output"]["value"] == value, body
    stored = _db_jobs(url)
    assert {stored[j] for j in submitted} == {("COMPLETED", 1)}  # one run each

    # kill -9 the gateway that owns `toy`, while two of its jobs run
    toy = ids["toy"]
    owner, survivor = (a, b) if toy in _cluster(a, key)["owned"] else (b, a)
    client = ca if survivor is a else cb
    # (first: a running job cancelled through the gateway that does not run it)
    doomed = client.post("/v2/toy/run", json={"input": {"sleep_s": 30}}).json()["id"]
    wait_until(
        lambda: client.get(f"/v2/toy/status/{doomed}").json(),
        status_is("IN_PROGRESS"),
        timeout_s=30,
        what="the job to cancel running",
    )
    assert client.post(f"/v2/toy/cancel/{doomed}").json()["status"] == "CANCELLED"
    assert _cluster(survivor, key)["cancelsSent"] == 1  # to the owner, whose worker ran it
    slow = [
        client.post("/v2/toy/run", json={"input": {"value": n, "sleep_s": 3}}).json()["id"]
        for n in range(2)
    ]
    for job_id in slow:
        wait_until(
            lambda job_id=job_id: client.get(f"/v2/toy/status/{job_id}").json(),
            status_is("IN_PROGRESS"),
            timeout_s=30,
            what=f"job {job_id} running on the owner",
        )
    killed = time.monotonic()
    owner.stop(signal.SIGKILL)
    wait_until(
        lambda: _cluster(survivor, key)["owned"],
        lambda owned: toy in owned,
        timeout_s=TTL_S + 2,
        interval_s=0.05,
        what="the survivor owning the dead gateway's endpoint",
    )
    took_over_s = time.monotonic() - killed
    print(f"endpoint taken over {took_over_s:.2f} s after kill -9 (lease TTL {TTL_S:g} s)")
    for job_id in slow:
        body = wait_until(
            lambda job_id=job_id: client.get(f"/v2/toy/status/{job_id}").json(),
            status_is("COMPLETED", "FAILED"),
            timeout_s=60,
            what=f"job {job_id} finished after the take-over",
        )
        assert body["status"] == "COMPLETED", body
    stored = _db_jobs(url)
    assert [stored[j] for j in slow] == [("COMPLETED", 2)] * 2  # requeued once, run again once
    # the survivor answers runsync for every endpoint now
    body = client.post("/v2/toy/runsync", json={"input": {"value": "after"}}).json()
    assert body["status"] == "COMPLETED" and body["output"]["value"] == "after"
