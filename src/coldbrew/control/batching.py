"""The batch window: how long a batched version's short batch waits for more jobs.

Only a busy endpoint (its last batch went full) holds a short batch, for at most `max_wait_ms`;
a lone job on a quiet endpoint goes at once. The dispatcher asks before each batch it sends.
"""

from __future__ import annotations

from collections.abc import Callable

from coldbrew.clock import Clock
from coldbrew.spec import DeploymentSpec


class BatchWindow:
    """Per version: whether its last batch was full, and until when a short batch waits."""

    def __init__(self, clock: Clock, wake: Callable[[], None]) -> None:
        self.clock = clock
        self._wake = wake  # the dispatcher's tick, when a hold runs out
        self.full: dict[int, bool] = {}  # version -> was its last batch full
        self._hold: dict[int, float] = {}  # version -> until when a short batch waits

    def sent(self, vid: int, size: int, max_size: int) -> None:
        """A batch of `size` went to a worker."""
        self.full[vid] = size >= max_size

    def held(self, vid: int, spec: DeploymentSpec, queued: int, size: int) -> bool:
        """Whether a short batch of the version waits for more jobs now."""
        assert spec.batch is not None
        now = self.clock.monotonic()
        if queued < size and self.full.get(vid) and spec.batch.max_wait_ms > 0:
            until = self._hold.get(vid)
            if until is None:
                until = self._hold[vid] = now + spec.batch.max_wait_ms / 1000
                self.clock.call_later(until - now, self._wake)
            if now < until:
                return True
        self._hold.pop(vid, None)
        return False
