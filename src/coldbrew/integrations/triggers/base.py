"""The contract between the trigger runner and the systems it reads from and writes to.

A trigger is a durable source → endpoint (or pipeline) → optional sink. The runner owns one
`Source` and at most one `Sink` per trigger and drives them; a source or sink knows its own
system (a Redis stream, a JetStream consumer, a PostgreSQL table) and nothing of jobs.

The runner's loop, which every source must survive (AWS Lambda's event source mappings are the
model): `fetch` a window of messages → submit one job per message, the whole window at once (a
batching endpoint's dispatcher then runs them as batches) with the message's `key` in the job's
idempotency key → record the message as in flight in the store → `ack` it. A crash anywhere
before the ack redelivers the message, and the key makes the second submit return the first job,
so a redelivery never makes a second job. From the ack on, the runner's in-flight row is the
message's durable copy: a job that fails is submitted again (a new key per attempt) up to
`max_attempts`, then the message goes to `dead_letter` with the error record, long after its ack.

A kind registers itself in `SOURCES` / `SINKS` with a pydantic config model (validated once, at
`coldbrew triggers create`, so a typo is a 400 and not a dead runner) and a factory.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from coldbrew.clock import Clock
from coldbrew.errors import InvalidRequest
from coldbrew.integrations.egress import EgressPolicy


@dataclass(frozen=True)
class Message:
    """One unit of work read from a source.

    `key` is stable for one message across redeliveries and restarts (a stream entry id, a
    JetStream stream sequence, an AMQP message-id or a hash of the body): it becomes the job's
    idempotency key, so it must never be reused for a different message of the same trigger.
    `body` is the decoded JSON input (see `decode_body`). `received_at` is wall-clock seconds
    when the source produced or first saw it (lag is measured from it). `handle` is whatever the
    source needs to ack it later (a delivery tag, a JetStream message object); the runner never
    looks inside.
    """

    key: str
    body: Any
    received_at: float
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SinkRecord:
    """One finished message, as a sink writes it: which trigger, which message, which job."""

    trigger_id: str
    message_key: str
    job_id: str
    status: str  # the job's final JobStatus value: COMPLETED, FAILED, TIMED_OUT, CANCELLED
    output: Any  # the job's output (for a batch job, this message's own item), None on failure
    error: dict[str, Any] | None  # the job's error record when it did not complete
    finished_at: float  # wall-clock seconds


class CursorStore(Protocol):
    """A durable per-trigger cursor (JSON), for sources whose system keeps no offset for them."""

    async def load(self) -> dict[str, Any] | None:
        """The cursor last saved for this trigger, None before the first save."""

    async def save(self, cursor: dict[str, Any]) -> None:
        """Replace the trigger's cursor; durable when this returns."""


@dataclass(frozen=True)
class TriggerContext:
    """What a source or sink is told about where it runs.

    `consumer` names this runner (one per gateway process, stable across its restarts) for
    systems with named consumers (a Redis consumer group member, a durable JetStream consumer's
    client). `clock` is the only time a source may use: `fetch(wait_s)` waits through it.
    `cursor` is the trigger's durable cursor for sources with nothing durable of their own
    (cron's last tick, PostgreSQL's last id).
    """

    trigger_id: str
    consumer: str
    clock: Clock
    cursor: CursorStore
    egress: EgressPolicy | None = None  # where a tenant-chosen URL may go (the webhook sink)


