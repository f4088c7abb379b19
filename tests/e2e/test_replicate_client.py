"""The official `replicate` client against a real `coldbrew serve` running unmodified Cog models."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.helpers import wait_until

replicate = pytest.importorskip("replicate")
from replicate.exceptions import ModelError, ReplicateError  # noqa: E402
from replicate.helpers import FileOutput  # noqa: E402
from replicate.webhook import InvalidSignatureError  # noqa: E402

COG_MODELS = [FIXTURES / "cog_predictor", FIXTURES / "cog_runner", FIXTURES / "cog_stream"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: the three Cog fixtures, deployed as they are."""
    srv = Server(home=tmp_path_factory.mktemp("replicate") / "home", port=free_port())
    try:
        banner = srv.start(*COG_MODELS)
        assert "deployed cog-hello v1" in banner
        assert "deployed runner v1" in banner
        assert "deployed cog-stream v1" in banner
        yield srv
    finally:
        srv.stop(signal.SIGKILL if srv.process and srv.process.poll() is None else 0)


@pytest.fixture
def client(served: Server) -> Iterator[Any]:
    replicate_client = replicate.Client(api_token=served.key, base_url=served.url)
    replicate_client.poll_interval = 0.05
    yield replicate_client
    replicate_client._client.close()  # the client never closes its own connection pool


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        self.received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], str]]]]:
    """A loopback HTTP server that records the webhooks it receives."""
    received: list[tuple[dict[str, str], str]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wait_for(condition: Any, what: str, timeout_s: float = 60) -> None:
    wait_until(condition, timeout_s=timeout_s, interval_s=0.05, what=what)


def test_run_waits_and_returns_the_file_output_and_setup_ran_once(client: Any) -> None:
    first = client.run("default/cog-hello", input={"name": "bob", "times": 2})
    assert isinstance(first, FileOutput)
    text = first.read().decode()
    assert text.startswith("hello bob hello bob | setups=1 ")
    second = client.run("default/cog-hello", input={"name": "ann", "style": "shout"})
    again = second.read().decode()
    assert again.startswith("HELLO ANN | setups=1 ")
    assert again.split("pid=")[1] == text.split("pid=")[1]  # the same worker, set up once


def test_create_get_wait_by_version_and_the_versions_schema(client: Any) -> None:
    model = client.models.get("default/cog-hello")
    version = model.latest_version
    assert len(version.id) == 64
    schema = version.openapi_schema["components"]["schemas"]["Input"]
    assert schema["properties"]["times"]["maximum"] == 5
    assert schema["properties"]["style"]["enum"] == ["plain", "shout"]
    assert schema["required"] == ["name"]

    prediction = client.predictions.create(version=version.id, input={"name": "cy"})
    assert prediction.status in ("starting", "processing", "succeeded")
    assert prediction.model == "default/cog-hello"
    prediction.wait()
    assert prediction.status == "succeeded"
    fetched = client.predictions.get(prediction.id)
    assert fetched.status == "succeeded"
    assert fetched.output.startswith("data:text/plain;base64,")
    assert "greeting cy 1 time(s)" in fetched.logs
    assert fetched.metrics["predict_time"] >= 0
    assert any(p.id == prediction.id for p in client.predictions.list().results)

    pinned = client.run(f"default/cog-hello:{version.id}", input={"name": "dee"})
    assert pinned.read().startswith(b"hello dee")


def test_models_and_deployments_predictions_run_a_base_runner(client: Any) -> None:
    by_model = client.models.predictions.create(
        model="default/runner", input={"text": "hi", "tags": ["a"]}
    )
    by_model.wait()
    assert by_model.status == "succeeded"
    assert by_model.output == {"text": "> hi hi", "scale": 1.0, "tags": ["a"]}

    by_deployment = client.deployments.predictions.create(
        "default/runner", input={"text": "yo", "repeat": 3}
    )
    by_deployment.wait()
    assert by_deployment.output["text"] == "> yo yo yo"


def test_stream_yields_each_item_as_server_sent_events(client: Any) -> None:
    events = list(client.stream("default/cog-stream", input={"prompt": "one two three"}))
    assert "".join(str(e) for e in events) == "one two three "
    assert events[-1].event.value == "done"


def test_cancel_a_running_prediction(client: Any) -> None:
    prediction = client.models.predictions.create(
        model="default/cog-stream", input={"prompt": "slow words here", "delay_s": 5}
    )
    _wait_for(lambda: client.predictions.get(prediction.id).status == "processing", "processing")
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"
    assert client.predictions.get(prediction.id).status == "canceled"


def test_file_inputs_through_v1_files(client: Any, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(b"hi there")
    with open(note, "rb") as handle:  # the client uploads it to /v1/files and passes the URL
        output = client.run("default/cog-hello", input={"name": "eve", "attachment": handle})
    assert "attachment txt 8 bytes: hi there" in output.read().decode()

    uploaded = client.files.create(note)
    assert uploaded.size == 8 and uploaded.name == "note.txt"
    assert client.files.get(uploaded.id).checksums["sha256"]
    data_uri = "data:text/plain;base64,aGVsbG8="
    inline = client.run("default/cog-hello", input={"name": "fay", "attachment": data_uri})
    assert "5 bytes: hello" in inline.read().decode()


def test_webhooks_with_an_events_filter_validate(client: Any, receiver: Any) -> None:
    url, received = receiver
    prediction = client.models.predictions.create(
        model="default/cog-stream",
        input={"prompt": "x y"},
        webhook=url,
        webhook_events_filter=["start", "output", "completed"],
    )
    prediction.wait()
    _wait_for(lambda: any(json.loads(b)["status"] == "succeeded" for _, b in received), "hook")
    secret = client.webhooks.default.secret()
    statuses = []
    for headers, body in received:
        replicate.webhooks.validate(headers=headers, body=body, secret=secret)  # raises if bad
        statuses.append(json.loads(body)["status"])
    with pytest.raises(InvalidSignatureError):
        headers, body = received[0]
        replicate.webhooks.validate(headers=headers, body=body + " ", secret=secret)
    assert statuses[0] in ("starting", "processing")
    assert "processing" in statuses  # an output event while it ran
    final = next(json.loads(b) for _, b in received if json.loads(b)["status"] == "succeeded")
    assert final["output"] == ["x ", "y "] and final["id"] == prediction.id

    received.clear()
    done_only = client.models.predictions.create(
        model="default/runner",
        input={"text": "w"},
        webhook=url,
        webhook_events_filter=["completed"],
    )
    done_only.wait()
    _wait_for(lambda: len(received) == 1, "the completed webhook")
    time.sleep(0.3)
    assert [json.loads(b)["status"] for _, b in received] == ["succeeded"]


def test_logs_webhooks_carry_the_lines_printed_so_far(client: Any, receiver: Any) -> None:
    url, received = receiver
    prediction = client.models.predictions.create(
        model="default/cog-stream",
        input={"prompt": "a b c d", "delay_s": 0.5},
        webhook=url,
        webhook_events_filter=["logs"],
    )
    prediction.wait()
    assert prediction.status == "succeeded"
    _wait_for(lambda: bool(received), "a logs webhook")
    bodies = [json.loads(b) for _, b in received]
    assert all(b["status"] == "processing" for b in bodies)  # no start, output or completed
    assert "token a" in bodies[0]["logs"]


def test_a_failing_prediction_raises_model_error(client: Any) -> None:
    with pytest.raises(ModelError, match="asked to fail for zed") as caught:
        client.run("default/cog-hello", input={"name": "zed", "fail": True})
    assert caught.value.prediction.status == "failed"


def test_bad_input_unknown_models_and_a_wrong_token_raise_replicate_error(
    client: Any, served: Server
) -> None:
    with pytest.raises(ReplicateError) as bad:
        client.run("default/cog-hello", input={"name": "bob", "times": 9})
    assert bad.value.status == 400
    assert "input.times" in (bad.value.detail or "")

    with pytest.raises(ReplicateError) as missing:
        client.run("default/cog-hello", input={"times": 2})
    assert missing.value.status == 400 and "name" in (missing.value.detail or "")

    with pytest.raises(ReplicateError) as far:
        client.run("default/cog-hello", input={"name": "bob", "attachment": "http://10.1.2.3/x"})
    assert far.value.status == 400 and "attachment" in (far.value.detail or "")

    with pytest.raises(ReplicateError) as unknown:
        client.run("default/nothing", input={})
    assert unknown.value.status == 404 and "default/nothing" in (unknown.value.detail or "")

    with pytest.raises(ReplicateError) as other_owner:
        client.run("someone/cog-hello", input={})
    assert other_owner.value.status == 404

    wrong = replicate.Client(api_token="cb_wrong", base_url=served.url)
    with pytest.raises(ReplicateError) as denied:
        wrong.run("default/cog-hello", input={"name": "bob"})
    wrong._client.close()
    assert denied.value.status == 401
    assert "unknown API key" in (denied.value.detail or "")


def test_cog_models_answer_the_runpod_style_api_too(served: Server) -> None:
    deployed = served.cli("deploy", str(FIXTURES / "cog_runner"))  # the CLI path, unchanged
    assert "runner" in deployed.stdout + deployed.stderr
    with served.http() as http:
        done = http.post("/v2/runner/runsync", json={"input": {"text": "v2"}}).json()
        assert done["status"] == "COMPLETED"
        assert done["output"]["text"] == "> v2 v2"
        bad = http.post("/v2/runner/runsync", json={"input": {"text": "v2", "repeat": 0}})
        assert bad.status_code == 400
        assert "input.repeat" in bad.json()["error"]["message"]


class _FlakyReceiver(_Receiver):
    """Refuses the first `output` event once (HTTP 500), as a busy receiver would."""

    refused: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        if json.loads(body)["status"] == "processing" and not self.refused:
            self.refused.append(body)
            self.send_response(500)
            self.end_headers()
            return
        self.received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()


def test_completed_is_the_last_webhook_even_when_an_output_event_is_retried(
    client: Any,
) -> None:
    """Replicate's clients treat `completed` as the end: no `output` may arrive after it."""
    received: list[tuple[dict[str, str], str]] = []
    refused: list[str] = []
    handler = type("Handler", (_FlakyReceiver,), {"received": received, "refused": refused})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        prediction = client.models.predictions.create(
            model="default/cog-stream",
            input={"prompt": "a b c"},
            webhook=f"http://127.0.0.1:{httpd.server_address[1]}/hook",
            webhook_events_filter=["output", "completed"],
        )
        prediction.wait()
        _wait_for(lambda: len(received) >= 4, "three output events and completed")
        time.sleep(0.5)  # nothing may follow `completed`
        statuses = [json.loads(body)["status"] for _, body in received]
        assert refused, "the receiver refused an output event once"
        assert statuses == ["processing"] * (len(statuses) - 1) + ["succeeded"]
        outputs = [json.loads(body)["output"] for _, body in received[:-1]]
        assert outputs[-1] == ["a ", "b ", "c "]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_versions_list_gives_the_models_versions_newest_first(client: Any) -> None:
    model = client.models.get("default/cog-hello")
    page = model.versions.list()
    ids = [v.id for v in page.results]
    assert ids[0] == model.latest_version.id
    assert all(len(i) == 64 for i in ids)
    schema = page.results[0].openapi_schema["components"]["schemas"]["Input"]
    assert schema["properties"]["times"]["maximum"] == 5
    assert page.next is None
