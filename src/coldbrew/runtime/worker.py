"""The worker process: import the model once, run `setup()`, then serve jobs until told to stop.

Started as `python -m coldbrew.runtime.worker DIR MODULE CLASS CONCURRENCY` with the control
socket's descriptor in `COLDBREW_WORKER_FD`. What the model prints while it runs a job is sent
back as that job's log lines; everything else goes to the worker's log file (stdout/stderr).
"""

from __future__ import annotations

import inspect
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from coldbrew.errors import ColdbrewError, PayloadTooLarge
from coldbrew.runtime import lifeline, protocol
from coldbrew.runtime.calls import Calls
from coldbrew.runtime.loader import load_class
from coldbrew.runtime.sandbox.enter import enter_from_env, limit_message
from coldbrew.sdk import state

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor


_STREAMED = object()  # predict was a generator: its output went out as chunks


def error_record(exc: BaseException) -> dict[str, Any]:
    """How an exception crosses the process boundary.

    The type is the exception's class name when the model's code raised it, and the error's
    `error_type` when coldbrew did (`errors.py`: one spelling, as on the gateway). An HTTP error a
    model raises on purpose (FastAPI's `HTTPException`, as KServe models do) keeps its
    `status_code` and `detail`, so the gateway can answer with them."""
    record: dict[str, Any] = {
        "type": exc.error_type if isinstance(exc, ColdbrewError) else type(exc).__name__,
        "message": limit_message(exc) or str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, ColdbrewError) and exc.hint:
        record["hint"] = exc.hint
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        detail = getattr(exc, "detail", None)
        record["status_code"] = status
        record["detail"] = detail if isinstance(detail, str | int | float | list | dict) else None
        if not str(exc):
            record["message"] = f"HTTP {status}: {detail}"
    return record


class _Channel:
    """The control socket, shared by the serving loop and the threads running jobs."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._reader = sock.makefile("rb")
        raw = os.environ.get(protocol.OUTPUT_MAX_ENV, "")
        self.output_max_bytes = int(raw) if raw.isdigit() else protocol.DEFAULT_OUTPUT_MAX_BYTES
        self._streamed: dict[str, int] = {}  # bytes of chunks sent so far, by job

    def send(self, frame: dict[str, Any]) -> None:
        data = protocol.encode(frame)
        if frame.get("t") in ("chunk", "done"):
            data = self._bounded(frame, data)
        with self._send_lock:
            self._sock.sendall(data)

    def send_many(self, frames: list[dict[str, Any]]) -> None:
        """A batch's `done` frames in one write: one wake-up of the gateway's reader for the
        batch, not one per job. An output that is not JSON fails that job alone."""
        parts = []
        for frame in frames:
            try:
                data = protocol.encode(frame)
            except TypeError as exc:
                record = error_record(
                    TypeError(f"predict returned a value that is not JSON: {exc}")
                )
                frame = {"t": "done", "id": frame["id"], "error": record, "share": frame["share"]}
                data = protocol.encode(frame)
            parts.append(self._bounded(frame, data))
        with self._send_lock:
            self._sock.sendall(b"".join(parts))

    def _bounded(self, frame: dict[str, Any], data: bytes) -> bytes:
        """`data`, or for a `done` over the limit an error in its place; a chunk that takes
        the job's streamed output over the limit raises `PayloadTooLarge`, failing the job."""
        job_id = frame.get("id")
        if not isinstance(job_id, str):
            return data  # malformed (tenant code sent it): the gateway's frame guard drops it
        limit = self.output_max_bytes
        size = len(data) + self._streamed.get(job_id, 0)
        if frame["t"] == "chunk":
            if size > limit:
                raise _too_large(size, limit, "streamed output")
            self._streamed[job_id] = size
            return data
        self._streamed.pop(job_id, None)
        if len(data) <= limit:
            return data
        error = error_record(_too_large(len(data), limit, "output"))
        reply = {"t": "done", "id": job_id, "error": error}
        if "share" in frame:
            reply["share"] = frame["share"]
        return protocol.encode(reply)

    def recv(self) -> dict[str, Any] | None:
        header = self._reader.read(protocol.HEADER.size)
        if len(header) < protocol.HEADER.size:
            return None
        (length,) = protocol.HEADER.unpack(header)
        return protocol.decode(self._reader.read(length))


