"""The store contract, on the in-memory SQLite store: accounts, versions, the job queue,
logs, webhook deliveries and usage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from coldbrew.store.models import (
    Account,
    Job,
    JobStatus,
    Principal,
    QueueStat,
    UsageKind,
    UsageRow,
    Version,
    WebhookState,
    can_transition,
)
from coldbrew.store.sqlite import SQLiteStore

SPEC: dict[str, Any] = {"hardware": "cpu", "max_workers": 4, "idle_timeout_s": 300.0}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
HOUR = 3600.0


class SyncStore:
    """The store's coroutine methods as plain calls, each run to completion by `asyncio.run`."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return call


@pytest.fixture
def store() -> Iterator[Any]:
    raw = SQLiteStore(":memory:")
    yield SyncStore(raw)
    asyncio.run(raw.close())


def deploy(store: Any, endpoint: str = "echo", account: str = "acme", **changes: Any) -> Version:
    args: dict[str, Any] = {
        "artifact_sha": "sha-1",
        "module": "app",
        "class_name": "Echo",
        "spec": SPEC,
        "input_schema": SCHEMA,
    }
    args.update(changes)
    version, _ = store.add_version(account, endpoint, now=10.0, **args)
    return version


@pytest.fixture
def version(store: Any) -> Version:
    store.create_account("acme", "whsec_acme", 1.0)
    store.create_account("beta", "whsec_beta", 1.0)
    return deploy(store)


def new_job(
    store: Any,
    version: Version,
    job_id: str,
    *,
    created_at: float = 100.0,
    expires_at: float = 10_000.0,
    webhook_url: str | None = None,
) -> Job:
    job = Job(
        id=job_id,
        account=version.account,
        endpoint_id=version.endpoint_id,
        endpoint=version.endpoint,
        version_id=version.id,
        status=JobStatus.IN_QUEUE,
        input={"text": job_id},
        created_at=created_at,
        expires_at=expires_at,
        timeout_s=60.0,
        max_attempts=3,
        webhook_url=webhook_url,
    )
    store.create_job(job)
    return job


def finished_job(
    store: Any, version: Version, job_id: str, status: JobStatus, **job_fields: Any
) -> Job:
    """A job that a worker claimed and ran to `status`."""
    new_job(store, version, job_id, **job_fields)
    claimed = store.claim(version.id, "w1", 200.0)
    assert claimed is not None and claimed.id == job_id
    done = store.finish(job_id, status, 201.0)
    assert done is not None
    return done


# accounts and keys


def test_account_round_trip(store: Any) -> None:
    created = store.create_account("acme", "whsec_a", 5.0)
    assert created == Account(name="acme", webhook_secret="whsec_a", created_at=5.0)
    assert store.get_account("acme") == created
    assert store.get_account("nobody") is None


def test_creating_an_account_again_keeps_its_secret(store: Any) -> None:
    store.create_account("acme", "whsec_a", 5.0)
    again = store.create_account("acme", "whsec_other", 6.0)
    assert again == Account(name="acme", webhook_secret="whsec_a", created_at=5.0)
    assert store.count_accounts() == 1


def test_count_accounts(store: Any) -> None:
    assert store.count_accounts() == 0
    store.create_account("acme", "s", 1.0)
    store.create_account("beta", "s", 1.0)
    assert store.count_accounts() == 2


def test_keys_resolve_to_principals(store: Any) -> None:
    store.create_account("acme", "s", 1.0)
    store.add_key("hash-admin", "acme", True, 1.0)
    store.add_key("hash-user", "acme", False, 1.0)
    assert store.principal("hash-admin") == Principal(account="acme", admin=True)
    assert store.principal("hash-user") == Principal(account="acme", admin=False)
    assert store.principal("hash-unknown") is None


# endpoints and versions


def test_first_deploy_creates_version_one(store: Any) -> None:
    version, created = store.add_version("acme", "echo", "sha-1", "app", "Echo", SPEC, SCHEMA, 10.0)
    assert created is True
    assert (version.account, version.endpoint, version.number) == ("acme", "echo", 1)
    assert (version.artifact_sha, version.module, version.class_name) == ("sha-1", "app", "Echo")
    assert (version.spec, version.input_schema, version.created_at) == (SPEC, SCHEMA, 10.0)
    endpoint = store.get_endpoint("acme", "echo")
    assert endpoint.current_version_id == version.id
    assert store.get_version(version.id) == version


def test_identical_redeploy_keeps_the_version(store: Any) -> None:
    first, _ = store.add_version("acme", "echo", "sha-1", "app", "Echo", SPEC, SCHEMA, 10.0)
    reordered = dict(reversed(list(SPEC.items())))
    again, created = store.add_version(
        "acme", "echo", "sha-1", "app", "Echo", reordered, SCHEMA, 20.0
    )
    assert (again, created) == (first, False)


@pytest.mark.parametrize(
    "change",
    [
        {"artifact_sha": "sha-2"},
        {"module": "serve"},
        {"class_name": "Echo2"},
        {"spec": SPEC | {"max_workers": 8}},
        {"input_schema": SCHEMA | {"required": ["text"]}},
    ],
    ids=["sha", "module", "class", "spec", "schema"],
)
def test_changed_deploy_makes_version_two_current(store: Any, change: dict[str, Any]) -> None:
    first = deploy(store)
    args: dict[str, Any] = {
        "artifact_sha": "sha-1",
        "module": "app",
        "class_name": "Echo",
        "spec": SPEC,
        "input_schema": SCHEMA,
    } | change
    second, created = store.add_version("acme", "echo", now=20.0, **args)
    assert created is True
    assert second.number == 2
    assert store.get_endpoint("acme", "echo").current_version_id == second.id
    assert store.get_version(first.id) == first


