"""One RunPod handler process as a `WorkerHandle`: the protocol state between it and the scheduler.

A `job` frame waits in `pending` until the handler's next job-take poll takes it; what the handler
posts back (stream chunks, progress, its output or error) becomes `chunk`, `log` and `done`
frames; its first poll is the `ready` frame. `RunPodBackend` (`backends/runpod.py`) starts the
process; the routes in `api/runpod_worker.py` call `take`, `stream`, `answer` and `stops`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import hmac
import json
import os
import signal
import struct
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldbrew.clock import Clock
from coldbrew.errors import HandlerError, WorkerCrashed, job_error
from coldbrew.runtime.protocol import nests_deeper
from coldbrew.runtime.sandbox.host import Box

#: How long a SIGTERMed handler gets to finish before its process group is killed.
_EXIT_GRACE_S = 5.0
_TAIL_LINES = 40


def _unread_bytes(fd: int) -> int:
    """Bytes waiting in a pipe."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]
    except OSError:
        return 0


def error_record(error: Any) -> dict[str, Any]:
    """A RunPod error as coldbrew's error record.

    For an exception the SDK sends a JSON string (`error_type` "<class 'ValueError'>", message,
    traceback): the record's type is the exception's class name, as for any model's exception.
    An error the handler returned itself (`{"error": "..."}`) has no class: `handler_error`.
    """
    hint = "the RunPod handler reported it; `coldbrew logs JOB_ID` shows what it printed"
    if isinstance(error, str):
        try:
            info = json.loads(error)
        except ValueError:
            info = None
        if isinstance(info, dict) and "error_message" in info:
            kind = str(info.get("error_type", "")).removeprefix("<class '").removesuffix("'>")
            return {
                "type": kind.rsplit(".", 1)[-1] or HandlerError.error_type,
                "message": str(info["error_message"]) or kind,
                "traceback": str(info.get("error_traceback", "")),
                "hint": hint,
            }
        if error.startswith("handler: ") and "\ntraceback: " in error:  # a generator's error
            message, trace = error.removeprefix("handler: ").split("\ntraceback: ", 1)
            return job_error(HandlerError, message.strip(), traceback=trace)
    text = error if isinstance(error, str) else json.dumps(error)
    return job_error(HandlerError, text or "the handler reported an error", hint=hint)


