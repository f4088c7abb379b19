"""Every trigger of one gateway: create, list (with lag, throughput and failures), pause, resume,
delete, and one runner task per active trigger.

The manager is handed the job service as a `Submitter` (it sits below the control plane) and is
told of every final job (`on_final`, a scheduler final listener), which it passes to the runner
watching that job. Each trigger runs on one gateway at a time: the one holding its lease
`trigger:<id>` (the cluster's ownership names it, spreads the leases by rendezvous hashing and
calls `owned` every round). With no ownership attached (tests, tools) this manager runs every
active trigger itself, as the embedded default's one gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from coldbrew.clock import Clock
from coldbrew.errors import Conflict, InvalidRequest, NotFound
from coldbrew.integrations.egress import EgressPolicy
from coldbrew.integrations.triggers import kinds
from coldbrew.integrations.triggers.base import Message, TriggerContext, sink_kind, source_kind
from coldbrew.integrations.triggers.push import PushSource
from coldbrew.integrations.triggers.runner import RunnerTiming, TriggerRunner
from coldbrew.integrations.triggers.submit import Submitter
from coldbrew.store.models import Job
from coldbrew.store.triggers import TriggerDef, TriggerState, TriggerStore

kinds.load()  # registers the built-in source and sink kinds

log = logging.getLogger("coldbrew.triggers")
TARGET_KINDS = ("endpoint", "pipeline")
_LAG_TIMEOUT_S = 1.0
_LEASE = "trigger:"


def trigger_lease(trigger_id: str) -> str:
    """The lease whose holder runs the trigger."""
    return _LEASE + trigger_id


@dataclass(frozen=True)
class TriggerRequest:
    """What a user asks for when creating a trigger (validated by `TriggerManager.create`)."""

    name: str
    source_kind: str
    source: dict[str, Any]
    target: str
    target_kind: str = "endpoint"
    sink_kind: str | None = None
    sink: dict[str, Any] | None = None
    batch_size: int = 10
    batch_window_ms: int = 0
    max_in_flight: int = 100
    max_attempts: int = 3


class _StoreCursor:
    """`CursorStore` over the trigger's row."""

    def __init__(self, store: TriggerStore, trigger_id: str) -> None:
        self.store = store
        self.trigger_id = trigger_id

    async def load(self) -> dict[str, Any] | None:
        return await self.store.load_cursor(self.trigger_id)

    async def save(self, cursor: dict[str, Any]) -> None:
        await self.store.save_cursor(self.trigger_id, cursor)