class _LogCap:
    """The worker's own cut of each job's log lines, so a model printing 100 MB sends about
    `max_bytes` to the gateway instead of flooding it: lines up to `max_bytes` (UTF-8) per job,
    at most `lines_per_s` (a one-second bucket), and a marker line when lines are dropped. The
    gateway applies the same limits again (`control/frames.py`) and writes the truncation
    marker; this side only has to be cheap. The limits come in a `limits` frame."""

    def __init__(self) -> None:
        self.max_bytes = 1_000_000
        self.lines_per_s = 1_000
        self._jobs: dict[str, list[float]] = {}  # job -> [bytes sent, tokens, refilled at]

    def configure(self, frame: dict[str, Any]) -> None:
        self.max_bytes = int(frame.get("log_max_bytes", self.max_bytes))
        self.lines_per_s = max(1, int(frame.get("log_lines_per_s", self.lines_per_s)))

    def begin(self, job_id: str) -> None:
        self._jobs[job_id] = [0.0, float(self.lines_per_s), time.monotonic(), -1.0]

    def end(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def admit(self, job_id: str, line: str) -> str | None:
        """The line to send (or a marker instead), or None to drop it."""
        state = self._jobs.get(job_id)
        if state is None:
            return line
        if state[0] > self.max_bytes:
            return None
        now = time.monotonic()
        state[1] = min(float(self.lines_per_s), state[1] + (now - state[2]) * self.lines_per_s)
        state[2] = now
        if state[1] < 1.0:
            if now - state[3] < 1.0:
                return None
            state[3] = now
            return (
                f"[coldbrew] log lines dropped: this job printed more than {self.lines_per_s} "
                "lines per second (job_log_lines_per_s)"
            )
        state[1] -= 1.0
        state[0] += len(line.encode("utf-8", "replace")) + 1  # past the cap: the last one sent
        return line


class _JobLogStream:
    """Stands in for sys.stdout/stderr: lines printed while a job runs become its log lines."""

    def __init__(
        self, real: TextIO, name: str, channel: _Channel, local: threading.local, cap: _LogCap
    ):
        self._real = real
        self._name = name
        self._channel = channel
        self._local = local
        self._cap = cap

    def write(self, text: str) -> int:
        self._real.write(text)
        job_id = getattr(self._local, "job_id", None)
        if job_id is None:
            return len(text)
        pending = getattr(self._local, self._name, "") + text
        *lines, rest = pending.split("\n")
        for line in lines:
            for one in job_id if isinstance(job_id, list) else [job_id]:  # a batch: every job
                sent = self._cap.admit(one, line)
                if sent is None:
                    continue
                self._channel.send(
                    {"t": "log", "id": one, "ts": time.time(), "stream": self._name, "line": sent}
                )
        setattr(self._local, self._name, rest)
        return len(text)

    def flush_job(self) -> None:
        rest = getattr(self._local, self._name, "")
        if rest:
            self.write("\n")

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._real.fileno()


class Worker:
    """Serves jobs for one model instance over the control channel."""

    def __init__(self, channel: _Channel, model: Any, concurrency: int) -> None:
        self.channel = channel
        self.model = model
        self.local = threading.local()
        predict = model.predict
        self.defaults = {
            name: p.default
            for name, p in inspect.signature(predict).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        self.is_async = inspect.iscoroutinefunction(predict) or inspect.isasyncgenfunction(predict)
        self.pool: ThreadPoolExecutor | None = None
        if concurrency > 1:  # imported here: most workers run one job at a time
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(concurrency)
        self.loop: asyncio.AbstractEventLoop | None = None
        if self.is_async:
            import asyncio

            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.logcap = _LogCap()
        self.streams = [
            _JobLogStream(sys.stdout, "stdout", channel, self.local, self.logcap),
            _JobLogStream(sys.stderr, "stderr", channel, self.local, self.logcap),
        ]
        sys.stdout, sys.stderr = self.streams
        self.calls = Calls(channel.recv, channel.send)
        state.connect(lambda request: self.calls.request({"t": "state", **request}))

    def serve(self) -> None:
        """Run jobs until `stop` or until the gateway goes away."""
        while (frame := self.calls.next_frame()) is not None:
            if frame["t"] == "stop":
                break
            if frame["t"] == "limits":
                self.logcap.configure(frame)
            if frame["t"] == "batch":
                self._run_batch(frame["ids"], frame["inputs"])
            elif frame["t"] == "job":
                if self.pool is None:
                    self._run(frame["id"], frame["input"])
                else:
                    self.pool.submit(self._run, frame["id"], frame["input"])
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _run(self, job_id: str, payload: dict[str, Any]) -> None:
        self.local.job_id = job_id
        self.logcap.begin(job_id)
        try:
            output = self._call(job_id, payload)
            reply: dict[str, Any] = {"t": "done", "id": job_id, "output": output}
            if output is _STREAMED:
                reply = {"t": "done", "id": job_id, "streamed": True}
        except Exception as exc:
            reply = {"t": "done", "id": job_id, "error": error_record(exc)}
        finally:
            for stream in self.streams:
                stream.flush_job()
            self.local.job_id = None
            self.logcap.end(job_id)
        try:
            self.channel.send(reply)
        except TypeError as exc:  # the output is not JSON-serialisable
            bad = error_record(TypeError(f"predict returned a value that is not JSON: {exc}"))
            self.channel.send({"t": "done", "id": job_id, "error": bad})

    def _run_batch(self, ids: list[str], inputs: list[dict[str, Any]]) -> None:
        """One predict call for several jobs: each argument a list, one element per job."""
        self.local.job_id = ids
        for job_id in ids:
            self.logcap.begin(job_id)
        try:
            names = {name for payload in inputs for name in payload}
            lists = {
                name: [payload.get(name, self.defaults.get(name)) for payload in inputs]
                for name in names
            }
            outputs = self.model.predict(**lists)
            if not isinstance(outputs, list | tuple) or len(outputs) != len(ids):
                got = len(outputs) if isinstance(outputs, list | tuple) else type(outputs).__name__
                raise ValueError(
                    f"batched predict must return a list of {len(ids)} outputs, one per input; "
                    f"got {got}"
                )
            replies = [
                {"t": "done", "id": job_id, "output": out, "share": len(ids)}
                for job_id, out in zip(ids, outputs, strict=True)
            ]
        except Exception as exc:
            error = error_record(exc)
            replies = [
                {"t": "done", "id": job_id, "error": error, "share": len(ids)} for job_id in ids
            ]
        finally:
            for stream in self.streams:
                stream.flush_job()
            self.local.job_id = None
            for job_id in ids:
                self.logcap.end(job_id)
        self.channel.send_many(replies)

    def _call(self, job_id: str, payload: dict[str, Any]) -> Any:
        """Run predict; a generator's items are sent as chunks as they come (`_STREAMED`)."""
        if self.loop is None:
            result = self.model.predict(**payload)
            if not inspect.isgenerator(result):
                return result
            for chunk in result:
                self._chunk(job_id, chunk)
            return _STREAMED
        import asyncio

        result = self.model.predict(**payload)
        if not inspect.isasyncgen(result):
            return asyncio.run_coroutine_threadsafe(result, self.loop).result()
        while True:
            try:
                chunk = asyncio.run_coroutine_threadsafe(anext(result), self.loop).result()
            except StopAsyncIteration:
                return _STREAMED
            self._chunk(job_id, chunk)

    def _chunk(self, job_id: str, chunk: Any) -> None:
        try:
            self.channel.send({"t": "chunk", "id": job_id, "output": chunk})
        except TypeError as exc:
            raise TypeError(f"predict yielded a value that is not JSON: {exc}") from None


def _too_large(size: int, limit: int, what: str) -> PayloadTooLarge:
    """A job's output (or its streamed chunks together) passed the gateway's `output_max_mb`."""
    return PayloadTooLarge(
        f"the job's {what} is more than {limit / (1 << 20):g} MB ({size} bytes); "
        "return a smaller output (write large results to storage and return a link), or "
        "raise the limit with COLDBREW_OUTPUT_MAX_MB"
    )


def make_channel(fd: int) -> _Channel:
    """The worker's end of its control socket, from a file descriptor."""
    return _Channel(socket.socket(fileno=fd))


def main() -> None:
    directory, module, class_name, concurrency = sys.argv[1:5]
    lifeline.from_env()  # a worker on a Ray node dies with its agent
    channel = make_channel(int(os.environ["COLDBREW_WORKER_FD"]))
    try:
        enter_from_env()  # the sandbox, before any tenant code is imported
        os.chdir(directory)
        started = time.perf_counter()
        cls = load_class(Path("."), module, class_name)
        imported = time.perf_counter()
        model = cls()
        if callable(getattr(model, "setup", None)):
            model.setup()
        ready = time.perf_counter()
    except BaseException as exc:
        channel.send({"t": "setup_failed", "error": error_record(exc)})
        sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.exit(1)
    channel.send({"t": "ready", "import_s": imported - started, "setup_s": ready - imported})
    Worker(channel, model, int(concurrency)).serve()


if __name__ == "__main__":
    main()
