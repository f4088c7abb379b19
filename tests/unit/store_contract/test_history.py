"""The history contract (`coldbrew.store.history.History`): timings, logs, webhook deliveries
and traffic."""

from __future__ import annotations

from typing import Any

from tests.unit.store_contract.helpers import deploy, finished_job, new_job

from coldbrew.store.models import (
    JobStatus,
    JobTiming,
    Version,
    WebhookState,
)


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


def test_arrivals_add_up_per_bucket(store: Any, version: Version) -> None:
    store.record_arrivals([(version.endpoint_id, 5, 10, 2), (version.endpoint_id, 5, 11, 1)])
    store.record_arrivals([(version.endpoint_id, 5, 10, 3)])
    assert sorted(store.traffic(version.endpoint_id, 0)) == [(5, 10, 5), (5, 11, 1)]


def test_job_timings_are_final_jobs_since_a_time_per_account_and_endpoint(
    store: Any, version: Version
) -> None:
    done = finished_job(store, version, "done", JobStatus.COMPLETED, created_at=150.0)
    store.mark_cold_start("done", {"totalMs": 40.0})
    new_job(store, version, "queued", created_at=190.0)  # not final: not a timing
    theirs = deploy(store, endpoint="echo", account="beta")
    finished_job(store, theirs, "beta-job", JobStatus.COMPLETED, created_at=160.0)

    timings = store.job_timings(0.0, "acme")
    assert timings == [
        JobTiming(
            endpoint="echo",
            status=JobStatus.COMPLETED,
            created_at=150.0,
            started_at=200.0,
            finished_at=done.finished_at,
            cold_start=True,
            cached=False,
            version_id=version.id,
        )
    ]
    assert [t.status for t in store.job_timings(0.0, None)] == [JobStatus.COMPLETED] * 2
    assert store.job_timings(201.5, "acme") == []  # finished at 201
    assert store.job_timings(0.0, "acme", endpoint_id=theirs.endpoint_id) == []
    assert len(store.job_timings(0.0, "acme", endpoint_id=version.endpoint_id)) == 1


def test_pending_webhooks_are_claimed_by_one_gateway_until_the_claim_lapses(
    store: Any, version: Version
) -> None:
    """The outbox: a gateway's claim keeps the others off until it lapses; its holder renews
    it; a delivered webhook is nobody's."""
    finished_job(store, version, "j1", JobStatus.COMPLETED, webhook_url="https://example.test/h")
    finished_job(store, version, "j2", JobStatus.FAILED, webhook_url="https://example.test/h")
    finished_job(store, version, "plain", JobStatus.COMPLETED)  # no webhook: never claimed

    mine = store.claim_webhooks("gw-a", 300.0, 330.0, 10)
    assert [j.id for j in mine] == ["j1", "j2"]
    assert mine[0].webhook_url == "https://example.test/h"
    assert store.claim_webhooks("gw-b", 310.0, 340.0, 10) == []  # held by gw-a
    assert store.claim_webhooks("gw-b", 310.0, 340.0, 10, job_id="j1") == []
    renewed = store.claim_webhooks("gw-a", 320.0, 360.0, 10, job_id="j1")  # its holder renews
    assert [j.id for j in renewed] == ["j1"]

    taken = store.claim_webhooks("gw-b", 345.0, 375.0, 10)  # j2's claim lapsed at 330
    assert [j.id for j in taken] == ["j2"]
    assert store.claim_webhooks("gw-a", 346.0, 380.0, 10, job_id="j2") == []  # gw-b's now

    store.record_delivery("j1", 1, 350.0, 204, None, WebhookState.DELIVERED)
    assert store.claim_webhooks("gw-c", 1000.0, 1030.0, 10, job_id="j1") == []
    assert [j.id for j in store.claim_webhooks("gw-c", 1000.0, 1030.0, 10)] == ["j2"]


def test_a_claim_takes_at_most_the_limit_oldest_first(store: Any, version: Version) -> None:
    for n in range(3):
        finished_job(store, version, f"j{n}", JobStatus.COMPLETED, webhook_url="https://h.test/")
    assert [j.id for j in store.claim_webhooks("gw-a", 300.0, 330.0, 2)] == ["j0", "j1"]
    assert [j.id for j in store.claim_webhooks("gw-b", 300.0, 330.0, 2)] == ["j2"]


def test_a_webhook_hook_is_kept_with_its_job(store: Any, version: Version) -> None:
    new_job(store, version, "j1", webhook_url="https://example.test/h")
    assert store.webhook_hook("j1") is None
    store.save_webhook_hook("j1", {"format": "replicate", "base": "http://gw:8000"})
    assert store.webhook_hook("j1") == {"format": "replicate", "base": "http://gw:8000"}
