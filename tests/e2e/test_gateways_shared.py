"""Two `coldbrew serve` gateways on one PostgreSQL database and one Redis, as behind a load
balancer: an account's cap holds across both, a budget stop found on one answers 402 on both,
and a webhook retry survives `kill -9` of the gateway that owed it.

Both gateways dispatch every endpoint here; with endpoint ownership (one owner per endpoint)
the same assertions hold, since the cap, the stops and the outbox are shared either way: the
cap is tested on two endpoints of one account, sent through both gateways, so it needs the
shared slots whether one gateway runs both endpoints' workers or each gateway runs one.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.helpers import status_is, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PG = ("-h", "127.0.0.1", "-U", "postgres")
CAP = 4


def _service_or_skip(args: list[str], what: str) -> None:
    """PostgreSQL and Redis on loopback: CI has both (a failure there); elsewhere a skip."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"{what} is not reachable: {done.stderr}")
        pytest.skip(f"no {what} on loopback (CI always has one)")


@pytest.fixture
def database() -> Iterator[str]:
    name = f"cb_shared_{uuid.uuid4().hex[:10]}"
    _service_or_skip(["createdb", *PG, name], "PostgreSQL")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        subprocess.run(["dropdb", *PG, "--force", name], capture_output=True, timeout=60)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    _service_or_skip(["redis-cli", "-h", "127.0.0.1", "ping"], "Redis")
    prefix = f"cbe2e-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", f"{prefix}:*"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "del", *keys], capture_output=True)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that answers 503 to the first `fail_first` posts, then 200."""

    fail_first = 2
    posts: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).posts.append((self.headers["webhook-id"], body))
        self.send_response(503 if len(self.posts) <= self.fail_first else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"posts": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gateways(tmp_path: Path, database: str, redis_prefix: str) -> Iterator[list[Server]]:
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {
        "COLDBREW_DATABASE_URL": database,
        "COLDBREW_REDIS_URL": "redis://127.0.0.1:6379/0",
        "COLDBREW_REDIS_PREFIX": redis_prefix,
        "COLDBREW_SHARED_DIR": str(shared),
        "COLDBREW_SECRETS_KEY_PATH": str(shared / "secrets.key"),
        "COLDBREW_ACCOUNT_CONCURRENCY_CAP": str(CAP),
        "COLDBREW_BUDGET_CHECK_S": "600",  # a stop must reach the other gateway, not its check
        "COLDBREW_WEBHOOK_BACKOFF_S": "3",
        "COLDBREW_WEBHOOK_TIMEOUT_S": "2",
        "COLDBREW_WEBHOOK_CLAIM_S": "3",
        "COLDBREW_WEBHOOK_POLL_S": "0.5",
        "COLDBREW_SANDBOX": "off",
    }
    servers = [Server(home=tmp_path / f"gw{n}", port=free_port()) for n in (1, 2)]
    try:
        for srv in servers:  # one after the other: the second finds the first's deploy
            srv.home.mkdir()
            srv.start(
                FIXTURES / "shared_gateways",
                COLDBREW_GATEWAY_ID=srv.home.name,  # gw1, gw2: what their claims carry
                **env,
            )
        yield servers
    finally:
        for srv in servers:
            srv.stop(signal.SIGKILL if srv.process and srv.process.poll() is None else 0)


def _client(srv: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _most_at_once(outputs: list[dict[str, Any]]) -> int:
    events = sorted(
        [(o["started"], 1) for o in outputs] + [(o["ended"], -1) for o in outputs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_two_gateways_share_cap_budget_stops_and_webhooks(
    gateways: list[Server], receiver: tuple[str, type[_Receiver]], database: str
) -> None:
    one, two = gateways
    key = one.key  # the first gateway made the account; keys live in the shared database
    with _client(one, key) as first, _client(two, key) as second:
        _share_the_cap_and_stops([first, second], _one_endpoint_each([first, second], database))
        _survive_the_owners_death(gateways, {one.port: first, two.port: second}, receiver, database)


def _one_endpoint_each(clients: list[httpx.Client], database: str) -> list[str]:
    """Two endpoints that run on different gateways: with endpoint ownership, one owned by each
    (found in `GET /v1/cluster`); without, any two (both gateways run every endpoint)."""
    rows = _psql(database, "SELECT id, name FROM endpoints").splitlines()
    names = {int(i): name for i, name in (row.split("|") for row in rows)}

    def owned() -> list[list[str]]:
        found = [c.get("/v1/cluster").json() for c in clients]
        return [sorted(names[i] for i in f.get("owned", names)) for f in found]

    each = wait_until(
        owned,
        lambda o: (
            sorted(n for names_ in o for n in names_) == sorted(names.values())
            or all(mine == sorted(names.values()) for mine in o)
        ),
        timeout_s=30,
        what="every endpoint owned",
    )
    assert each[0] and each[1], f"one gateway owns every endpoint: {each}"
    return [each[0][0], each[1][0]]


def _share_the_cap_and_stops(clients: list[httpx.Client], endpoints: list[str]) -> None:
    """The account cap of 4 holds across both gateways (16 jobs on two endpoints of 4 workers
    each, run by different gateways: 8 could run at once, and do when each gateway counts only
    its own), and a hard stop
    set on one gateway answers 402 on both, long before a budget check."""
    jobs = [  # each endpoint through each gateway: one owner per endpoint or not, the same
        (endpoint, clients[n % 2].post(f"/v2/{endpoint}/run", json={"input": {"sleep_s": 1.5}}))
        for n in range(16)
        for endpoint in [endpoints[n // 2 % 2]]
    ]
    done = [
        wait_until(
            lambda e=endpoint, r=response: (
                clients[1].get(f"/v2/{e}/status/{r.json()['id']}").json()
            ),
            status_is("COMPLETED"),
            timeout_s=180,
            what=f"job {response.json()}",
        )
        for endpoint, response in jobs
    ]
    outputs = [d["output"] for d in done]
    most = _most_at_once(outputs)
    pids = {o["pid"] for o in outputs}
    print(f"\n  cap {CAP}: at most {most} jobs at once over {len(pids)} workers")
    assert most <= CAP
    assert most >= 2  # they did overlap: the cap, not a queue of one, bounded them

    clients[0].post(
        "/v1/budgets", json={"monthlyUsd": 0.000001, "hardStop": True}
    ).raise_for_status()
    started = time.monotonic()
    refused = wait_until(
        lambda: clients[1].post("/v2/slow/run", json={"input": {"sleep_s": 0}}).status_code,
        lambda code: code == 402,
        timeout_s=10,
        interval_s=0.02,
        what="402 on the other gateway",
    )
    print(f"  budget stop reached the other gateway in {time.monotonic() - started:.3f} s")
    assert refused == 402
    assert clients[0].post("/v2/slow/run", json={"input": {"sleep_s": 0}}).status_code == 402
    clients[0].post("/v1/budgets", json={"monthlyUsd": 1000.0}).raise_for_status()
    wait_until(
        lambda: clients[1].post("/v2/slow/run", json={"input": {"sleep_s": 0}}).status_code,
        lambda code: code == 200,
        timeout_s=10,
        what="the raised budget on the other gateway",
    )


def _survive_the_owners_death(
    gateways: list[Server],
    clients: dict[int, httpx.Client],
    receiver: tuple[str, type[_Receiver]],
    database: str,
) -> None:
    """A webhook retry survives kill -9 of the gateway that owed it."""
    one, two = gateways
    url, handler = receiver
    job = (
        clients[one.port]
        .post("/v2/slow/run", json={"input": {"sleep_s": 0.2}, "webhook": url})
        .json()
    )
    wait_until(
        lambda: len(handler.posts),
        lambda n: n >= 1,
        timeout_s=60,
        interval_s=0.05,
        what="the first webhook attempt",
    )
    owner = _claimed_by(database, job["id"], gateways)
    survivor = two if owner is one else one
    killed_at = time.monotonic()
    assert owner.process is not None
    owner.process.kill()  # SIGKILL: it owed attempt 2, 3 s later
    owner.process.wait()
    wait_until(
        lambda: len(handler.posts),
        lambda n: n >= 3,
        timeout_s=60,
        interval_s=0.05,
        what="the retries by the surviving gateway",
    )
    print(f"  webhook delivered {time.monotonic() - killed_at:.1f} s after kill -9 of its owner")
    assert len({msg_id for msg_id, _ in handler.posts}) == 1  # one message, three attempts
    assert handler.posts[-1][1]["id"] == job["id"]
    hook = wait_until(
        lambda: clients[survivor.port].get(f"/v1/jobs/{job['id']}").json()["webhook"],
        lambda found: found["state"] == "delivered",
        timeout_s=30,
        what="the webhook recorded as delivered",
    )
    assert [d["attempt"] for d in hook["deliveries"]] == [1, 2, 3]
    assert [d["statusCode"] for d in hook["deliveries"]] == [503, 503, 200]


def _psql(database: str, query: str) -> str:
    done = subprocess.run(
        ["psql", database, "-tA", "-c", query], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _claimed_by(database: str, job_id: str, servers: list[Server]) -> Server:
    """The gateway holding the job's webhook claim (its id is the claim's owner)."""
    owner = _psql(database, f"SELECT webhook_claimed_by FROM jobs WHERE id = '{job_id}'")
    for srv in servers:
        if owner == srv.home.name:
            return srv
    raise AssertionError(f"no gateway holds the claim {owner!r}")
