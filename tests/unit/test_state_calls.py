"""A worker's `coldbrew.state` calls: request/reply over the control socket (`runtime/calls.py`),
the gateway's checks (`control/state.py`) and the in-process stand-in (`sdk/state.py`)."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.control.frames import frame_problem
from coldbrew.control.state import StateService
from coldbrew.errors import Conflict
from coldbrew.runtime.calls import Calls, GatewayGone
from coldbrew.sdk import state
from coldbrew.store.sqlite_state import SQLiteState
from coldbrew.store.state import Namespace


class Pipe:
    """The worker's socket: frames from the gateway are queued; sent frames are recorded and
    a `state` request is answered (after whatever frames the test queued ahead of it)."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.sent: list[dict[str, Any]] = []

    def receive(self) -> dict[str, Any] | None:
        return self.inbox.get(timeout=5)

    def send(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)
        if frame.get("t") == "state":
            self.inbox.put({"t": "state_reply", "rid": frame["rid"], "entry": frame["key"]})


def test_a_call_inside_predict_reads_its_own_reply_and_keeps_other_frames_in_order() -> None:
    pipe = Pipe()
    calls = Calls(pipe.receive, pipe.send)
    pipe.inbox.put({"t": "job", "id": "j2"})  # arrives while the model is inside predict
    assert calls.request({"t": "state", "op": "get", "key": "a"})["entry"] == "a"
    pipe.inbox.put({"t": "stop"})
    assert [calls.next_frame(), calls.next_frame()] == [{"t": "job", "id": "j2"}, {"t": "stop"}]


def test_calls_from_job_threads_are_answered_while_the_loop_reads() -> None:
    pipe = Pipe()
    calls = Calls(pipe.receive, pipe.send)
    frames: list[Any] = []
    loop = threading.Thread(target=lambda: frames.extend(iter(calls.next_frame, None)))
    loop.start()
    replies: list[Any] = []
    threads = [
        threading.Thread(target=lambda k=k: replies.append(calls.request({"t": "state", "key": k})))
        for k in "abcdef"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    pipe.inbox.put(None)  # the gateway goes away
    loop.join(timeout=5)
    assert sorted(r["entry"] for r in replies) == list("abcdef")
    assert frames == []  # replies never reach the serving loop


def test_a_call_fails_when_the_gateway_is_gone() -> None:
    inbox: queue.Queue[Any] = queue.Queue()
    inbox.put(None)
    calls = Calls(lambda: inbox.get(timeout=5), lambda frame: None)
    with pytest.raises(GatewayGone):
        calls.request({"t": "state", "op": "get", "key": "a"})


def test_state_frames_need_a_request_id_and_an_operation() -> None:
    assert frame_problem({"t": "state", "rid": 1, "op": "get"}, set()) is None
    assert "request id" in str(frame_problem({"t": "state", "rid": "1", "op": "get"}, set()))
    assert "request id" in str(frame_problem({"t": "state", "rid": True, "op": "get"}, set()))


@pytest.fixture
def service() -> StateService:
    return StateService(SQLiteState(":memory:", 1 << 20, 1000), FakeClock(), 1000)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"op": "drop_table"}, "unknown state operation"),
        ({"op": "get"}, "key must be a non-empty string"),
        ({"op": "get", "key": "k" * 257}, "at most 256 printable"),
        ({"op": "get", "key": "a\x00b"}, "printable"),
        ({"op": "set", "key": "k", "value": 1, "ttl_s": -1}, "ttl_s must be a number"),
        ({"op": "set", "key": "k", "value": 1, "if_version": "1"}, "if_version must be"),
        ({"op": "set", "key": "k", "value": "x" * 2000}, "more than 1000"),
        ({"op": "append", "key": "k", "items": "x"}, "needs a list"),
        ({"op": "append", "key": "k", "items": [], "max_items": -1}, "max_items must be"),
        ({"op": "incr", "key": "k", "by": "1"}, "needs a number"),
        ({"op": "keys", "limit": 5000}, "limit must be"),
    ],
)
def test_bad_requests_get_an_error_and_change_nothing(
    service: StateService, request_: dict[str, Any], message: str
) -> None:
    ns = Namespace("acme", "chat")
    reply = asyncio.run(service.call(ns, request_))
    assert message in reply["error"]["message"]
    assert asyncio.run(service.call(ns, {"op": "keys"})) == {"keys": []}


def test_a_request_cannot_name_another_namespace(service: StateService) -> None:
    acme, beta = Namespace("acme", "chat"), Namespace("beta", "chat")

    async def scenario() -> dict[str, Any]:
        await service.call(acme, {"op": "set", "key": "k", "value": "acme's"})
        forged = {"op": "get", "key": "k", "account": "acme", "endpoint": "chat"}
        return await service.call(beta, forged)

    assert asyncio.run(scenario()) == {"entry": None}


def test_outside_a_worker_state_is_a_dictionary_with_the_same_rules() -> None:
    state.connect(None)
    assert state.get("missing", "fallback") == "fallback"
    assert state.set("k", 1) == 1
    with pytest.raises(Conflict):
        state.set("k", 2, if_version=0)
    assert state.append("h", 1, 2, 3, max_items=2) == [2, 3]
    assert state.incr("n", 5) == 5
    assert state.update("n", lambda v: v * 2) == 10
    assert state.keys() == ["h", "k", "n"]
    assert state.delete("k") is True and state.get("k") is None