class TriggerManager:
    """Runs the triggers kept in the store; the API's one handle on them."""

    def __init__(
        self,
        store: TriggerStore,
        submitter: Submitter,
        clock: Clock,
        consumer: str,
        timing: RunnerTiming | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.egress = egress
        self.store = store
        self.submitter = submitter
        self.clock = clock
        self.consumer = consumer
        self.timing = timing
        self.runners: dict[str, TriggerRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: the cluster's ownership, when attached (`attach`): whether a lease is held, and
        #: take one now if it is this gateway's
        self._claim: Callable[[str], Awaitable[bool]] | None = None
        self._round: Callable[[], Awaitable[None]] | None = None
        self._epochs: dict[str, int] = {}  # trigger id -> the lease epoch its runner started at
        self._stopped = False  # runs nothing after `stop`
        self._lock = asyncio.Lock()  # one change of the running set at a time

    def attach(
        self, claim: Callable[[str], Awaitable[bool]], round_now: Callable[[], Awaitable[None]]
    ) -> None:
        """Run only the triggers whose lease this gateway holds (before `start`)."""
        self._claim, self._round = claim, round_now

    async def start(self) -> None:
        """Start a runner for every active trigger this gateway owns (every one, unattached)."""
        self._stopped = False
        if self._round is not None:
            await self._round()  # the round calls `owned` with this gateway's leases
            return
        for trigger in await self.store.list_triggers(None):
            if trigger.state is TriggerState.ACTIVE:
                self._start(trigger)

    async def stop(self) -> None:
        self._stopped = True
        async with self._lock:
            for trigger_id in list(self._tasks):
                await self._stop(trigger_id)

    # -- the cluster's claimant protocol
    async def lease_names(self) -> set[str]:
        """A lease per active trigger."""
        triggers = await self.store.list_triggers(None)
        return {trigger_lease(t.id) for t in triggers if t.state is TriggerState.ACTIVE}

    async def owned(self, held: Mapping[str, int]) -> None:
        """Run the active triggers whose lease is held, stop the others. A runner stopped here
        loses nothing: what it had not acked is redelivered to the next owner's runner, and
        its in-flight rows are read back by it (`TriggerRunner._recover`). A lease taken
        again at a new epoch (it was another's meanwhile) restarts the runner, so that it
        reads the rows back too."""
        if self._stopped:
            return
        async with self._lock:
            mine = {n[len(_LEASE) :]: e for n, e in held.items() if n.startswith(_LEASE)}
            for trigger_id in list(self._tasks):
                if self._epochs.get(trigger_id) != mine.get(trigger_id):
                    await self._stop(trigger_id)
            if not set(mine) - set(self._tasks):
                return
            for trigger in await self.store.list_triggers(None):
                mine_now = trigger.id in mine and trigger.id not in self._tasks
                if mine_now and trigger.state is TriggerState.ACTIVE:
                    self._start(trigger)
                    self._epochs[trigger.id] = mine[trigger.id]

    async def _run_here(self, trigger: TriggerDef) -> None:
        """Start a trigger just created or resumed: here, or on the gateway it hashes to."""
        if self._claim is None:
            async with self._lock:
                if trigger.id not in self._tasks:
                    self._start(trigger)
        else:
            await self._claim(trigger_lease(trigger.id))

    def on_final(self, job: Job) -> None:
        """A job ended: the runner that watches it settles it."""
        for runner in self.runners.values():
            if job.id in runner.in_flight:
                runner.on_final(job)
                return

    # -- the API's operations
    async def create(self, account: str, request: TriggerRequest) -> TriggerDef:
        """Validate every part, store the trigger and start it."""
        r = request
        source = source_kind(r.source_kind).validate(r.source).model_dump(mode="json")
        sink: dict[str, Any] | None = None
        if r.sink_kind is not None:
            sink = sink_kind(r.sink_kind).validate(r.sink or {}).model_dump(mode="json")
        if r.target_kind not in TARGET_KINDS:
            raise InvalidRequest(f"unknown target kind {r.target_kind!r}", hint="endpoint")
        _check_limits(r)
        trigger = TriggerDef(
            id="trg_" + uuid.uuid4().hex[:16],
            account=account,
            name=r.name,
            source_kind=r.source_kind,
            source=source,
            target_kind=r.target_kind,
            target=r.target,
            sink_kind=r.sink_kind,
            sink=sink,
            batch_size=r.batch_size,
            batch_window_ms=r.batch_window_ms,
            max_in_flight=r.max_in_flight,
            max_attempts=r.max_attempts,
            secret=secrets.token_urlsafe(24),
            state=TriggerState.ACTIVE,
            created_at=self.clock.time(),
        )
        await self.store.create_trigger(trigger)
        await self._run_here(trigger)
        return trigger

    async def get(self, account: str | None, id_or_name: str) -> TriggerDef:
        """The trigger by id, or by name within the account; NotFound otherwise."""
        trigger = await self.store.get_trigger(id_or_name)
        if trigger is None or (account is not None and trigger.account != account):
            named = [t for t in await self.store.list_triggers(account) if t.name == id_or_name]
            if not named:
                raise NotFound(
                    f"no trigger {id_or_name!r}", hint="`coldbrew triggers list` shows yours"
                )
            trigger = named[0]
        return trigger

    async def all(self, account: str | None) -> list[TriggerDef]:
        return await self.store.list_triggers(account)

    async def set_state(self, trigger: TriggerDef, state: TriggerState) -> TriggerDef:
        """Pause (stop the runner; the source keeps new messages) or resume."""
        async with self._lock:
            await self.store.set_trigger_state(trigger.id, state)
            if state is TriggerState.PAUSED:
                await self._stop(trigger.id)
        if state is TriggerState.ACTIVE:
            await self._run_here(replace(trigger, state=state))
        return replace(trigger, state=state)

    async def delete(self, trigger: TriggerDef) -> None:
        async with self._lock:
            await self._stop(trigger.id)
            await self.store.delete_trigger(trigger.id)

    async def stats(self, trigger: TriggerDef) -> dict[str, Any]:
        """Counters from the store, and from the runner: in flight, lag and throughput."""
        counters = await self.store.counters(trigger.id)
        runner = self.runners.get(trigger.id)
        lag: int | None = None
        if runner is not None and runner.running:
            with contextlib.suppress(Exception):
                lag = await self.clock.wait_for(runner.source.lag(), _LAG_TIMEOUT_S)
        return {
            "received": counters.received,
            "completed": counters.completed,
            "failed": counters.failed,
            "deadLettered": counters.dead_lettered,
            "inFlight": len(runner.in_flight) if runner is not None else 0,
            "lag": lag,
            "throughputPerS": round(runner.throughput_per_s(), 3) if runner else 0.0,
            "lastError": counters.last_error,
            "lastErrorAt": counters.last_error_at,
        }

    async def push(self, trigger: TriggerDef, messages: list[Message]) -> None:
        """Hand pushed messages (object-store events) to the trigger's runner; returns once
        their jobs are durably accepted, so the sender's retry covers a crash before that."""
        runner = self.runners.get(trigger.id)
        if trigger.state is TriggerState.ACTIVE and runner is None:
            raise Conflict(
                f"trigger {trigger.name!r} runs on another gateway of this cluster",
                hint="send its events to any gateway; the sender retries the delivery",
            )
        if trigger.state is not TriggerState.ACTIVE or runner is None:
            raise Conflict(
                f"trigger {trigger.name!r} is {trigger.state.value.lower()}",
                hint="`coldbrew triggers resume` it; the sender retries the delivery",
            )
        if not isinstance(runner.source, PushSource):
            raise InvalidRequest(f"trigger {trigger.name!r} does not take pushed events")
        await runner.source.offer(messages)

    # -- runners
    def _start(self, trigger: TriggerDef) -> None:
        ctx = TriggerContext(
            trigger.id,
            self.consumer,
            self.clock,
            _StoreCursor(self.store, trigger.id),
            self.egress,
        )
        source = source_kind(trigger.source_kind).create(trigger.source, ctx)
        sink = None
        if trigger.sink_kind is not None:
            sink = sink_kind(trigger.sink_kind).create(trigger.sink or {}, ctx)
        runner = TriggerRunner(
            trigger, source, sink, self.submitter, self.store, self.clock, self.timing
        )
        self.runners[trigger.id] = runner
        task = asyncio.create_task(runner.run(), name=f"trigger {trigger.name}")
        task.add_done_callback(_report_exit)
        self._tasks[trigger.id] = task

    async def _stop(self, trigger_id: str) -> None:
        self._epochs.pop(trigger_id, None)
        task = self._tasks.pop(trigger_id, None)
        self.runners.pop(trigger_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _report_exit(task: asyncio.Task[None]) -> None:
    """A runner ends only when stopped; anything else is a bug to see in the log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())


def _check_limits(r: TriggerRequest) -> None:
    for what, value, low, high in (
        ("batch_size", r.batch_size, 1, 1000),
        ("batch_window_ms", r.batch_window_ms, 0, 300_000),
        ("max_in_flight", r.max_in_flight, 1, 100_000),
        ("max_attempts", r.max_attempts, 1, 100),
    ):
        if not low <= value <= high:
            raise InvalidRequest(f"{what} must be between {low} and {high}, got {value}")
    if not r.name or len(r.name) > 64:
        raise InvalidRequest("a trigger needs a name of 1 to 64 characters")
