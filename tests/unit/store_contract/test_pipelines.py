"""The pipelines part: definitions are revised only when they change, runs and their stages
survive as written, and unfinished runs are what a starting server finds to resume."""

from __future__ import annotations

from typing import Any

from coldbrew.store.models import JobStatus
from coldbrew.store.pipelines import PipelineRun, StageRecord

DEFINITION: dict[str, Any] = {"name": "moods", "steps": [{"name": "a", "endpoint": "echo"}]}


def _run(run_id: str, account: str = "acme", created_at: float = 10.0) -> PipelineRun:
    return PipelineRun(
        id=run_id,
        account=account,
        pipeline="moods",
        definition=DEFINITION,
        input={"x": 1},
        status=JobStatus.IN_PROGRESS,
        created_at=created_at,
    )


def _stage(key: str, **changes: Any) -> StageRecord:
    fields: dict[str, Any] = {
        "run_id": "r1",
        "key": key,
        "step": key,
        "endpoint": "echo",
        "job_id": f"job-{key}",
        "attempt": 1,
        "status": JobStatus.IN_QUEUE,
        "created_at": 11.0,
    }
    fields.update(changes)
    return StageRecord(**fields)


def test_a_definition_is_revised_only_when_it_changes(store: Any) -> None:
    first, changed = store.put_pipeline("acme", "moods", DEFINITION, 1.0)
    assert (first.revision, changed) == (1, True)
    same, changed = store.put_pipeline("acme", "moods", dict(DEFINITION), 2.0)
    assert (same.revision, changed) == (1, False)
    other = {**DEFINITION, "description": "v2"}
    second, changed = store.put_pipeline("acme", "moods", other, 3.0)
    assert (second.revision, changed, second.created_at) == (2, True, 1.0)
    assert store.get_pipeline("acme", "moods").definition == other
    assert store.get_pipeline("beta", "moods") is None


def test_pipelines_are_listed_per_account_and_deleted(store: Any) -> None:
    store.put_pipeline("acme", "b", DEFINITION, 1.0)
    store.put_pipeline("acme", "a", DEFINITION, 1.0)
    store.put_pipeline("beta", "c", DEFINITION, 1.0)
    assert [p.name for p in store.list_pipelines("acme")] == ["a", "b"]
    assert store.delete_pipeline("acme", "a") is True
    assert store.delete_pipeline("acme", "a") is False
    assert [p.name for p in store.list_pipelines("acme")] == ["b"]


def test_a_run_is_read_back_as_written_and_only_by_its_account(store: Any) -> None:
    written = _run("r1")
    written.webhook_url = "https://example.test/hook"
    store.create_run(written)
    run = store.get_run("r1", "acme")
    assert run == written
    assert (run.pipeline, run.input, run.status, run.attempt) == (
        "moods",
        {"x": 1},
        JobStatus.IN_PROGRESS,
        1,
    )
    assert run.definition == DEFINITION
    assert store.get_run("r1", "beta") is None
    assert store.get_run("nope") is None


def test_unfinished_runs_are_those_not_final_oldest_first(store: Any) -> None:
    store.create_run(_run("late", created_at=30.0))
    store.create_run(_run("early", created_at=20.0))
    store.create_run(_run("done", created_at=10.0))
    store.set_run("done", JobStatus.COMPLETED, output={"ok": True}, finished_at=40.0)
    assert [r.id for r in store.unfinished_runs()] == ["early", "late"]
    done = store.get_run("done")
    assert (done.status, done.output, done.finished_at) == (JobStatus.COMPLETED, {"ok": True}, 40.0)


def test_a_retry_moves_the_run_back_with_its_next_attempt(store: Any) -> None:
    store.create_run(_run("r1"))
    error = {"type": "stage_failed", "message": "boom", "stage": "a"}
    store.set_run("r1", JobStatus.FAILED, error=error, finished_at=5.0)
    assert store.get_run("r1").error == error
    store.set_run("r1", JobStatus.IN_PROGRESS, attempt=2)
    run = store.get_run("r1")
    assert (run.status, run.attempt, run.error, run.finished_at) == (
        JobStatus.IN_PROGRESS,
        2,
        None,
        None,
    )


def test_stages_keep_their_first_order_and_are_replaced_by_key(store: Any) -> None:
    store.create_run(_run("r1"))
    store.put_stage(_stage("see"))
    store.put_stage(_stage("feel"))
    store.put_stage(
        _stage(
            "see",
            status=JobStatus.COMPLETED,
            output={"label": 7},
            started_at=12.0,
            finished_at=13.5,
            cold_start=True,
            cost_usd=0.25,
        )
    )
    stages = store.stages("r1")
    assert [s.key for s in stages] == ["see", "feel"]
    see = stages[0]
    assert (see.status, see.output, see.cold_start, see.cost_usd, see.finished_at) == (
        JobStatus.COMPLETED,
        {"label": 7},
        True,
        0.25,
        13.5,
    )
    failed = _stage(
        "feel",
        attempt=2,
        job_id="job-2",
        status=JobStatus.FAILED,
        error={"m": 1},
        earlier_cost_usd=0.5,
    )
    store.put_stage(failed)
    assert store.stages("r1")[1] == failed
    assert store.stages("other") == []


def test_ended_runs_past_retention_are_purged_with_their_stages(store: Any) -> None:
    store.create_run(_run("old"))
    store.create_run(_run("new"))
    store.create_run(_run("open"))
    store.put_stage(_stage("a", run_id="old"))
    store.put_stage(_stage("a", run_id="new"))
    store.set_run("old", JobStatus.COMPLETED, finished_at=100.0)
    store.set_run("new", JobStatus.FAILED, finished_at=300.0)
    assert store.purge_runs(200.0) == 1
    assert store.get_run("old") is None
    assert store.stages("old") == []
    assert [s.key for s in store.stages("new")] == ["a"]
    assert store.get_run("open") is not None  # not ended: kept, whatever its age
    assert store.purge_runs(1e12) == 1
    assert [r.id for r in store.unfinished_runs()] == ["open"]
