"""The triggers contract (`coldbrew.store.triggers.TriggerStore`): definitions, cursors,
counters, in-flight messages and dead letters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from coldbrew.errors import Conflict
from coldbrew.store.triggers import (
    DeadLetter,
    InFlight,
    Outcome,
    TriggerCounters,
    TriggerDef,
    TriggerState,
)


def _trigger(trigger_id: str = "t1", name: str = "orders", account: str = "acme") -> TriggerDef:
    return TriggerDef(
        id=trigger_id,
        account=account,
        name=name,
        source_kind="redis",
        source={"url": "redis://127.0.0.1:6379/0", "stream": "s", "group": "g"},
        target_kind="endpoint",
        target="echo",
        sink_kind="postgres",
        sink={"dsn": "postgresql://x", "table": "results"},
        batch_size=10,
        batch_window_ms=50,
        max_in_flight=100,
        max_attempts=3,
        secret="s3cret",
        state=TriggerState.ACTIVE,
        created_at=1.0,
    )


def test_a_trigger_reads_back_as_created_and_names_are_unique_per_account(store: Any) -> None:
    store.create_trigger(_trigger())
    store.create_trigger(_trigger("t2", account="beta"))  # same name, other account
    assert store.get_trigger("t1") == _trigger()
    assert store.get_trigger("nope") is None
    with pytest.raises(Conflict):
        store.create_trigger(_trigger("t3"))
    assert [t.id for t in store.list_triggers(None)] == ["t1", "t2"]
    assert [t.id for t in store.list_triggers("beta")] == ["t2"]


def test_pause_resume_and_delete(store: Any) -> None:
    store.create_trigger(_trigger())
    assert store.set_trigger_state("t1", TriggerState.PAUSED)
    assert store.get_trigger("t1").state is TriggerState.PAUSED
    assert not store.set_trigger_state("nope", TriggerState.PAUSED)
    store.put_in_flight([InFlight("t1", "k1", "j1", 1, {"a": 1}, 5.0)])
    assert store.delete_trigger("t1")
    assert store.get_trigger("t1") is None
    assert store.in_flight("t1") == []
    assert not store.delete_trigger("t1")


def test_the_cursor_is_kept_per_trigger(store: Any) -> None:
    store.create_trigger(_trigger())
    assert store.load_cursor("t1") is None
    store.save_cursor("t1", {"last": "2026-01-01T00:00"})
    store.save_cursor("t1", {"last": "2026-01-01T00:05"})
    assert store.load_cursor("t1") == {"last": "2026-01-01T00:05"}


def test_in_flight_rows_are_replaced_by_a_retry_and_dropped_when_finished(store: Any) -> None:
    store.create_trigger(_trigger())
    store.count_received("t1", 3)
    store.put_in_flight(
        [
            InFlight("t1", "k1", "j1", 1, {"n": 1}, 1.0),
            InFlight("t1", "k2", "j2", 1, {"n": 2}, 2.0),
            InFlight("t1", "k3", "j3", 1, {"n": 3}, 3.0),
        ]
    )
    store.put_in_flight([InFlight("t1", "k2", "j2b", 2, {"n": 2}, 2.0)])  # k2's retry
    assert [(r.message_key, r.job_id, r.attempt) for r in store.in_flight("t1")] == [
        ("k1", "j1", 1),
        ("k2", "j2b", 2),
        ("k3", "j3", 1),
    ]
    error = {"type": "ValueError", "message": "bad"}
    dead = DeadLetter("t1", "k2", {"n": 2}, error, 2, 9.0)
    store.finish_messages(
        "t1", Outcome(done=["k1", "k2"], completed=1, failed=2, dead=[dead], at=9.0)
    )
    store.finish_messages("t1", Outcome(last_error=error, at=9.5))
    assert [r.message_key for r in store.in_flight("t1")] == ["k3"]
    assert store.dead_letters("t1", 10) == [dead]
    assert store.counters("t1") == TriggerCounters(3, 1, 2, 1, error, 9.5)


def test_an_outcome_without_an_error_keeps_the_last_one(store: Any) -> None:
    store.create_trigger(_trigger())
    store.record_error("t1", {"type": "source", "message": "down"}, 4.0)
    store.finish_messages("t1", Outcome(completed=2, at=5.0))
    counters = store.counters("t1")
    assert (counters.completed, counters.last_error, counters.last_error_at) == (
        2,
        {"type": "source", "message": "down"},
        4.0,
    )
    assert store.counters("nope") == TriggerCounters()
    assert replace(_trigger(), name="x").name == "x"


def test_rows_put_with_their_received_count_count_once(store: Any) -> None:
    store.create_trigger(_trigger())
    rows = [InFlight("t1", f"k{i}", f"j{i}", 1, {"n": i}, 1.0) for i in range(3)]
    store.put_in_flight(rows, received=3)
    store.put_in_flight([InFlight("t1", "k1", "j1b", 2, {"n": 1}, 1.0)])  # a retry: not new
    assert store.counters("t1").received == 3
    assert len(store.in_flight("t1")) == 3
