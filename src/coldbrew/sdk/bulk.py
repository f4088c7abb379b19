"""Bulk map: run many inputs through one endpoint as async jobs, a bounded number in flight at a
time, and give back one result per input in input order.

Jobs are submitted with `POST /v2/{endpoint}/run` under an idempotency key each and polled in
batches with `POST /v1/jobs/lookup`; every step is written to a `Journal` first, so an
interrupted map resumes without running a finished input again or submitting one twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from coldbrew.clock import Clock, SystemClock
from coldbrew.sdk.errors import APIError, raise_for
from coldbrew.sdk.journal import InputError, Journal

DEFAULT_MAX_IN_FLIGHT = 64
#: Ids per `/v1/jobs/lookup` request (the route takes up to 1000).
LOOKUP_BATCH = 500
#: Submissions in flight at once: enough to hide a round trip, few enough not to crowd the
#: gateway's event loop, which also serves the map's own polls.
SUBMIT_CONCURRENCY = 8
#: Poll back-off while nothing finishes: from quick (short jobs) to once a second (long ones).
POLL_MIN_S, POLL_MAX_S = 0.02, 1.0
#: Tries of a request that failed in transit or with a 5xx/429, backing off from 0.25 s to 5 s
#: (about 20 s in all: a gateway restart), before the map stops and leaves its journal.
TRANSIENT_TRIES = 8
_FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass(frozen=True)
class MapProgress:
    """Where a map stands; handed to the progress callback after every round."""

    endpoint: str
    total: int
    done: int  # inputs with a final result (failed ones included), resumed ones too
    failed: int  # of `done`: FAILED, TIMED_OUT, CANCELLED, or refused by the endpoint
    in_flight: int  # submitted, not finished
    resumed: int  # already done when this run started (from the journal)
    elapsed_s: float  # since this run started
    finished: bool = False  # the last report of this run

    @property
    def rate_per_s(self) -> float:
        """Inputs finished per second by this run (resumed ones do not count)."""
        return (self.done - self.resumed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None before the first input finished."""
        rate = self.rate_per_s
        return (self.total - self.done) / rate if rate > 0 else None


ProgressCallback = Callable[[MapProgress], None]


def result_line(job: dict[str, Any]) -> dict[str, Any]:
    """The result of one input, from its job's status JSON: the output, or the error."""
    line: dict[str, Any] = {"id": job["id"], "status": job["status"]}
    if job["status"] == "COMPLETED":
        line["output"] = job.get("output")
    else:
        line["error"] = job.get("error") or f"the job ended {job['status']}"
        if "errorDetail" in job:
            line["errorDetail"] = job["errorDetail"]
    return line


