"""The records the job store keeps, and the job state machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Where a job is in its life; the last four are final."""

    IN_QUEUE = "IN_QUEUE"  # accepted and durable, waiting for a worker slot
    IN_PROGRESS = "IN_PROGRESS"  # handed to a worker, which is running it
    COMPLETED = "COMPLETED"  # predict returned; output is set
    FAILED = "FAILED"  # predict raised, setup failed or the worker died too often
    CANCELLED = "CANCELLED"  # cancelled by the client or a queue purge
    TIMED_OUT = "TIMED_OUT"  # ran past its execution timeout; its worker was replaced

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)

#: The transitions a job may make; anything else is a bug or a race that must be refused.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_QUEUE: frozenset({JobStatus.IN_PROGRESS, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.IN_PROGRESS: frozenset(
        {JobStatus.IN_QUEUE, *FINAL_STATUSES}  # back to the queue when its worker died
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.IN_QUEUE}),  # POST /retry
    JobStatus.CANCELLED: frozenset(),
    JobStatus.TIMED_OUT: frozenset({JobStatus.IN_QUEUE}),  # POST /retry
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Whether a job in `current` may move to `new`."""
    return new in TRANSITIONS[current]


class WebhookState(StrEnum):
    """Delivery of a job's final status to its webhook."""

    PENDING = "pending"  # the job is final and the webhook not yet acknowledged
    DELIVERED = "delivered"  # the receiver answered 2xx
    GAVE_UP = "gave_up"  # every attempt failed


class UsageKind(StrEnum):
    """What a billed worker-second was spent on."""

    COLD_START = "cold_start"  # process start until the model is ready
    BUSY = "busy"  # at least one job running
    IDLE = "idle"  # ready, no job: keep-warm time (min_workers, idle_timeout_s)
    RESERVED = "reserved"  # a reserved worker's whole life, busy or idle, at the reserved rate


@dataclass
class Account:
    name: str
    webhook_secret: str
    created_at: float
    weight: float = 1.0  # its share of contested hardware slots, relative to other accounts
    max_queued_jobs: int | None = None  # its queue limit; None: the server's default


@dataclass
class Principal:
    """Who a request is from: resolved from its API key."""

    account: str
    admin: bool
    key_id: str = field(default="", compare=False)  # the public id of the key it came with
    expires_at: float | None = field(default=None, compare=False)  # wall clock; None: never


@dataclass
class Version:
    """One immutable deploy of an endpoint."""

    id: int
    endpoint_id: int
    account: str
    endpoint: str
    number: int
    artifact_sha: str
    module: str
    class_name: str
    spec: dict[str, Any]
    input_schema: dict[str, Any]
    created_at: float
    #: where it came from: kind of directory, the directory's name, recorded requirements
    source: dict[str, Any] = field(default_factory=dict)
    #: when a rollback or the canary check took it out of service (wall clock), and why
    rolled_back_at: float | None = None
    rollback_reason: str | None = None


class VersionState(StrEnum):
    """What a version does for its endpoint now (derived, never stored)."""

    CURRENT = "current"  # takes the traffic no split sends elsewhere
    CANARY = "canary"  # not current, but a traffic split sends it a share of new jobs
    ROLLED_BACK = "rolled_back"  # taken out of service by a rollback or the canary check
    RETIRED = "retired"  # superseded by a later deploy; its workers drain to zero


@dataclass(frozen=True)
class CanaryRule:
    """When the canary check takes a canary back to 0%: either bound crossed over the window,
    judged only once the window holds `min_jobs` of the canary's final jobs."""

    window_s: float = 60.0
    max_error_rate: float | None = None  # failed + timed out over final jobs, 0..1
    max_p99_ms: float | None = None  # accepted-to-final, nearest rank
    min_jobs: int = 20
    webhook_url: str | None = None  # where the rollback event is posted (signed), if anywhere


@dataclass
class TrafficSplit:
    """An endpoint's weighted split of new jobs between versions (percent, summing to 100).

    The endpoint's current version is the one with the largest share; the others with a share
    are canaries. No split means every new job goes to the current version.
    """

    endpoint_id: int
    weights: dict[int, int]  # version id → percent of new jobs
    rule: CanaryRule | None
    updated_at: float

    @property
    def live(self) -> frozenset[int]:
        """The versions that get new jobs."""
        return frozenset(v for v, pct in self.weights.items() if pct > 0)


@dataclass
class Endpoint:
    id: int
    account: str
    name: str
    current_version_id: int
    created_at: float


@dataclass
class Job:
    """One inference request and everything recorded about it."""

    id: str
    account: str
    endpoint_id: int
    endpoint: str
    version_id: int
    status: JobStatus
    input: dict[str, Any]
    created_at: float
    expires_at: float
    timeout_s: float
    max_attempts: int
    attempts: int = 0
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    cold_start: bool = False
    cold_start_detail: dict[str, float] | None = None
    cost_usd: float = 0.0
    webhook_url: str | None = None
    webhook_state: WebhookState | None = None
    cached: bool = False  # answered from the result cache: no worker ran, no cost
    durable: bool = True  # False while a /runsync job lives only in the scheduler's memory
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delay_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return round((self.started_at - self.created_at) * 1000)

    @property
    def execution_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) * 1000)


@dataclass(frozen=True)
class JobTiming:
    """The timestamps of one final job, without its input or output: what dashboards chart."""

    endpoint: str
    status: JobStatus
    created_at: float
    started_at: float | None
    finished_at: float
    cold_start: bool
    cached: bool
    version_id: int = 0  # which version ran it: per-version stats (0 where not known)


@dataclass
class QueueStat:
    """The queue of one version, as the scheduler sees it."""

    queued: int
    oldest_created_at: float


@dataclass
class UsageRow:
    """Billed worker-seconds of one kind, for one worker, within one hour."""

    worker_id: str
    account: str
    endpoint: str
    version_id: int
    hardware: str
    kind: UsageKind
    hour_start: float
    seconds: float


@dataclass
class Budget:
    """A monthly spending limit on an account, or on one of its endpoints."""

    account: str
    endpoint: str | None  # None: the whole account
    monthly_usd: float
    alerts_pct: list[int]
    hard_stop: bool
    webhook_url: str | None
    created_at: float
