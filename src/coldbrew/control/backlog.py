"""Where a waiting job is: in the sync lane (memory) or in the store's queue.

One notion replaces the scheduler's overlapping trackers. Per version there is the sync lane
(a FIFO of /runsync jobs that live in memory until final), the store's queue length as the
last tick's dispatch left it, and a flag "the store's queue may hold jobs". While the flag is
up, the lane takes no new job and the tick spills what it holds into the store, so one FIFO
order holds across both places.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping

from coldbrew.control.queues import QueueLedger
from coldbrew.store.models import Job, QueueStat


class Backlog:
    """Waiting jobs per version: the sync lane, the store's queue, and which may hold jobs."""

    def __init__(self, ledger: QueueLedger, wake: Callable[[], None]) -> None:
        self.lane: defaultdict[int, deque[Job]] = defaultdict(deque)  # version -> in memory
        self.stored: dict[int, int] = {}  # version -> the store's queue after the last dispatch
        # versions whose store queue may hold jobs (read on the hot path as `vid in flagged`)
        self.flagged: set[int] = set()
        self._since_read: set[int] = set()  # flagged after the running tick read the store
        self._ledger = ledger
        self._wake = wake

    def in_store(self, version_id: int) -> bool:
        """Whether the version's store queue may hold jobs (then those go first)."""
        return version_id in self.flagged

    def flag(self, version_id: int) -> None:
        """The version has jobs in the store's queue; the next tick dispatches them."""
        self.flagged.add(version_id)
        self._since_read.add(version_id)
        self._wake()

    def queued_in_store(self, job: Job) -> bool:
        """The gateway left `job` in the store's queue: count it against the account's limit
        and flag its version. Always False (it did not start), for `dispatch_now`."""
        self._ledger.added(job.account)
        self.flag(job.version_id)
        return False

    def begin_tick(self) -> None:
        """A tick starts: flags raised from now on survive its end."""
        self._since_read = set()

    def to_spill(self) -> list[int]:
        """Versions whose lane holds jobs while their store queue may hold older ones."""
        return [v for v, queue in self.lane.items() if queue and v in self.flagged]

    def lane_versions(self) -> list[int]:
        """Versions with jobs waiting in the sync lane."""
        return [v for v, queue in self.lane.items() if queue]

    def with_lane(self, stats: Mapping[int, QueueStat]) -> dict[int, QueueStat]:
        """The store's queue stats with the sync lane's waiting jobs added (what scaling sees)."""
        both = dict(stats)
        for vid, queue in self.lane.items():
            if queue:
                stored = stats.get(vid)
                both[vid] = QueueStat(
                    queued=len(queue) + (stored.queued if stored else 0),
                    oldest_created_at=min(
                        queue[0].created_at,
                        stored.oldest_created_at if stored else queue[0].created_at,
                    ),
                )
        return both

    def end_tick(self, queued: Mapping[int, int], account_of: Callable[[int], str]) -> None:
        """The store's queue per version after the tick's dispatch; jobs queued while the tick
        ran stay flagged."""
        self.stored = {vid: n for vid, n in queued.items() if n > 0}
        self.flagged = set(self.stored) | self._since_read
        per_account: Counter[str] = Counter()
        for vid, n in self.stored.items():
            per_account[account_of(vid)] += n
        self._ledger.tick_ended(per_account)

    def lengths(self) -> Counter[int]:
        """Waiting jobs per version: the store's as of the last tick, the lane's now."""
        queued = Counter(self.stored)
        queued.update({vid: len(queue) for vid, queue in self.lane.items() if queue})
        return queued

    def admit(self, account: str) -> None:
        """Raise `QueueFull` (a 429) when `account` may not queue another job: the store's
        queue as of the last tick, jobs queued since, and the sync lane's."""
        waiting = 0
        for queue in self.lane.values():  # a version's jobs share one account
            if queue and queue[0].account == account:
                waiting += len(queue)
        self._ledger.check(account, waiting)
