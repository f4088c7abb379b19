"""Answers from the result cache: a job of an endpoint with `cache_ttl_s` whose exact input ran
before is finished from the cache (no worker, no cost), and completed outputs are kept for the
next one. A cache that is down costs hits, never jobs."""

from __future__ import annotations

import asyncio
import logging

from coldbrew.control.cache import ResultCache, cache_key
from coldbrew.store.models import Job, JobStatus, WebhookState

log = logging.getLogger("coldbrew.control.results")


class CachedResults:
    """Looks jobs up in the cache, and (as a final-job listener) stores completed outputs."""

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        self._ttl_s: dict[int, float] = {}  # versions that cache, and for how long
        self._tasks: set[asyncio.Task[None]] = set()

    async def look_up(self, job: Job, ttl_s: float, use_cache: bool) -> None:
        """Finish `job` from the cache when its output is there; remember that its version
        caches for `ttl_s` either way (`use_cache=False` skips only the lookup)."""
        self._ttl_s[job.version_id] = ttl_s
        if not use_cache:
            return
        try:
            hit, output = await self.cache.get(cache_key(job.version_id, job.input))
        except Exception:
            log.warning("result cache lookup failed", exc_info=True)
            return
        if hit:
            job.status, job.output, job.cached = JobStatus.COMPLETED, output, True
            job.started_at = job.finished_at = job.created_at
            job.webhook_state = WebhookState.PENDING if job.webhook_url else None

    def remember(self, job: Job) -> None:
        """A final-job listener: keep completed outputs of caching versions."""
        ttl_s = self._ttl_s.get(job.version_id)
        if ttl_s and job.status is JobStatus.COMPLETED and not job.cached:
            task = asyncio.create_task(self._put(job, ttl_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _put(self, job: Job, ttl_s: float) -> None:
        try:
            await self.cache.put(cache_key(job.version_id, job.input), job.output, ttl_s)
        except Exception:
            log.warning("could not store job %s in the result cache", job.id, exc_info=True)
