"""`kill -9` of the server while jobs are queued and running loses none of them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from coldbrew import verify_webhook
from tests.conftest import FIXTURES
from tests.e2e.conftest import Server
from tests.helpers import wait_until


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_kill_9_while_jobs_are_queued_and_running_loses_none(server: Server) -> None:
    with webhook_receiver() as (hook_url, received):
        server.start(FIXTURES / "toys")
        with server.http() as http:
            secret = http.get("/v1/account").json()["webhookSecret"]
            ids = [
                http.post(
                    "/v2/toy/run", json={"input": {"value": i, "sleep_s": 2}, "webhook": hook_url}
                ).json()["id"]
                for i in range(6)
            ]
            statuses = wait_until(
                lambda: [http.get(f"/v1/jobs/{j}").json()["status"] for j in ids],
                lambda statuses: statuses.count("IN_PROGRESS") == 3,
                timeout_s=60,
                interval_s=0.05,
                what="three jobs running",
            )
        running = {j for j, s in zip(ids, statuses, strict=True) if s == "IN_PROGRESS"}

        server.stop(signal.SIGKILL)
        server.start()

        with server.http() as http:
            jobs = wait_until(
                lambda: [http.get(f"/v1/jobs/{j}").json() for j in ids],
                lambda jobs: [j.get("webhook", {}).get("state") for j in jobs] == ["delivered"] * 6,
                timeout_s=90,
                what="every webhook delivered",
            )

    assert [j["status"] for j in jobs] == ["COMPLETED"] * 6
    assert [j["output"]["value"] for j in jobs] == list(range(6))
    assert {j["id"] for j in jobs if j["attempts"] == 2} == running
    by_job = {}
    for headers, body in received:
        assert verify_webhook(secret, headers, body)
        status = orjson.loads(body)
        by_job[status["id"]] = status["status"]
    assert by_job == dict.fromkeys(ids, "COMPLETED")
