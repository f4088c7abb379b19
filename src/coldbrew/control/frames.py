"""What the gateway accepts from a worker: frames about its own jobs, in the documented shape,
and a bounded amount of log output per job.

A worker runs tenant code, so every frame it sends is untrusted input. A `chunk`, `log` or
`done` frame naming a job that is not running on that worker (another account's job, or one
that already ended) is dropped, never filed; so is a frame with missing or mistyped fields.
Drops are logged at most once per worker every `_DROP_LOG_EVERY_S`, with a count, so a worker
that floods bad frames cannot flood the server log either.

Log lines are capped per job (`job_log_max_bytes`, counted in UTF-8 bytes) and rate-limited
(`job_log_lines_per_s`, a token bucket); what is cut is replaced by one visible marker line.
The worker applies the same limits to its own print capture (`runtime/worker.py`), so a model
printing 100 MB sends about 1 MB; the gateway's check is what a hostile worker cannot skip.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from coldbrew.store.models import Job

log = logging.getLogger("coldbrew.scheduler")

_DROP_LOG_EVERY_S = 10.0
_MAX_TRACKED_JOBS = 10_000  # log budgets kept for this many recent jobs
_RECENT_JOBS = 256  # per worker: jobs whose late frames are dropped without a warning
_STREAMS = ("stdout", "stderr")
MARKER = "[coldbrew]"


def frame_problem(frame: Any, running: Container[str]) -> str | None:  # noqa: C901
    """Why a worker's frame must be dropped, or None when it may be filed.

    `running` holds the ids of the jobs running on that worker now.
    """
    if not isinstance(frame, dict):
        return "not an object"
    kind = frame.get("t")
    if not isinstance(kind, str):
        return "a frame without a type"
    if kind in ("log", "chunk", "done"):
        job_id = frame.get("id")
        if not isinstance(job_id, str):
            return f"a {kind} frame without a job id"
        if job_id not in running:
            return f"a {kind} frame for job {job_id[:36]!r}, which is not running on this worker"
    if kind == "log":
        if not isinstance(frame.get("line"), str) or frame.get("stream") not in _STREAMS:
            return "a log frame without a text line and stream"
        if not isinstance(frame.get("ts"), int | float) or isinstance(frame.get("ts"), bool):
            return "a log frame without a time"
    elif kind == "chunk":
        if "output" not in frame:
            return "a chunk frame without output"
    elif kind == "done":
        error, share = frame.get("error"), frame.get("share", 1)
        if error is not None and not _is_error_record(error):
            return "a done frame whose error is not a record"
        if not isinstance(share, int) or isinstance(share, bool) or share < 1:
            return "a done frame with a bad batch share"
    elif kind == "ready":
        times = [frame.get("import_s"), frame.get("setup_s"), frame.get("fork_s", 0.0)]
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            return "a ready frame without its timings"
    elif kind == "state":
        rid = frame.get("rid")
        if (
            not isinstance(rid, int)
            or isinstance(rid, bool)
            or not isinstance(frame.get("op"), str)
        ):
            return "a state frame without a request id and operation"
    elif kind == "setup_failed" and not _is_error_record(frame.get("error")):
        return "a setup_failed frame without an error record"
    return None  # other types are the scheduler's to ignore or handle


def _is_error_record(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k, ""), str) for k in ("type", "message", "traceback")
    )


class FrameGuard:
    """Drops a worker's frames that may not be filed, and logs them: the first at once, then
    a count at most every `_DROP_LOG_EVERY_S` per worker. Frames about jobs the worker ran
    earlier (cancelled or timed out meanwhile) are dropped without a warning."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._had: dict[str, OrderedDict[str, None]] = {}
        self.dropped = 0

    def assigned(self, worker_id: str, job_id: str) -> None:
        """Remember that `job_id` ran on the worker (its late frames are no forgery)."""
        had = self._had.setdefault(worker_id, OrderedDict())
        had[job_id] = None
        if len(had) > _RECENT_JOBS:
            had.popitem(last=False)

    def admit(
        self, worker_id: str, endpoint: str, frame: Any, running: Container[str], now: float
    ) -> bool:
        """Whether the frame may be filed; if not, it is counted (and maybe logged)."""
        problem = frame_problem(frame, running)
        if problem is None:
            return True
        self.dropped += 1
        job_id = frame.get("id") if isinstance(frame, dict) else None
        if isinstance(job_id, str) and job_id in self._had.get(worker_id, ()):
            return False  # a late frame of a job that ended on this worker
        self._count[worker_id] = self._count.get(worker_id, 0) + 1
        last = self._last.get(worker_id)
        if last is not None and now - last < _DROP_LOG_EVERY_S:
            return False
        count, self._count[worker_id] = self._count[worker_id], 0
        self._last[worker_id] = now
        log.warning(
            "dropped %d frame(s) from worker %s of %s; latest: %s",
            count,
            worker_id,
            endpoint,
            problem,
            extra={"worker": worker_id, "endpoint": endpoint},
        )
        return False

    def forget(self, worker_id: str) -> None:
        """The worker exited."""
        for table in (self._last, self._count, self._had):
            table.pop(worker_id, None)


