"""One process of the claim race (`test_claim_race.py`): claim batches from a shared store until
its queue is empty, finish each job as its owner, and write the ids it finished to a file.

    python -m tests.integration.claimer KIND WHERE VERSION_ID WORKER BATCH OUT GO

KIND is `sqlite` (WHERE: the database file) or `postgres` (WHERE: URL#schema). The process
opens its store, then waits for the file GO, so that every claimer starts at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from coldbrew.store.base import Store
from coldbrew.store.models import JobStatus

POOL = 4  # connections per claimer: a batch's finishes go out side by side


async def open_store(kind: str, where: str) -> Store:
    if kind == "sqlite":
        from coldbrew.store.sqlite import SQLiteStore

        return SQLiteStore(where)
    from coldbrew.store.postgres import PostgresStore

    url, _, schema = where.partition("#")
    return await PostgresStore.connect(url, schema=schema or None, pool_max=POOL)


async def claim_all(store: Store, version_id: int, worker: str, batch: int) -> list[str]:
    finished: list[str] = []
    while True:
        jobs = await store.claim_many(version_id, worker, 1.0, batch)
        if not jobs:
            return finished
        done = await asyncio.gather(  # as a worker with a batch does: results come together
            *(
                store.finish(
                    job.id, JobStatus.COMPLETED, 2.0, output={"by": worker}, worker_id=worker
                )
                for job in jobs
            )
        )
        lost = [job.id for job, final in zip(jobs, done, strict=True) if final is None]
        if lost:
            raise AssertionError(f"{worker} claimed {lost} but could not finish them")
        finished.extend(job.id for job in jobs)


async def main(kind: str, where: str, version_id: int, worker: str, batch: int, out: str) -> None:
    store = await open_store(kind, where)
    go = Path(sys.argv[7])
    while not go.exists():  # a test helper, not production code: a plain poll is fine
        time.sleep(0.005)
    try:
        finished = await claim_all(store, version_id, worker, batch)
    finally:
        await store.close()
    Path(out).write_text("\n".join(finished))


if __name__ == "__main__":
    kind, where, vid, worker, batch, out = sys.argv[1:7]
    asyncio.run(main(kind, where, int(vid), worker, int(batch), out))