def check_inputs(
    endpoint: str,
    schema: dict[str, Any],
    inputs: Sequence[Any],
    where: Callable[[int], str],
) -> None:
    """Refuse inputs that are not objects or do not match the endpoint's input schema."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    problems: list[tuple[str, str]] = []
    for index, value in enumerate(inputs):
        if not isinstance(value, dict):
            problems.append((where(index), f"a {type(value).__name__}, not an object"))
            continue
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            shown = [f"{_field_path(e.absolute_path)}: {e.message}" for e in errors[:3]]
            problems.append((where(index), "; ".join(shown)))
    if problems:
        props = schema.get("properties", {})
        takes = ", ".join(f"{k} ({v.get('type', 'any')})" for k, v in props.items())
        raise InputError(problems, hint=f"endpoint {endpoint!r} takes: {takes or 'no fields'}")


def _field_path(path: Any) -> str:
    return "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


class Mapper:
    """Runs the unfinished inputs of a journal to completion (see the module docstring)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        journal: Journal,
        inputs: Sequence[dict[str, Any]],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        retry_failed: bool = False,
        on_progress: ProgressCallback | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._http = http
        self._journal = journal
        self._inputs = inputs
        self._max_in_flight = max_in_flight
        self._retry_failed = retry_failed
        self._on_progress = on_progress
        self._clock = clock or SystemClock()
        self._pending: deque[int] = deque()
        self._in_flight: set[int] = set()
        self._resumed = 0
        self._done = self._failed = 0  # counted as results arrive: a report costs O(1)
        self._started = 0.0

    async def run(self) -> list[dict[str, Any]]:
        """Submit, poll and record until every input has a result; the results in order."""
        self._plan()
        self._started = self._clock.monotonic()
        delay_s = POLL_MIN_S
        while self._pending or self._in_flight:
            moved = await self._submit_some()
            moved = await self._poll() or moved
            self._report()
            if moved:
                delay_s = POLL_MIN_S
            else:
                await self._clock.sleep(delay_s)
                delay_s = min(delay_s * 2, POLL_MAX_S)
        self._report(finished=True)
        return [
            {"index": i, **(entry.result or {})} for i, entry in enumerate(self._journal.entries)
        ]

    def _plan(self) -> None:
        """Sort the journal's inputs: done, submitted (to poll), or still to submit."""
        for index, entry in enumerate(self._journal.entries):
            if entry.failed and self._retry_failed:
                self._journal.retry(index)
                self._pending.append(index)
            elif entry.result is not None:
                self._resumed += 1
                self._failed += entry.failed
            elif entry.job_id is not None:
                self._in_flight.add(index)
            else:
                self._pending.append(index)

    async def _submit_some(self) -> bool:
        room = min(self._max_in_flight - len(self._in_flight), len(self._pending))
        if room <= 0:
            return False
        batch = [self._pending.popleft() for _ in range(room)]
        slots = asyncio.Semaphore(SUBMIT_CONCURRENCY)

        async def submit(index: int) -> None:
            async with slots:
                await self._submit(index)

        outcomes = await asyncio.gather(*(submit(i) for i in batch), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return True

    async def _submit(self, index: int) -> None:
        endpoint = self._journal.endpoint
        response = await self._send(
            "POST",
            f"/v2/{endpoint}/run",
            json={"input": self._inputs[index]},
            headers={"Idempotency-Key": self._journal.key(index)},
        )
        if response.status_code == 400 and _error_of(response).get("type") == "invalid_input":
            error = _error_of(response)  # the endpoint changed since the inputs were checked
            line = {"id": None, "status": "FAILED", "error": error.get("message", "")}
            self._finished(index, {**line, "errorDetail": error})
            return
        raise_for(response)
        self._journal.submitted(index, response.json()["id"])
        self._in_flight.add(index)

    async def _poll(self) -> bool:
        """Ask for every job in flight; record the ones that finished. True if any did."""
        by_id = {self._journal.entries[i].job_id: i for i in self._in_flight}
        ids = list(by_id)
        moved = False
        for start in range(0, len(ids), LOOKUP_BATCH):
            response = await self._send(
                "POST", "/v1/jobs/lookup", json={"ids": ids[start : start + LOOKUP_BATCH]}
            )
            raise_for(response)
            body = response.json()
            for job in body["jobs"]:
                if job["status"] in _FINAL:
                    index = by_id[job["id"]]
                    self._finished(index, result_line(job))
                    self._in_flight.discard(index)
                    moved = True
            for job_id in body["notFound"]:
                # Purged past its retention, or the journal came from another server: submit
                # again under the same key (which the server forgot along with the job).
                index = by_id[job_id]
                self._in_flight.discard(index)
                self._pending.appendleft(index)
                moved = True
        return moved

    def _finished(self, index: int, result: dict[str, Any]) -> None:
        self._journal.finished(index, result)
        self._done += 1
        self._failed += result["status"] != "COMPLETED"

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, tried again on transport errors, 5xx and 429 (every call is idempotent)."""
        delay_s = 0.25
        for attempt in range(1, TRANSIENT_TRIES + 1):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == TRANSIENT_TRIES:
                    raise APIError(
                        0,
                        "unreachable",
                        f"cannot reach coldbrew at {self._http.base_url}: {exc}",
                        "the journal keeps what was done: run the same map again to resume",
                    ) from None
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                if attempt == TRANSIENT_TRIES:
                    return response
            await self._clock.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _report(self, finished: bool = False) -> None:
        if self._on_progress is None:
            return
        self._on_progress(
            MapProgress(
                endpoint=self._journal.endpoint,
                total=len(self._journal.entries),
                done=self._resumed + self._done,
                failed=self._failed,
                in_flight=len(self._in_flight),
                resumed=self._resumed,
                elapsed_s=self._clock.monotonic() - self._started,
                finished=finished,
            )
        )


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


async def run_map(
    http: httpx.AsyncClient,
    endpoint: str,
    inputs: Sequence[dict[str, Any]],
    *,
    journal_path: Path | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    retry_failed: bool = False,
    on_progress: ProgressCallback | None = None,
    where: Callable[[int], str] = lambda index: f"input {index}",
    clock: Clock | None = None,
) -> list[dict[str, Any]]:
    """Check every input against the endpoint's schema, then map them (resuming the journal at
    `journal_path` if there is one); nothing is submitted when an input is refused."""
    if not inputs:
        raise InputError([("inputs", "there are none")], hint="give at least one input")
    journal = Journal.open(journal_path, endpoint, inputs)
    try:
        response = await http.get(f"/v1/endpoints/{endpoint}")
        raise_for(response)
        check_inputs(endpoint, response.json().get("inputSchema") or {}, inputs, where)
        mapper = Mapper(
            http,
            journal,
            inputs,
            max_in_flight=max_in_flight,
            retry_failed=retry_failed,
            on_progress=on_progress,
            clock=clock,
        )
        return await mapper.run()
    finally:
        journal.close()
