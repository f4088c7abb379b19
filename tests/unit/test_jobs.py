"""The job state machine: which statuses are final and which moves a job may make."""

from __future__ import annotations

import itertools

import pytest

from coldbrew.store.models import TRANSITIONS, Job, JobStatus, can_transition

Q = JobStatus.IN_QUEUE
P = JobStatus.IN_PROGRESS
DONE = JobStatus.COMPLETED
FAIL = JobStatus.FAILED
CANCEL = JobStatus.CANCELLED
TIMEOUT = JobStatus.TIMED_OUT

#: Every allowed move; any pair not listed must be refused.
ALLOWED = {
    (Q, P),  # a worker claims it
    (Q, CANCEL),  # client cancel or queue purge
    (Q, FAIL),  # its version cannot start
    (P, Q),  # its worker died: run it again
    (P, DONE),
    (P, FAIL),
    (P, CANCEL),
    (P, TIMEOUT),
    (FAIL, Q),  # POST /retry
    (TIMEOUT, Q),  # POST /retry
}


@pytest.mark.parametrize(
    ("status", "final"),
    [(Q, False), (P, False), (DONE, True), (FAIL, True), (CANCEL, True), (TIMEOUT, True)],
)
def test_final_statuses(status: JobStatus, final: bool) -> None:
    assert status.final is final


@pytest.mark.parametrize(
    ("current", "new"),
    list(itertools.product(JobStatus, JobStatus)),
    ids=lambda s: s.value,
)
def test_can_transition(current: JobStatus, new: JobStatus) -> None:
    assert can_transition(current, new) is ((current, new) in ALLOWED)


def test_every_status_has_a_transition_entry() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("status", [DONE, CANCEL])
def test_completed_and_cancelled_are_terminal(status: JobStatus) -> None:
    assert not any(can_transition(status, new) for new in JobStatus)


@pytest.mark.parametrize("status", [FAIL, TIMEOUT])
def test_failed_jobs_can_only_be_retried(status: JobStatus) -> None:
    assert {new for new in JobStatus if can_transition(status, new)} == {Q}


def test_job_statuses_are_their_wire_names() -> None:
    assert [s.value for s in JobStatus] == [
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMED_OUT",
    ]


def _job(**times: float | None) -> Job:
    return Job(
        id="j1",
        account="acme",
        endpoint_id=1,
        endpoint="echo",
        version_id=1,
        status=Q,
        input={},
        created_at=100.0,
        expires_at=200.0,
        timeout_s=60.0,
        max_attempts=3,
        **times,  # type: ignore[arg-type]
    )


def test_delay_and_execution_ms_are_none_until_known() -> None:
    job = _job()
    assert (job.delay_ms, job.execution_ms) == (None, None)
    started = _job(started_at=100.25)
    assert (started.delay_ms, started.execution_ms) == (250, None)


def test_delay_and_execution_ms_of_a_finished_job() -> None:
    job = _job(started_at=101.5, finished_at=103.75)
    assert (job.delay_ms, job.execution_ms) == (1500, 2250)