@runtime_checkable
class Source(Protocol):
    """Reads messages for one trigger from one system; owned by the trigger runner."""

    async def open(self) -> None:
        """Connect and create what the trigger needs (a consumer group, a durable consumer)."""

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to `max_messages`, waiting at most `wait_s` for the first one ([] when none came).

        Durable: messages fetched and never acked come back after a restart (pending entries
        re-claimed, a JetStream ack-wait, an AMQP requeue), possibly to another consumer.
        """

    async def ack(self, messages: Sequence[Message]) -> None:
        """Forget `messages` for good; called only once their jobs are durably accepted."""

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        """Park a message whose jobs failed every attempt, with the last error record.

        The message was acked when its first job was accepted, so `message` is the runner's
        copy (key, body, received_at; `handle` is None). Where the system has a dead-letter
        place (a `<stream>:dead` stream, a DLQ subject or exchange), publish it there; the
        runner also keeps it in its own table (`GET /v1/triggers/{id}/dead-letters`), so a
        source with no such place does nothing.
        """

    async def lag(self) -> int | None:
        """Messages waiting in the system for this trigger (not yet fetched), None if unknown."""

    async def close(self) -> None:
        """Release connections; unacked messages stay pending for the next `open`."""


@runtime_checkable
class Sink(Protocol):
    """Writes finished jobs' results somewhere (a table, a stream, a webhook, a subject)."""

    async def open(self) -> None:
        """Connect and create what the sink needs (a table, a stream)."""

    async def write(self, records: Sequence[SinkRecord]) -> None:
        """Write `records`; raising means none of them is known written (the runner retries).

        Writes may repeat after a crash (at-least-once): a sink keyed by `message_key` (an
        upsert, a Redis stream entry the reader de-duplicates) turns that into exactly-once.
        """

    async def close(self) -> None:
        """Release connections."""


class KindConfig(BaseModel):
    """Base of every source and sink config model: unknown fields are a mistake, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=KindConfig)
T = TypeVar("T")


@dataclass(frozen=True)
class Kind(Generic[C, T]):
    """A registered source or sink kind: how its config is validated and how it is built."""

    name: str
    config: type[C]
    build: Callable[[C, TriggerContext], T]
    summary: str  # one line for `coldbrew triggers create --help` and errors

    def validate(self, raw: Mapping[str, Any]) -> C:
        """The config model for `raw`, or InvalidRequest that names the bad fields."""
        try:
            return self.config.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or self.name}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise InvalidRequest(
                f"invalid {self.name} config: {problems}",
                hint=f"{self.name}: {self.summary}",
            ) from None

    def create(self, raw: Mapping[str, Any], ctx: TriggerContext) -> T:
        return self.build(self.validate(raw), ctx)


SOURCES: dict[str, Kind[Any, Source]] = {}
SINKS: dict[str, Kind[Any, Sink]] = {}


def register_source(kind: Kind[Any, Source]) -> None:
    """Make a source kind available to triggers (called at import of the kind's module)."""
    SOURCES[kind.name] = kind


def register_sink(kind: Kind[Any, Sink]) -> None:
    """Make a sink kind available to triggers (called at import of the kind's module)."""
    SINKS[kind.name] = kind


def source_kind(name: str) -> Kind[Any, Source]:
    """The registered source kind `name`, or InvalidRequest listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise InvalidRequest(
            f"unknown trigger source {name!r}", hint=f"one of: {', '.join(sorted(SOURCES))}"
        ) from None


def sink_kind(name: str) -> Kind[Any, Sink]:
    """The registered sink kind `name`, or InvalidRequest listing the known ones."""
    try:
        return SINKS[name]
    except KeyError:
        raise InvalidRequest(
            f"unknown trigger sink {name!r}", hint=f"one of: {', '.join(sorted(SINKS))}"
        ) from None


def decode_body(raw: bytes | str) -> Any:
    """A message payload as job input: its JSON value, else `{"data": <base64>}` for bytes."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = raw.encode() if isinstance(raw, str) else raw
        return {"data": base64.b64encode(data).decode()}


def body_key(raw: bytes | str) -> str:
    """A message key from the payload itself, for systems without a stable message id.

    Two identical payloads get one key, so they make one job: use it only where the system
    has nothing better (an MQTT publish, an AMQP message without message-id).
    """
    data = raw.encode() if isinstance(raw, str) else raw
    return "sha256:" + hashlib.sha256(data).hexdigest()