@dataclass
class HandlerWorker:
    """One handler process and the protocol state between it and the scheduler."""

    worker_id: str
    secret: str
    clock: Clock
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    started_at: float = 0.0  # monotonic
    ready: bool = False
    draining: bool = False  # the scheduler said stop: serve what was sent, then exit
    refreshing: bool = False  # the handler asked to be replaced: take nothing more
    frames: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    pending: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    taken: set[str] = field(default_factory=set)
    progress: dict[str, Any] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)  # jobs the handler was told to stop
    held: list[dict[str, Any]] = field(default_factory=list)  # answers sent once it has exited
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_TAIL_LINES)
    )
    last_ping: float | None = None
    output_fd: int | None = None  # read end of the handler's stdout/stderr pipe
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None  # copies output, reports the exit
    box: Box | None = None
    exit_reason: str | None = None  # a sandbox limit that killed it
    _terminating: bool = False

    # WorkerHandle, used by the scheduler
    async def send(self, frame: dict[str, Any]) -> None:
        if self.process is None or self.process.returncode is not None:
            raise ConnectionError("the handler process has exited")
        kind = frame["t"]
        if kind == "job":
            self.pending.append({"id": frame["id"], "input": frame["input"]})
        elif kind == "batch":  # not deployed for handlers; serve the jobs one by one
            for job_id, payload in zip(frame["ids"], frame["inputs"], strict=True):
                self.pending.append({"id": job_id, "input": payload})
        elif kind == "stop":
            self.draining = True
            self._maybe_exit()
        self._wake()

    async def recv(self) -> dict[str, Any] | None:
        return await self.frames.get()

    def kill(self) -> None:
        """SIGKILL the handler's process group (the SDK's ping process is in it too).

        Only while the handler is not yet reaped: until then its pid cannot be reused."""
        if self.process is not None and self.process.returncode is None:
            self._kill_group()
        if self.box is not None:
            self.box.kill_all()

    def _kill_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        if self.watcher is not None:
            await asyncio.shield(self.watcher)
        return self.process.returncode if self.process.returncode is not None else -1

    # the protocol, used by the routes
    def authentic(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.secret.encode())

    async def take(self, max_jobs: int, hold_s: float) -> list[dict[str, Any]]:
        """Jobs for a job-take poll: at least one when one comes within `hold_s`, else none."""
        if not self.ready:
            self.ready = True
            elapsed = self.clock.monotonic() - self.started_at
            self.frames.put_nowait({"t": "ready", "import_s": elapsed, "setup_s": 0.0})
        if not self.pending or self.refreshing:  # a refreshing handler must not spin on polls
            await self._wait(hold_s)
        jobs: list[dict[str, Any]] = []
        while self.pending and len(jobs) < max_jobs and not self.refreshing:
            job = self.pending.popleft()
            self.taken.add(job["id"])
            jobs.append(job)
        self._maybe_exit()
        return jobs

    async def stops(self, hold_s: float, finished: set[str]) -> list[str]:
        """Taken jobs that ended elsewhere (cancelled, timed out): the handler should stop them."""
        ids = sorted(job_id for job_id in finished & self.taken if job_id not in self.stopped)
        if not ids:
            await self._wait(hold_s)
            return []
        self.stopped.update(ids)
        self.taken.difference_update(ids)
        for job_id in ids:
            self.progress.pop(job_id, None)
        self._maybe_exit()
        return ids

    def stream(self, job_id: str, body: dict[str, Any]) -> bool:
        if job_id not in self.taken:
            return False
        if "output" in body:
            self.frames.put_nowait({"t": "chunk", "id": job_id, "output": body["output"]})
        return True

    async def answer(self, job_id: str, body: dict[str, Any]) -> bool:
        """The handler's job-done post: progress while it runs, then its output or error."""
        if body.get("status") == "IN_PROGRESS":  # may arrive late: the SDK sends it in a thread
            if job_id in self.taken and nests_deeper(body.get("output")):
                self._log(job_id, "progress: dropped, nested too deep to show")  # /status fails
            elif job_id in self.taken:
                self.progress[job_id] = body.get("output")
                line = json.dumps(body.get("output"), ensure_ascii=False, default=str)
                self._log(job_id, f"progress: {line}")
            return True
        if job_id not in self.taken:
            return False
        await self._catch_up()  # what it printed before answering belongs to this job
        self.taken.discard(job_id)
        self.progress.pop(job_id, None)
        frame: dict[str, Any] = {"t": "done", "id": job_id, "output": body.get("output")}
        if nests_deeper(body.get("error")):  # json.dumps would raise RecursionError on it
            frame["error"] = job_error(HandlerError, "", deep=body["error"])
        elif body.get("error") is not None:
            frame["error"] = error_record(body["error"])
        if body.get("stopPod"):  # refresh_worker: answer once the process is gone
            self.refreshing = True
            self.held.append(frame)
            self._wake()
        else:
            self.frames.put_nowait(frame)
        self._maybe_exit()
        return True

    # process life
    async def _wait(self, hold_s: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(hold_s):
                await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()

    def _maybe_exit(self) -> None:
        """A draining or refreshing handler with nothing left to run is asked to exit."""
        idle = not self.taken and (self.refreshing or not self.pending)
        if (self.draining or self.refreshing) and idle and not self._terminating:
            self._terminating = True
            self._wake()
            if self.process is not None and self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                asyncio.get_running_loop().call_later(_EXIT_GRACE_S, self.kill)

    async def _catch_up(self) -> None:
        """Wait (briefly) until the output reader has read all the handler wrote so far."""
        for _ in range(200):
            if self.output_fd is None or _unread_bytes(self.output_fd) == 0:
                break
            await self.clock.sleep(0.001)
        for _ in range(3):  # let the reader task take the lines it was handed
            await self.clock.sleep(0)

    def _log(self, job_id: str, line: str) -> None:
        self.frames.put_nowait(
            {"t": "log", "id": job_id, "ts": self.clock.time(), "stream": "stdout", "line": line}
        )

    async def watch(self, output: asyncio.StreamReader) -> None:
        """Copy the handler's output to its log (and to the job running alone), then report the
        exit: answers held for a refresh first, then a start-up failure, then the end."""
        assert self.process is not None
        try:
            copier = asyncio.create_task(self._copy_output(output))
            code = await self.process.wait()
            self._kill_group()  # what the handler left in its group (still holding the id)
            await copier
            for frame in self.held:
                self.frames.put_nowait(frame)
            if not self.ready:
                self.frames.put_nowait({"t": "setup_failed", "error": self._exit_error(code)})
        finally:
            self._release()
            self.output_fd = None
            self.frames.put_nowait(None)

    def _release(self) -> None:
        """Close the forwarder's line and the sandbox box (killing what the handler left)."""
        if self.box is not None:
            self.exit_reason = self.box.exit_reason()
            self.box.close()
            self.box = None

    async def _copy_output(self, output: asyncio.StreamReader) -> None:
        with open(self.log_path, "ab") as out:
            while True:
                try:
                    raw = await output.readline()
                except ValueError:  # a line longer than the buffer: take it in pieces
                    raw = await output.read(1 << 16)
                if not raw:
                    return
                out.write(raw)
                out.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                if len(self.taken) == 1:
                    self._log(next(iter(self.taken)), line)

    def _exit_error(self, code: int) -> dict[str, Any]:
        """The handler died before its first poll: its process crashed while it loaded."""
        last = next((line for line in reversed(self.tail) if line.strip()), "")
        return job_error(
            WorkerCrashed,
            f"the RunPod handler exited with status {code} before taking a job: {last}",
            traceback="\n".join(self.tail),
        )
