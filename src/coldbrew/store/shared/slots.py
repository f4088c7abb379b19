"""Account concurrency slots: at most `cap` of an account's jobs run at once, across every
gateway that shares the slots.

The dispatcher takes a slot before it claims a job and gives it back when the job leaves its
worker. Slots are tokens, not job ids: a slot is taken before the store says which job it gets.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Protocol


class AccountSlots(Protocol):
    """Where the running jobs of each account are counted against its cap."""

    async def take(self, account: str, cap: int, count: int = 1) -> list[str]:
        """Up to `count` slot tokens of the account, as many as keep it within `cap` (maybe
        none). A store that cannot be reached grants none: jobs wait queued, the cap holds."""
        ...

    def give_back(self, account: str, tokens: Iterable[str]) -> None:
        """Free slots (a job ended, or a claim found no job); never blocks the caller."""
        ...

    async def renew(self) -> None:
        """Keep this gateway's slots alive (called every tick; cheap when nothing is due)."""
        ...

    async def close(self) -> None: ...


class LocalSlots:
    """Slots counted in this process: the embedded default, exactly the old in-memory cap."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}
        self._serial = itertools.count(1)

    async def take(self, account: str, cap: int, count: int = 1) -> list[str]:
        held = self._held.setdefault(account, set())
        granted = [str(next(self._serial)) for _ in range(max(0, min(count, cap - len(held))))]
        held.update(granted)
        return granted

    def give_back(self, account: str, tokens: Iterable[str]) -> None:
        held = self._held.get(account)
        if held is not None:
            held.difference_update(tokens)
            if not held:
                del self._held[account]

    def held(self, account: str) -> int:
        """Slots the account holds now (tests, metrics)."""
        return len(self._held.get(account, ()))

    async def renew(self) -> None:
        return None

    async def close(self) -> None:
        self._held.clear()