@dataclass
class _Budget:
    sent_bytes: int
    tokens: float
    refilled_at: float
    truncated: bool = False
    dropping: bool = False
    marked_at: float = float("-inf")


class JobLogLimits:
    """Per-job log caps in the gateway: bytes in all, lines per second.

    The bucket holds two seconds of lines, twice the worker's own, so a well-behaved worker's
    lines that arrive bunched (the gateway was busy) are not cut twice.
    """

    def __init__(self, max_bytes: int, lines_per_s: int) -> None:
        self.max_bytes = max_bytes
        self.lines_per_s = lines_per_s
        self._burst = 2.0 * lines_per_s
        self._jobs: OrderedDict[str, _Budget] = OrderedDict()

    def admit(self, job_id: str, line: str, now: float) -> str | None:
        """The line to file for `job_id` (the line, or a marker in its place), or None."""
        budget = self._budget(job_id, now)
        if budget.truncated:
            return None
        size = len(line.encode("utf-8", "replace")) + 1
        if budget.sent_bytes + size > self.max_bytes:
            budget.truncated = True
            return (
                f"{MARKER} log truncated: this job's output passed {self.max_bytes} bytes "
                "(job_log_max_bytes); later lines are dropped"
            )
        budget.tokens = min(
            self._burst, budget.tokens + (now - budget.refilled_at) * self.lines_per_s
        )
        budget.refilled_at = now
        if budget.tokens < 1.0:
            if budget.dropping or now - budget.marked_at < 1.0:
                return None
            budget.dropping, budget.marked_at = True, now
            return (
                f"{MARKER} log lines dropped: this job printed more than {self.lines_per_s} "
                "lines per second (job_log_lines_per_s)"
            )
        budget.tokens -= 1.0
        budget.dropping = False
        budget.sent_bytes += size
        return line

    def forget(self, job_id: str) -> None:
        """The job ended: drop its budget. Budgets leave when their jobs end, not by age, so a
        tenant cannot push a long job's spent budget out (and reset its cap) by running
        `_MAX_TRACKED_JOBS` short jobs meanwhile; the bound only guards memory."""
        self._jobs.pop(job_id, None)

    def ended(self, job: Job) -> None:
        """A final-job listener: `forget` the job (its late log frames are dropped)."""
        self._jobs.pop(job.id, None)

    def _budget(self, job_id: str, now: float) -> _Budget:
        budget = self._jobs.get(job_id)
        if budget is None:
            budget = self._jobs[job_id] = _Budget(0, self._burst, now)
            if len(self._jobs) > _MAX_TRACKED_JOBS:
                self._jobs.popitem(last=False)
        return budget
