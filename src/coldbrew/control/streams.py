"""Streams: the chunks a generator `predict` yields, kept per job for /stream polls and
server-sent events, and the guard that keeps a chunk nested too deep out of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from coldbrew.clock import Clock
from coldbrew.errors import NotStorable, job_error
from coldbrew.runtime.protocol import RESULT_MAX_DEPTH, nests_deeper
from coldbrew.store.models import Job

log = logging.getLogger("coldbrew.scheduler")

MAX_STREAMS = 10_000  # past this, finished streams are forgotten first; outputs are stored
EVENTS_POLL_S = 1.0  # how often an SSE stream rereads a job that sends nothing new

JobLookup = Callable[[str], Awaitable[Job | None]]


def too_deep(part: str) -> dict[str, Any]:
    """The error record of a job whose worker sent a result nested too deep to keep."""
    return job_error(
        NotStorable,
        f"the job's {part} nests more than {RESULT_MAX_DEPTH} levels of lists and "
        "objects: it can be neither stored nor returned",
        hint=f"return plain JSON nested at most {RESULT_MAX_DEPTH} levels deep",
    )


class JobStream:
    """The chunks a generator `predict` has yielded so far, and who is waiting for more."""

    def __init__(self, clock: Clock) -> None:
        self.chunks: list[Any] = []
        self.delivered = 0  # how many a /stream poll has already returned
        self.closed = False
        self._clock = clock
        self._changed = asyncio.Event()

    def add(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def wait(self, seen: int, timeout_s: float) -> None:
        """Until there are more than `seen` chunks or the job ended, at most `timeout_s`."""
        if len(self.chunks) > seen or self.closed:
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_for(self._changed.wait(), timeout_s)


class Streams:
    """Every running (and recently finished) job's stream, by job id."""

    def __init__(self, clock: Clock, find: JobLookup) -> None:
        self.clock = clock
        self._find = find  # the job as it is now: memory first, then the store
        self._streams: dict[str, JobStream] = {}
        self._deep: set[str] = set()  # running jobs that sent a chunk nested too deep

    def get(self, job_id: str) -> JobStream:
        """The job's stream, created empty when it has none."""
        stream = self._streams.get(job_id)
        if stream is None:
            stream = self._streams[job_id] = JobStream(self.clock)
            if len(self._streams) > MAX_STREAMS:
                oldest = next((k for k, s in self._streams.items() if s.closed), None)
                del self._streams[oldest or next(iter(self._streams))]
        return stream

    def restart(self, job_id: str) -> None:
        """The job goes back to the queue (its worker died): its next attempt streams afresh."""
        stream = self._streams.get(job_id)
        if stream is not None and (stream.closed or stream.chunks):
            del self._streams[job_id]

    def add_chunk(self, job_id: str, chunk: Any) -> None:
        """File a chunk; one nested too deep for the store and the API is dropped (a poll
        would fail on it) and fails the job when it ends."""
        if not nests_deeper(chunk):
            stream = self.get(job_id)
            if stream.closed:  # a job retried after it ended (POST /retry) streams afresh
                del self._streams[job_id]
                stream = self.get(job_id)
            stream.add(chunk)
            return
        if job_id not in self._deep:
            log.warning("job %s: a chunk nests too deep to keep; the job fails", job_id)
        self._deep.add(job_id)

    def chunks(self, job_id: str) -> list[Any]:
        """What the job streamed: its output when its done frame says `streamed`."""
        return list(self.get(job_id).chunks)

    def storable_done(self, frame: dict[str, Any]) -> dict[str, Any]:
        """A done frame whose result nests too deep for the store and the API becomes that
        job's failure, here, for every job alike (a sync-lane job is answered from memory
        before any write)."""
        part = None
        if frame["id"] in self._deep:
            self._deep.discard(frame["id"])
            part = "stream"
        error = frame.get("error")
        if part is None and nests_deeper(frame.get("output")):
            part = "output"
        if part is None and error is not None and nests_deeper(error):
            part = "error"
        if part is None:
            return frame
        log.warning("job %s: its %s nests too deep to keep; failing it", frame["id"], part)
        return {**frame, "output": None, "streamed": False, "error": too_deep(part)}

    def close(self, job: Job) -> None:
        """A final-job listener: the job's stream ends (waiting readers wake)."""
        self._deep.discard(job.id)
        stream = self._streams.get(job.id)
        if stream is not None:
            stream.close()

    async def poll(self, job: Job, wait_s: float) -> tuple[Job, list[Any]]:
        """Chunks of a streaming job not returned by an earlier poll (RunPod's /stream).

        Waits up to `wait_s` for something new while the job runs.
        """
        stream = self.get(job.id)
        if not job.status.final and stream.delivered == len(stream.chunks):
            await stream.wait(stream.delivered, wait_s)
            job = await self._find(job.id) or job
            stream = self.get(job.id)
        chunks = stream.chunks
        if job.status.final and not chunks and isinstance(job.output, list):
            chunks = job.output  # chunks from before a restart are in the stored output
        new = chunks[stream.delivered :]
        stream.delivered = len(chunks)
        return job, new

    async def events(self, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """Every chunk of a job from the first, then ('done', final job): for server-sent events."""
        stream = self.get(job.id)
        sent = 0
        while True:
            while sent < len(stream.chunks):
                yield "chunk", stream.chunks[sent]
                sent += 1
            current = await self._find(job.id)
            if current is None or current.status.final:
                if current is not None and not stream.chunks and isinstance(current.output, list):
                    for chunk in current.output[sent:]:
                        yield "chunk", chunk
                yield "done", current
                return
            await stream.wait(sent, EVENTS_POLL_S)
