"""The queue contract (`coldbrew.store.queue.JobQueue`): create, claim, finish, requeue, retry,
purge, counters; many jobs in one query and idempotent creation (what `coldbrew map` needs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from tests.unit.store_contract.helpers import deploy, finished_job, new_job

from coldbrew.store.models import (
    Job,
    JobStatus,
    QueueStat,
    Version,
    WebhookState,
    can_transition,
)


def test_job_round_trip_scoped_by_account(store: Any, version: Version) -> None:
    new_job(store, version, "j1", webhook_url="https://example.test/hook")
    job = store.get_job("j1", "acme")
    assert (job.id, job.status, job.input, job.attempts) == (
        "j1",
        JobStatus.IN_QUEUE,
        {"text": "j1"},
        0,
    )
    assert (job.endpoint, job.version_id, job.webhook_url) == (
        "echo",
        version.id,
        "https://example.test/hook",
    )
    assert (job.output, job.error, job.started_at, job.worker_id) == (None, None, None, None)
    assert store.get_job("j1") == job
    assert store.get_job("j1", "beta") is None
    assert store.get_job("nope", "acme") is None


def test_claim_is_fifo_and_counts_attempts(store: Any, version: Version) -> None:
    new_job(store, version, "late", created_at=103.0)
    new_job(store, version, "early", created_at=101.0)
    new_job(store, version, "middle", created_at=102.0)
    claimed = [store.claim(version.id, f"w{i}", 200.0 + i) for i in range(3)]
    assert [j.id for j in claimed] == ["early", "middle", "late"]
    first = claimed[0]
    assert (first.status, first.attempts, first.worker_id, first.started_at) == (
        JobStatus.IN_PROGRESS,
        1,
        "w0",
        200.0,
    )
    assert store.claim(version.id, "w9", 300.0) is None


def test_claim_breaks_ties_in_arrival_order(store: Any, version: Version) -> None:
    for job_id in ("b", "a", "c"):
        new_job(store, version, job_id, created_at=100.0)
    assert [store.claim(version.id, "w", 200.0).id for _ in range(3)] == ["b", "a", "c"]


def test_claim_takes_only_the_versions_jobs(store: Any, version: Version) -> None:
    v2 = deploy(store, artifact_sha="sha-2")
    new_job(store, version, "old", created_at=100.0)
    new_job(store, v2, "new", created_at=50.0)
    assert store.claim(version.id, "w", 200.0).id == "old"
    assert store.claim(version.id, "w", 200.0) is None


def test_finish_once(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    done = store.finish("j1", JobStatus.COMPLETED, 202.5, output={"text": "hi"}, cost_usd=0.01)
    assert (done.status, done.output, done.finished_at, done.cost_usd) == (
        JobStatus.COMPLETED,
        {"text": "hi"},
        202.5,
        0.01,
    )
    assert store.finish("j1", JobStatus.FAILED, 203.0, error={"message": "late"}) is None
    assert store.get_job("j1") == done


def test_finish_records_the_error(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    error = {"type": "worker_crashed", "message": "exit code -9"}
    failed = store.finish("j1", JobStatus.FAILED, 201.0, error=error)
    assert (failed.status, failed.error, failed.output) == (JobStatus.FAILED, error, None)


def test_finish_only_from_allowed_statuses(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    assert store.finish("j1", JobStatus.COMPLETED, 150.0) is None  # not running yet
    assert store.get_job("j1").status is JobStatus.IN_QUEUE
    cancelled = store.finish("j1", JobStatus.CANCELLED, 151.0, from_statuses=[JobStatus.IN_QUEUE])
    assert cancelled.status is JobStatus.CANCELLED
    assert store.claim(version.id, "w1", 200.0) is None


@pytest.mark.parametrize(
    ("webhook_url", "state"),
    [(None, None), ("https://example.test/hook", WebhookState.PENDING)],
)
def test_final_job_with_a_webhook_is_pending_delivery(
    store: Any, version: Version, webhook_url: str | None, state: WebhookState | None
) -> None:
    done = finished_job(store, version, "j1", JobStatus.COMPLETED, webhook_url=webhook_url)
    assert done.webhook_state is state
    assert [j.id for j in store.pending_webhooks()] == ([] if state is None else ["j1"])


def test_requeue_puts_a_running_job_back(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    assert store.requeue("j1") is True
    job = store.get_job("j1")
    assert (job.status, job.worker_id, job.attempts) == (JobStatus.IN_QUEUE, None, 1)
    again = store.claim(version.id, "w2", 210.0)
    assert (again.id, again.attempts, again.worker_id) == ("j1", 2, "w2")


def test_requeue_refuses_jobs_that_are_not_running(store: Any, version: Version) -> None:
    new_job(store, version, "queued")
    finished_job(store, version, "done", JobStatus.COMPLETED, created_at=50.0)
    assert store.requeue("queued") is False
    assert store.requeue("done") is False
    assert store.requeue("missing") is False
    assert store.get_job("done").status is JobStatus.COMPLETED


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.TIMED_OUT])
def test_retry_queues_a_failed_job_with_fresh_attempts(
    store: Any, version: Version, status: JobStatus
) -> None:
    finished_job(store, version, "j1", status, webhook_url="https://example.test/hook")
    retried = store.retry("j1", "acme", 500.0, 3600.0)
    assert (retried.status, retried.attempts, retried.error, retried.output) == (
        JobStatus.IN_QUEUE,
        0,
        None,
        None,
    )
    assert (retried.created_at, retried.expires_at) == (500.0, 4100.0)
    assert (retried.started_at, retried.finished_at, retried.worker_id) == (None, None, None)
    assert retried.webhook_state is None
    assert store.claim(version.id, "w2", 501.0).attempts == 1


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.CANCELLED])
def test_retry_refuses_other_final_jobs(store: Any, version: Version, status: JobStatus) -> None:
    done = finished_job(store, version, "j1", status)
    assert store.retry("j1", "acme", 500.0, 3600.0) is None
    assert store.get_job("j1") == done


def test_retry_of_a_queued_or_running_job_is_none(store: Any, version: Version) -> None:
    new_job(store, version, "running", created_at=1.0)
    new_job(store, version, "queued", created_at=2.0)
    store.claim(version.id, "w1", 200.0)
    assert store.retry("running", "acme", 500.0, 3600.0) is None
    assert store.retry("queued", "acme", 500.0, 3600.0) is None


@pytest.mark.parametrize("status", [s for s in JobStatus if s.final])
def test_retry_follows_the_state_machine(store: Any, version: Version, status: JobStatus) -> None:
    finished_job(store, version, "j1", status)
    retried = store.retry("j1", "acme", 500.0, 3600.0)
    assert (retried is not None) is can_transition(status, JobStatus.IN_QUEUE)


def test_retry_by_another_account_is_none(store: Any, version: Version) -> None:
    finished_job(store, version, "j1", JobStatus.FAILED)
    assert store.retry("j1", "beta", 500.0, 3600.0) is None
    assert store.get_job("j1").status is JobStatus.FAILED


def test_purge_queue_cancels_only_queued_jobs_of_the_endpoint(store: Any, version: Version) -> None:
    other = deploy(store, "embed")
    new_job(store, version, "running", created_at=1.0)
    new_job(store, version, "q1", created_at=2.0)
    new_job(store, version, "q2", created_at=3.0, webhook_url="https://example.test/hook")
    new_job(store, other, "elsewhere", created_at=4.0)
    store.claim(version.id, "w1", 200.0)
    purged = store.purge_queue(version.endpoint_id, 300.0)
    assert sorted(j.id for j in purged) == ["q1", "q2"]
    assert all(j.status is JobStatus.CANCELLED and j.finished_at == 300.0 for j in purged)
    assert store.get_job("q2").webhook_state is WebhookState.PENDING
    assert store.get_job("running").status is JobStatus.IN_PROGRESS
    assert store.get_job("elsewhere").status is JobStatus.IN_QUEUE


def test_fail_queued_fails_the_versions_queue(store: Any, version: Version) -> None:
    v2 = deploy(store, artifact_sha="sha-2")
    new_job(store, version, "old")
    new_job(store, v2, "new")
    error = {"type": "setup_failed", "message": "boom"}
    failed = store.fail_queued(version.id, error, 300.0)
    assert [(j.id, j.status, j.error) for j in failed] == [("old", JobStatus.FAILED, error)]
    assert store.get_job("new").status is JobStatus.IN_QUEUE


def test_queue_stats(store: Any, version: Version) -> None:
    v2 = deploy(store, artifact_sha="sha-2")
    v3 = deploy(store, artifact_sha="sha-3")
    new_job(store, version, "a", created_at=105.0)
    new_job(store, version, "b", created_at=101.0)
    new_job(store, version, "c", created_at=103.0)
    new_job(store, v2, "d", created_at=120.0)
    new_job(store, v3, "e", created_at=130.0)
    store.claim(version.id, "w1", 200.0)  # takes "b"
    store.claim(v3.id, "w2", 200.0)
    assert store.queue_stats() == {
        version.id: QueueStat(queued=2, oldest_created_at=103.0),
        v2.id: QueueStat(queued=1, oldest_created_at=120.0),
    }


def test_in_progress_lists_running_jobs(store: Any, version: Version) -> None:
    new_job(store, version, "a", created_at=1.0)
    new_job(store, version, "b", created_at=2.0)
    store.claim(version.id, "w1", 200.0)
    assert [j.id for j in store.in_progress()] == ["a"]


def test_health_counts(store: Any, version: Version) -> None:
    finished_job(store, version, "done", JobStatus.COMPLETED, created_at=1.0)
    finished_job(store, version, "failed", JobStatus.FAILED, created_at=2.0)
    finished_job(store, version, "timed-out", JobStatus.TIMED_OUT, created_at=3.0)
    new_job(store, version, "retried", created_at=4.0)
    store.claim(version.id, "w1", 200.0)
    store.requeue("retried")
    store.claim(version.id, "w2", 201.0)  # second attempt, still running
    new_job(store, version, "queued", created_at=5.0)
    assert store.health(version.endpoint_id) == {
        "completed": 1,
        "failed": 2,
        "inProgress": 1,
        "inQueue": 1,
        "retried": 1,
    }
    assert store.health(999) == {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 0,
        "retried": 0,
    }


def test_mark_cold_start(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    store.mark_cold_start("j1", {"process_s": 0.5, "setup_s": 1.25})
    job = store.get_job("j1")
    assert (job.cold_start, job.cold_start_detail) == (True, {"process_s": 0.5, "setup_s": 1.25})


def test_purge_expired_deletes_only_final_jobs_past_their_ttl(store: Any, version: Version) -> None:
    hook = "https://example.test/hook"
    finished_job(store, version, "expired", JobStatus.COMPLETED, created_at=1.0, expires_at=500.0)
    finished_job(store, version, "fresh", JobStatus.FAILED, created_at=2.0, expires_at=2000.0)
    finished_job(
        store,
        version,
        "pending",
        JobStatus.COMPLETED,
        created_at=3.0,
        expires_at=500.0,
        webhook_url=hook,
    )
    finished_job(
        store,
        version,
        "delivered",
        JobStatus.COMPLETED,
        created_at=4.0,
        expires_at=500.0,
        webhook_url=hook,
    )
    store.record_delivery("delivered", 1, 300.0, 200, None, WebhookState.DELIVERED)
    new_job(store, version, "queued", created_at=5.0, expires_at=500.0)
    for job_id in ("expired", "fresh", "pending", "delivered", "queued"):
        store.append_logs([(job_id, 200.0, "stdout", f"{job_id} says hi")])

    assert store.purge_expired(1000.0) == 2

    assert store.get_job("expired") is None
    assert store.get_job("delivered") is None
    assert store.job_logs("expired") == []
    assert store.deliveries("delivered") == []
    for kept in ("fresh", "pending", "queued"):
        assert store.get_job(kept) is not None
        assert [log["line"] for log in store.job_logs(kept)] == [f"{kept} says hi"]
    assert store.purge_expired(1000.0) == 0


def test_purge_expired_keeps_a_job_until_its_expiry(store: Any, version: Version) -> None:
    finished_job(store, version, "j1", JobStatus.COMPLETED, expires_at=500.0)
    assert store.purge_expired(500.0) == 0
    assert store.purge_expired(500.5) == 1


def test_claim_many_takes_the_oldest_in_arrival_order(store: Any, version: Version) -> None:
    for job_id, created in (("c", 103.0), ("a", 101.0), ("b1", 102.0), ("b2", 102.0)):
        new_job(store, version, job_id, created_at=created)
    batch = store.claim_many(version.id, "w", 200.0, 3)
    assert [j.id for j in batch] == ["a", "b1", "b2"]
    assert {(j.status, j.worker_id, j.attempts) for j in batch} == {(JobStatus.IN_PROGRESS, "w", 1)}
    assert [j.id for j in store.claim_many(version.id, "w", 200.0, 3)] == ["c"]
    assert store.claim_many(version.id, "w", 200.0, 3) == []


def test_claim_job_takes_only_that_queued_job(store: Any, version: Version) -> None:
    new_job(store, version, "first", created_at=100.0)
    new_job(store, version, "second", created_at=101.0)
    claimed = store.claim_job("second", "w", 200.0)
    assert (claimed.id, claimed.status, claimed.worker_id) == ("second", JobStatus.IN_PROGRESS, "w")
    assert store.claim_job("second", "w2", 201.0) is None  # already running
    assert store.get_job("first").status is JobStatus.IN_QUEUE


def test_account_jobs_are_newest_first_per_account_and_page_by_creation_time(
    store: Any, version: Version
) -> None:
    for i, created_at in enumerate([100.0, 300.0, 200.0]):
        new_job(store, version, f"j{i}", created_at=created_at)
    theirs = deploy(store, account="beta")
    new_job(store, theirs, "other", created_at=400.0)
    assert [j.id for j in store.account_jobs("acme", 10)] == ["j1", "j2", "j0"]
    assert [j.id for j in store.account_jobs("acme", 2)] == ["j1", "j2"]
    assert [j.id for j in store.account_jobs("acme", 10, before=300.0)] == ["j2", "j0"]
    assert [j.id for j in store.account_jobs(None, 1)] == ["other"]
    assert store.account_jobs("nobody", 10) == []


def test_recent_jobs_are_the_endpoints_newest_first_with_a_limit(
    store: Any, version: Version
) -> None:
    other = deploy(store, endpoint="other")
    for i in range(5):
        new_job(store, version, f"j{i}", created_at=100.0 + i)
    new_job(store, other, "elsewhere", created_at=200.0)
    assert [j.id for j in store.recent_jobs(version.endpoint_id, 3)] == ["j4", "j3", "j2"]
    assert [j.id for j in store.recent_jobs(other.endpoint_id, 10)] == ["elsewhere"]


def queued(version: Version, job_id: str, **fields: Any) -> Job:
    job = Job(
        id=job_id,
        account=version.account,
        endpoint_id=version.endpoint_id,
        endpoint=version.endpoint,
        version_id=version.id,
        status=JobStatus.IN_QUEUE,
        input={"text": job_id},
        created_at=100.0,
        expires_at=500.0,
        timeout_s=60.0,
        max_attempts=1,
    )
    return dataclasses.replace(job, **fields)


def test_get_jobs_returns_the_ones_asked_in_that_order(store: Any, version: Version) -> None:
    finished_job(store, version, "d", JobStatus.COMPLETED)
    for job_id in ("a", "b", "c"):
        new_job(store, version, job_id)

    jobs = store.get_jobs(["d", "missing", "a", "c", "a"])

    assert [j.id for j in jobs] == ["d", "a", "c"]
    assert jobs[0].status is JobStatus.COMPLETED
    assert jobs[0] == store.get_job("d")
    assert store.get_jobs([]) == []


def test_get_jobs_leaves_out_other_accounts_jobs(store: Any, version: Version) -> None:
    theirs = deploy(store, account="beta")
    new_job(store, version, "mine")
    new_job(store, theirs, "theirs")

    assert [j.id for j in store.get_jobs(["mine", "theirs"], "acme")] == ["mine"]
    assert [j.id for j in store.get_jobs(["mine", "theirs"], "beta")] == ["theirs"]
    assert [j.id for j in store.get_jobs(["mine", "theirs"])] == ["mine", "theirs"]


def test_get_jobs_fetches_more_ids_than_one_query_holds(store: Any, version: Version) -> None:
    ids = [f"j{i:04}" for i in range(1203)]
    for job_id in ids:
        new_job(store, version, job_id)
    asked = list(reversed(ids))
    assert [j.id for j in store.get_jobs(asked, "acme")] == asked


def test_create_job_once_replays_the_first_job_under_a_key(store: Any, version: Version) -> None:
    first = store.create_job_once(queued(version, "first"), "key-1")
    again = store.create_job_once(queued(version, "second", input={"other": 1}), "key-1")
    other_key = store.create_job_once(queued(version, "third"), "key-2")

    assert first.id == again.id == "first"
    assert again.input == {"text": "first"}
    assert other_key.id == "third"
    assert store.get_job("second") is None
    assert store.health(version.endpoint_id)["inQueue"] == 2


def test_idempotency_keys_belong_to_one_account(store: Any, version: Version) -> None:
    theirs = deploy(store, account="beta")
    mine = store.create_job_once(queued(version, "mine"), "shared-key")
    other = store.create_job_once(queued(theirs, "theirs"), "shared-key")
    assert (mine.id, other.id) == ("mine", "theirs")


def test_a_purged_job_frees_its_key(store: Any, version: Version) -> None:
    store.create_job_once(queued(version, "old"), "key-1")
    assert store.claim(version.id, "w1", 200.0) is not None
    store.finish("old", JobStatus.COMPLETED, 201.0)

    assert store.purge_expired(1000.0) == 1

    fresh = store.create_job_once(queued(version, "new", expires_at=5000.0), "key-1")
    assert fresh.id == "new"
    assert store.get_job("new") is not None


def test_finish_with_a_worker_id_lands_only_for_the_jobs_owner(
    store: Any, version: Version
) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    assert store.requeue("j1", worker_id="w1") is True  # w1's gateway failed over
    store.claim(version.id, "w2", 210.0)

    assert store.finish("j1", JobStatus.COMPLETED, 220.0, output=1, worker_id="w1") is None
    assert store.requeue("j1", worker_id="w1") is False  # the stale owner cannot take it back
    job = store.get_job("j1")
    assert (job.status, job.worker_id, job.output) == (JobStatus.IN_PROGRESS, "w2", None)

    done = store.finish("j1", JobStatus.COMPLETED, 221.0, output=2, worker_id="w2")
    assert (done.status, done.output, done.worker_id) == (JobStatus.COMPLETED, 2, "w2")


def test_finish_without_a_worker_id_is_not_owner_matched(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    cancelled = store.finish("j1", JobStatus.CANCELLED, 201.0)  # a cancel: whoever runs it
    assert cancelled.status is JobStatus.CANCELLED


def test_requeue_with_another_worker_id_leaves_the_job_running(
    store: Any, version: Version
) -> None:
    new_job(store, version, "j1")
    store.claim(version.id, "w1", 200.0)
    assert store.requeue("j1", worker_id="w9") is False
    assert store.get_job("j1").status is JobStatus.IN_PROGRESS
    assert store.requeue("j1", worker_id="w1") is True
    assert store.get_job("j1").status is JobStatus.IN_QUEUE


def test_queue_stats_stay_exact_over_many_transitions(store: Any, version: Version) -> None:
    v2 = deploy(store, artifact_sha="sha-2")
    store.save_jobs(
        [queued(version, f"a{i:03}", created_at=100.0 + i) for i in range(200)]
        + [queued(v2, f"b{i:03}", created_at=50.0 + i) for i in range(100)]
    )
    assert store.queue_stats()[version.id] == QueueStat(queued=200, oldest_created_at=100.0)
    taken = store.claim_many(version.id, "w1", 400.0, 150)
    for job in taken[:5]:
        store.requeue(job.id, worker_id="w1")
    store.fail_queued(v2.id, {"message": "no"}, 401.0)  # v2's queue is gone
    store.purge_expired(10_000.0)

    for _ in range(2):  # the second read after the first folded what piled up
        assert store.queue_stats() == {
            version.id: QueueStat(queued=55, oldest_created_at=100.0),
        }


def test_saved_jobs_come_back_exactly(store: Any, version: Version) -> None:
    """Many final jobs in one write (the sync lane's write-back) keep every value: full float
    precision, text with quotes, escapes and NULs, nested JSON, empty and absent fields."""
    odd = 'q"\\\u0000é\n\U0001f600'
    jobs = [
        queued(
            version,
            f"s{i:03}",
            status=JobStatus.COMPLETED if i % 3 else JobStatus.FAILED,
            input={"text": odd, "n": [i, 0.1 * i, None, True], "deep": {"a": {"b": [[]]}}},
            output=None if i % 3 == 0 else {"sum": 1795934947.4702 + i / 7, "s": odd},
            error={"message": odd} if i % 3 == 0 else None,
            attempts=1,
            created_at=1795934947.123456789 + i / 3,
            started_at=1795934947.2 + i / 11,
            finished_at=1795934947.3 + i / 13,
            worker_id=f"w{i}",
            cold_start=i == 4,
            cold_start_detail={"forkMs": 0.87 + i} if i == 4 else None,
            cost_usd=1e-9 * i + 5e-324,
            webhook_url="https://example.test/h" if i == 5 else None,
            webhook_state=WebhookState.PENDING if i == 5 else None,
            cached=i == 6,
        )
        for i in range(40)
    ]
    store.save_jobs(jobs)
    assert store.get_jobs([j.id for j in jobs]) == jobs
    store.save_jobs([dataclasses.replace(jobs[0], output={"again": 1})])  # an upsert
    assert store.get_job(jobs[0].id).output == {"again": 1}
