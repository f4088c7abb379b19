"""Shared helpers of the store contract suites: plain calls, a deploy, jobs in given states."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, Version

SPEC: dict[str, Any] = {"hardware": "cpu", "max_workers": 4, "idle_timeout_s": 300.0}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
HOUR = 3600.0


class SyncStore:
    """The store's coroutine methods as plain calls, each run to completion on `runner`'s
    loop (one loop per test: a connection pool cannot move between loops), or without one by
    `asyncio.run`."""

    def __init__(self, store: Store, runner: asyncio.Runner | None = None) -> None:
        self._store = store
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._runner is None:
                return asyncio.run(method(*args, **kwargs))
            return self._runner.run(method(*args, **kwargs))

        return call


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
