"""Per-account queue limits, checked on every request without asking the store.

The scheduler reads the store's queue counters once per tick (`Store.queue_stats`, kept by
triggers). Between ticks, jobs the gateway queued are added here as they come, so an account's
count is exact up to jobs that left the queue since the last tick: a request is refused a little
early rather than let through late. RunPod answers 429 past its queue limit; so does coldbrew,
with `Retry-After` and a body that names the limit and how to raise it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from coldbrew.errors import QueueFull
from coldbrew.store.models import Account

#: What a 429 asks the caller to wait: about the time a busy endpoint needs to work through a
#: few hundred queued jobs; the bulk client backs off on its own as well.
RETRY_AFTER_S = 5


class QueueLedger:
    """Queued jobs per account (store queue as of the last tick plus arrivals since), the
    accounts' own limits and fair-share weights."""

    def __init__(self, default_limit: int) -> None:
        self.default_limit = default_limit
        self.weights: dict[str, float] = {}
        self._limits: dict[str, int] = {}
        self._at_tick: Counter[str] = Counter()
        self._before: Counter[str] = Counter()  # queued before the running tick read the store
        self._since: Counter[str] = Counter()

    def load(self, accounts: Iterable[Account]) -> None:
        """Take every account's settings (at start-up)."""
        for account in accounts:
            self.apply(account)

    def apply(self, account: Account) -> None:
        """Take one account's settings after an admin changed them."""
        self.weights[account.name] = account.weight
        if account.max_queued_jobs is None:
            self._limits.pop(account.name, None)
        else:
            self._limits[account.name] = account.max_queued_jobs

    def limit(self, account: str) -> int:
        return self._limits.get(account, self.default_limit)

    def tick_started(self) -> None:
        """A tick is about to read the store: what was queued until now will be in its count."""
        self._before, self._since = self._since, Counter()

    def tick_ended(self, queued: Mapping[str, int]) -> None:
        """The store's queue per account after the tick's dispatch."""
        self._at_tick = Counter(queued)
        self._before = Counter()

    def added(self, account: str) -> None:
        """The gateway queued one job in the store for `account`."""
        self._since[account] += 1

    def queued(self, account: str) -> int:
        return self._at_tick[account] + self._before[account] + self._since[account]

    def check(self, account: str, waiting_in_memory: int = 0) -> None:
        """Raise `QueueFull` when `account` may not queue another job."""
        limit = self._limits.get(account, self.default_limit)  # `limit()`, inline: per request
        queued = (
            self._at_tick[account] + self._before[account] + self._since[account]
        ) + waiting_in_memory
        if queued < limit:
            return
        raise QueueFull(
            f"account {account!r} has {queued} jobs queued; its limit is {limit}",
            retry_after_s=RETRY_AFTER_S,
            hint=f"retry after {RETRY_AFTER_S} s, when queued jobs have run; an admin can raise "
            f"the limit for this account (PATCH /v1/accounts/{account} "
            '{"maxQueuedJobs": N}) or for every account (COLDBREW_ACCOUNT_MAX_QUEUED_JOBS)',
            limit=limit,
            queued=queued,
        )
