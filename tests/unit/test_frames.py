"""What the gateway files from a worker: frames about its own jobs in the documented shape,
and per-job log lines within their caps; and the per-account queue ledger."""

from __future__ import annotations

from typing import Any

import pytest

from coldbrew.control.frames import FrameGuard, JobLogLimits, frame_problem
from coldbrew.control.queues import QueueLedger
from coldbrew.errors import QueueFull
from coldbrew.store.models import Account

MINE = {"job-1"}
LOG = {"t": "log", "id": "job-1", "ts": 1.0, "stream": "stdout", "line": "hi"}


@pytest.mark.parametrize(
    ("frame", "dropped"),
    [
        pytest.param(LOG, False, id="own-log"),
        pytest.param({**LOG, "id": "job-2"}, True, id="log-for-another-job"),
        pytest.param({"t": "chunk", "id": "job-2", "output": 1}, True, id="chunk-for-another"),
        pytest.param({"t": "done", "id": "job-2", "output": 1}, True, id="done-for-another"),
        pytest.param({"t": "chunk", "id": "job-1", "output": None}, False, id="own-chunk"),
        pytest.param({"t": "done", "id": "job-1", "output": [1]}, False, id="own-done"),
        pytest.param({**LOG, "line": 5}, True, id="line-not-text"),
        pytest.param({**LOG, "line": ["a"]}, True, id="line-a-list"),
        pytest.param({"t": "log", "id": "job-1"}, True, id="log-missing-keys"),
        pytest.param({**LOG, "stream": "stdin"}, True, id="unknown-stream"),
        pytest.param({**LOG, "ts": "now"}, True, id="time-not-a-number"),
        pytest.param({"t": "chunk", "id": "job-1"}, True, id="chunk-without-output"),
        pytest.param({"t": "done", "id": 7, "output": 1}, True, id="id-not-text"),
        pytest.param({"t": "done", "output": 1}, True, id="done-without-id"),
        pytest.param({"t": "done", "id": "job-1", "error": "boom"}, True, id="error-not-record"),
        pytest.param(
            {"t": "done", "id": "job-1", "error": {"type": "E", "message": "m"}},
            False,
            id="error-record",
        ),
        pytest.param({"t": "done", "id": "job-1", "share": 0}, True, id="bad-share"),
        pytest.param({"t": "ready", "import_s": "x", "setup_s": 0}, True, id="ready-bad-times"),
        pytest.param({"t": "ready", "import_s": 0.1, "setup_s": 0}, False, id="ready"),
        pytest.param({"t": "setup_failed", "error": None}, True, id="setup-failed-no-record"),
        pytest.param(["t", "log"], True, id="not-an-object"),
        pytest.param({"t": "something-new"}, False, id="other-types-pass-through"),
        pytest.param({"no type": True}, True, id="no-type"),
    ],
)
def test_frame_problem(frame: Any, dropped: bool) -> None:
    assert (frame_problem(frame, MINE) is not None) is dropped


def test_drops_are_logged_once_per_period_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    guard = FrameGuard()
    forged = {**LOG, "id": "someone-elses"}
    for i in range(50):
        assert not guard.admit("w-1", "echo", forged, MINE, now=float(i) / 10)
    assert guard.admit("w-1", "echo", LOG, MINE, now=5.0)
    assert not guard.admit("w-1", "echo", forged, MINE, now=11.0)
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[0].startswith("dropped 1 frame(s) from worker w-1 of echo")
    assert warnings[1].startswith("dropped 50 frame(s)")
    assert guard.dropped == 51


def test_late_frames_of_a_job_that_ran_on_the_worker_are_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = FrameGuard()
    guard.assigned("w-1", "job-9")  # e.g. cancelled while it still printed
    assert not guard.admit("w-1", "echo", {**LOG, "id": "job-9"}, MINE, now=0.0)
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]


def test_a_jobs_log_is_cut_at_its_byte_cap_with_one_marker() -> None:
    limits = JobLogLimits(max_bytes=100, lines_per_s=1_000)
    filed = [limits.admit("job", "x" * 9, now=0.0) for _ in range(20)]  # 10 bytes a line
    kept = [line for line in filed if line is not None]
    assert kept[:10] == ["x" * 9] * 10
    assert len(kept) == 11 and kept[10].startswith("[coldbrew] log truncated")
    assert "100 bytes" in kept[10]
    assert limits.admit("other-job", "y", now=0.0) == "y"  # per job


def test_a_jobs_log_lines_are_rate_limited_with_a_marker() -> None:
    limits = JobLogLimits(max_bytes=10**9, lines_per_s=10)  # bucket: 20 lines
    filed = [limits.admit("job", "l", now=0.0) for _ in range(100)]
    kept = [line for line in filed if line is not None]
    assert kept[:20] == ["l"] * 20
    assert len(kept) == 21 and "more than 10 lines per second" in (kept[20] or "")
    assert limits.admit("job", "later", now=1.0) == "later"  # the bucket refilled


def test_the_queue_ledger_counts_the_store_and_arrivals_since_the_tick() -> None:
    ledger = QueueLedger(default_limit=3)
    ledger.load([Account("big", "s", 0.0, weight=2.0, max_queued_jobs=10), Account("a", "s", 0)])
    assert ledger.weights == {"big": 2.0, "a": 1.0}
    ledger.tick_ended({"a": 2})
    ledger.added("a")
    assert ledger.queued("a") == 3
    with pytest.raises(QueueFull) as refused:
        ledger.check("a")
    body = refused.value.to_json()["error"]
    assert refused.value.status_code == 429
    assert refused.value.headers() == {"Retry-After": "5"}
    assert body["limit"] == 3 and body["queued"] == 3
    assert "PATCH /v1/accounts/a" in body["hint"]
    ledger.check("big", waiting_in_memory=9)
    with pytest.raises(QueueFull):
        ledger.check("big", waiting_in_memory=10)
    ledger.tick_started()  # the tick reads the store, which has the arrival in its count
    ledger.added("a")
    assert ledger.queued("a") == 4  # counted twice, never missed, until the tick ends
    ledger.tick_ended({"a": 1})
    assert ledger.queued("a") == 1 + 1


def test_the_workers_print_capture_stops_sending_past_the_cap() -> None:
    from coldbrew.runtime.worker import _LogCap

    cap = _LogCap()
    cap.configure({"t": "limits", "log_max_bytes": 100, "log_lines_per_s": 1_000})
    cap.begin("job")
    sent = [cap.admit("job", "x" * 9) for _ in range(1_000)]
    # ten lines fill the cap; the eleventh goes too, so the gateway sees the overflow and
    # writes the marker; nothing after it is sent
    assert [line for line in sent if line is not None] == ["x" * 9] * 11
    cap.end("job")
    assert cap.admit("job", "outside a job") == "outside a job"


def test_the_workers_print_capture_is_rate_limited_with_a_marker() -> None:
    from coldbrew.runtime.worker import _LogCap

    cap = _LogCap()
    cap.configure({"t": "limits", "log_max_bytes": 10**9, "log_lines_per_s": 1})
    cap.begin("job")
    sent = [line for line in (cap.admit("job", "l") for _ in range(50)) if line is not None]
    assert sent[0] == "l" and sent[1].startswith("[coldbrew] log lines dropped")
    assert len(sent) <= 3  # one more only if the machine stalled a whole second meanwhile
