"""The store's triggers concern: trigger definitions, their cursors, counters, in-flight messages
and dead letters.

A trigger's runner keeps here everything that must survive a restart: the definition (source,
target, sink and limits), the source cursor for sources whose system keeps none (cron's last
tick, a PostgreSQL table's last row), one row per message whose job is still running (so a job
accepted and acked at the source is never forgotten), the dead letters with their error, and
the counters `coldbrew triggers list` shows. Kept apart from the queue: the runner reaches jobs
only through the job service, and a second database can take this part over on its own.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class TriggerState(StrEnum):
    ACTIVE = "ACTIVE"  # its runner fetches and submits
    PAUSED = "PAUSED"  # its runner is stopped; the source keeps what arrives meanwhile


@dataclass(frozen=True)
class TriggerDef:
    """One trigger as created: source → target (an endpoint or a pipeline) → optional sink."""

    id: str
    account: str
    name: str
    source_kind: str
    source: dict[str, Any]  # the kind's validated config
    target_kind: str  # "endpoint" or "pipeline"
    target: str  # the endpoint's (or pipeline's) name
    sink_kind: str | None
    sink: dict[str, Any] | None
    batch_size: int  # messages fetched and submitted together, at most
    batch_window_ms: int  # how long a window waits to fill after its first message
    max_in_flight: int  # jobs of this trigger queued or running at once, at most
    max_attempts: int  # jobs per message before it is dead-lettered
    secret: str  # keys the signed event URL (push sources)
    state: TriggerState
    created_at: float


@dataclass(frozen=True)
class TriggerCounters:
    """What a trigger did since it was created (durable; throughput is the runner's own)."""

    received: int = 0  # messages taken from the source
    completed: int = 0  # messages whose job completed
    failed: int = 0  # failed job attempts (each retry counts)
    dead_lettered: int = 0  # messages given up on after `max_attempts`
    last_error: dict[str, Any] | None = None
    last_error_at: float | None = None


@dataclass(frozen=True)
class InFlight:
    """A message whose job was accepted (and the message acked) but is not finished yet."""

    trigger_id: str
    message_key: str
    job_id: str
    attempt: int  # 1 for the first job of the message
    body: Any  # the message's input, to submit again on a retry
    received_at: float


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on, with the error of its last attempt."""

    trigger_id: str
    message_key: str
    body: Any
    error: dict[str, Any]
    attempts: int
    at: float


@dataclass
class Outcome:
    """Counter changes and in-flight rows to drop, written in one transaction."""

    done: list[str] = field(default_factory=list)  # message keys whose in-flight row goes
    completed: int = 0
    failed: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    last_error: dict[str, Any] | None = None
    at: float = 0.0


class TriggerStore(Protocol):
    """Triggers, their cursors, counters, in-flight messages and dead letters."""

    # definitions
    @abstractmethod
    async def create_trigger(self, trigger: TriggerDef) -> None:
        """Add a trigger; `Conflict` when the account already has one of that name."""

    @abstractmethod
    async def get_trigger(self, trigger_id: str) -> TriggerDef | None: ...

    @abstractmethod
    async def list_triggers(self, account: str | None) -> list[TriggerDef]:
        """Triggers (one account's, or all), oldest first."""

    @abstractmethod
    async def set_trigger_state(self, trigger_id: str, state: TriggerState) -> bool:
        """Pause or resume; False when there is no such trigger."""

    @abstractmethod
    async def delete_trigger(self, trigger_id: str) -> bool:
        """Remove the trigger with its cursor, counters, in-flight rows and dead letters."""

    # cursor
    @abstractmethod
    async def load_cursor(self, trigger_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def save_cursor(self, trigger_id: str, cursor: dict[str, Any]) -> None: ...

    # counters
    @abstractmethod
    async def counters(self, trigger_id: str) -> TriggerCounters: ...

    @abstractmethod
    async def count_received(self, trigger_id: str, n: int) -> None: ...

    @abstractmethod
    async def record_error(self, trigger_id: str, error: dict[str, Any], at: float) -> None:
        """Remember the latest error (a source or submit failure) without counting a message."""

    # in flight
    @abstractmethod
    async def put_in_flight(self, rows: list[InFlight], received: int = 0) -> None:
        """Add or replace (trigger, message key) rows: a retry replaces the job id and attempt.
        `received` new messages are counted in the same transaction (all rows are of one
        trigger), so a crash never counts a message twice nor loses its count."""

    @abstractmethod
    async def in_flight(self, trigger_id: str) -> list[InFlight]:
        """The trigger's unfinished messages, oldest first."""

    @abstractmethod
    async def finish_messages(self, trigger_id: str, outcome: Outcome) -> None:
        """Drop finished in-flight rows, add dead letters and counts: one transaction."""

    # dead letters
    @abstractmethod
    async def dead_letters(self, trigger_id: str, limit: int) -> list[DeadLetter]:
        """The trigger's newest dead letters first."""
