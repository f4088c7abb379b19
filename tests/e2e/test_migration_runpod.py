"""RunPod workers as they are found in the wild: slow synchronous handlers.

A real `coldbrew serve` runs each handler through the official `runpod` SDK worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.helpers import status_is, wait_until

pytest.importorskip("runpod")


@pytest.fixture(scope="module")
def rp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(home=tmp_path_factory.mktemp("runpod-migrate") / "home", port=free_port())
    try:
        server.start(FIXTURES / "runpod_slow", RUNPOD_PING_INTERVAL="1000")
        yield server
    finally:
        server.stop()


def _wait_final(http: httpx.Client, endpoint: str, job_id: str, within_s: float) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: http.get(f"/v2/{endpoint}/status/{job_id}").json(),
        status_is("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"),
        timeout_s=within_s,
        interval_s=0.2,
        what=f"job {job_id} finished",
    )
    return body


@pytest.mark.slow
def test_a_synchronous_handler_of_seven_seconds_completes(rp: Server) -> None:
    """The SDK blocks its event loop for the whole handler, then posts the result on the
    connection it opened before: the server must not have closed it as idle meanwhile."""
    with rp.http() as http:
        first = http.post("/v2/runpod_slow/run", json={"input": {"seconds": 7}}).json()
        done = _wait_final(http, "runpod_slow", first["id"], within_s=90)
        assert done["status"] == "COMPLETED", done
        assert done["output"] == {"slept": 7}
        # and the same worker goes on to take the next job
        second = http.post("/v2/runpod_slow/run", json={"input": {"seconds": 7}}).json()
        again = _wait_final(http, "runpod_slow", second["id"], within_s=60)
        assert again["status"] == "COMPLETED", again
        assert again["workerId"] == done["workerId"]


def test_a_worker_repository_deploys_from_its_root_with_the_cli(rp: Server) -> None:
    """RunPod's template layout: the Dockerfile runs `src/handler.py`, which imports a sibling."""
    deployed = rp.cli("deploy", str(FIXTURES / "runpod_repo"))
    assert "runpod_repo: v1 (new version)" in deployed.stdout
    assert "runs in its own environment" in deployed.stdout  # built from requirements.txt
    assert "  install: Installed" in deployed.stdout or "already built" in deployed.stdout
    with rp.http() as http:
        body = http.post("/v2/runpod_repo/runsync", json={"input": {"name": "ann"}}).json()
        if body["status"] != "COMPLETED":
            body = _wait_final(http, "runpod_repo", body["id"], within_s=60)
        assert body["output"] == {"greeting": "hello ann"}

    # another directory under the same name is refused, naming the endpoint and the way out
    refused = rp.cli("deploy", str(FIXTURES / "runpod_sync"), "--name", "runpod_repo", check=False)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "'runpod_repo' already exists" in said and "--replace" in said