def test_version_numbers_count_per_endpoint(store: Any) -> None:
    deploy(store, "echo")
    deploy(store, "echo", artifact_sha="sha-2")
    other = deploy(store, "embed")
    assert other.number == 1


def test_list_endpoints_by_account(store: Any) -> None:
    deploy(store, "zeta")
    deploy(store, "alpha")
    deploy(store, "echo", account="beta")
    assert [e.name for e in store.list_endpoints("acme")] == ["alpha", "zeta"]
    assert [(e.account, e.name) for e in store.list_endpoints(None)] == [
        ("acme", "alpha"),
        ("beta", "echo"),
        ("acme", "zeta"),
    ]
    assert store.get_endpoint("beta", "alpha") is None


def test_unknown_version_is_a_key_error(store: Any) -> None:
    with pytest.raises(KeyError):
        store.get_version(999)


def test_delete_endpoint_cancels_its_queue(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    deleted = store.delete_endpoint("acme", "echo", 50.0)
    assert deleted.id == version.endpoint_id
    assert store.get_endpoint("acme", "echo") is None
    assert store.list_endpoints("acme") == []
    assert store.get_job("j1").status is JobStatus.CANCELLED
    assert store.delete_endpoint("acme", "echo", 51.0) is None


# jobs


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


# logs and webhooks


def test_logs_come_back_in_the_order_they_were_written(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    new_job(store, version, "j2")
    store.append_logs([("j1", 2.0, "stdout", "loading"), ("j2", 1.0, "stdout", "other")])
    store.append_logs([("j1", 1.5, "stderr", "warning: slow"), ("j1", 3.0, "stdout", "done")])
    assert store.job_logs("j1") == [
        {"ts": 2.0, "stream": "stdout", "line": "loading"},
        {"ts": 1.5, "stream": "stderr", "line": "warning: slow"},
        {"ts": 3.0, "stream": "stdout", "line": "done"},
    ]
    assert store.job_logs("missing") == []


def test_deliveries_and_webhook_state(store: Any, version: Version) -> None:
    finished_job(store, version, "j1", JobStatus.COMPLETED, webhook_url="https://example.test/h")
    store.record_delivery("j1", 2, 305.0, None, "ConnectError: refused", None)
    store.record_delivery("j1", 1, 301.0, 500, "receiver answered HTTP 500", None)
    assert store.get_job("j1").webhook_state is WebhookState.PENDING
    assert [j.id for j in store.pending_webhooks()] == ["j1"]

    store.record_delivery("j1", 3, 309.0, 204, None, WebhookState.DELIVERED)

    assert store.deliveries("j1") == [
        {"attempt": 1, "at": 301.0, "statusCode": 500, "error": "receiver answered HTTP 500"},
        {"attempt": 2, "at": 305.0, "statusCode": None, "error": "ConnectError: refused"},
        {"attempt": 3, "at": 309.0, "statusCode": 204, "error": None},
    ]
    assert store.get_job("j1").webhook_state is WebhookState.DELIVERED
    assert store.pending_webhooks() == []


def test_giving_up_on_a_webhook_ends_pending(store: Any, version: Version) -> None:
    finished_job(store, version, "j1", JobStatus.FAILED, webhook_url="https://example.test/h")
    store.record_delivery("j1", 1, 301.0, 410, "receiver answered HTTP 410", WebhookState.GAVE_UP)
    assert store.get_job("j1").webhook_state is WebhookState.GAVE_UP
    assert store.pending_webhooks() == []


# usage


def _usage(
    seconds: float,
    *,
    kind: UsageKind = UsageKind.BUSY,
    hour_start: float = 10 * HOUR,
    worker_id: str = "w1",
    account: str = "acme",
) -> UsageRow:
    return UsageRow(worker_id, account, "echo", 1, "cpu", kind, hour_start, seconds)


def test_usage_accumulates_into_one_row_per_worker_kind_and_hour(store: Any) -> None:
    store.add_usage([_usage(10.0)])
    store.add_usage([_usage(5.5), _usage(2.0, kind=UsageKind.IDLE)])
    store.add_usage([_usage(1.0, hour_start=11 * HOUR), _usage(4.0, worker_id="w2")])
    rows = store.usage(0.0, None)
    assert sorted(rows, key=lambda r: (r.hour_start, r.worker_id, r.kind.value)) == [
        _usage(15.5),
        _usage(2.0, kind=UsageKind.IDLE),
        _usage(4.0, worker_id="w2"),
        _usage(1.0, hour_start=11 * HOUR),
    ]


def test_usage_filters_by_hour_and_account(store: Any) -> None:
    store.add_usage(
        [
            _usage(1.0, hour_start=9 * HOUR),
            _usage(2.0, hour_start=10 * HOUR),
            _usage(3.0, hour_start=11 * HOUR, worker_id="w2", account="beta"),
        ]
    )
    assert [r.seconds for r in store.usage(10 * HOUR, None)] == [2.0, 3.0]
    assert [r.seconds for r in store.usage(10 * HOUR, "acme")] == [2.0]
    assert [r.seconds for r in store.usage(0.0, "beta")] == [3.0]
    assert store.usage(12 * HOUR, None) == []


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


def test_arrivals_add_up_per_bucket(store: Any, version: Version) -> None:
    store.record_arrivals([(version.endpoint_id, 5, 10, 2), (version.endpoint_id, 5, 11, 1)])
    store.record_arrivals([(version.endpoint_id, 5, 10, 3)])
    assert sorted(store.traffic(version.endpoint_id, 0)) == [(5, 10, 5), (5, 11, 1)]


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
