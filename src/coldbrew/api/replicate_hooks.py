"""Replicate's prediction webhooks: `start`, `output` (each streamed item), `logs` (throttled)
and `completed`, each event posted after the one before it was delivered, `completed` last.

`completed` is the job's own webhook, kept with the job (its URL, and the body format with the
base URL in the store's webhook hooks), so whichever gateway ends the job delivers it, durably,
as RunPod's webhooks are; `start`, `output` and `logs` come from the gateway that accepted the
prediction while it follows the job, and `completed` waits for them there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coldbrew.api.replicate_wire import EVENTS
from coldbrew.clock import Clock
from coldbrew.control.jobs import JobService, OnAccept, is_http_url
from coldbrew.errors import InvalidRequest
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.store.models import Job, Principal

FORMAT = "replicate"  # the webhook body format of a prediction's `completed` event
LOGS_EVERY_S = 0.5  # `logs` webhooks are throttled to this, as Replicate's are

#: A job as a prediction body: (job, base URL, partial output or None).
Describe = Callable[[Job, str, Any], Awaitable[dict[str, Any]]]


@dataclass
class Hook:
    """Where a prediction's webhook goes and which events it wants."""

    url: str
    events: frozenset[str]
    account: str
    base: str
    sent: int = 0
    #: the last event's delivery: each event is posted after the one before it has ended, so a
    #: receiver sees them in order even when one is retried (Replicate sends `completed` last)
    last: asyncio.Future[None] | None = None
    #: the tasks that send `output` and `logs` events; `completed` waits for them
    followers: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)


def hook_from(body: dict[str, Any], principal: Principal, base: str) -> Hook | None:
    """The webhook a prediction request asks for (`webhook`, `webhook_events_filter`, or the
    older `webhook_completed`), or None."""
    url = body.get("webhook") or body.get("webhook_completed")
    if url is None:
        return None
    if not is_http_url(url):
        raise InvalidRequest("webhook must be an http(s) URL", hint="or leave it out")
    events = body.get("webhook_events_filter")
    if body.get("webhook") is None:
        events = ["completed"]
    if events is None:
        events = sorted(EVENTS)
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) and e in EVENTS for e in events)
    ):
        raise InvalidRequest(
            f"webhook_events_filter must be a list drawn from {sorted(EVENTS)}",
            hint='e.g. ["start", "completed"]',
        )
    return Hook(url, frozenset(events), principal.account, base)


class PredictionHooks:
    """Sends each prediction's webhook events, in order, from its start to its end."""

    def __init__(
        self, jobs: JobService, sender: WebhookSender, clock: Clock, describe: Describe
    ) -> None:
        self.jobs = jobs
        self.sender = sender
        self.clock = clock
        self.describe = describe
        self._hooks: dict[str, Hook] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._gates: dict[str, asyncio.Future[None]] = {}
        jobs.scheduler.add_final_listener(self._on_final)
        sender.formats[FORMAT] = self._completed_body

    def on_accept(self, hook: Hook) -> OnAccept:
        """The job service's callback for a prediction with `hook`: registered (and `start`
        sent) before the job is queued, since a cached answer completes it at once."""

        async def accepted(job: Job) -> None:
            self._hooks[job.id] = hook
            if "completed" in hook.events:  # the job's own, durable webhook
                job.webhook_url = hook.url
                await self.jobs.store.save_webhook_hook(
                    job.id, {"format": FORMAT, "base": hook.base}
                )
                gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._gates[job.id] = self.sender.gates[job.id] = gate
            self._event(hook, job, "start", await self.describe(job, hook.base, None))
            if "output" in hook.events:
                hook.followers.append(self._spawn(self._follow_output(job, hook)))
            if "logs" in hook.events:
                hook.followers.append(self._spawn(self._follow_logs(job, hook)))

        return accepted

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _event(self, hook: Hook, job: Job, event: str, body: dict[str, Any]) -> None:
        if event in hook.events:
            hook.sent += 1
            msg_id = f"msg_{job.id}_{hook.sent}"
            hook.last = self._spawn(self._send_after(hook.last, hook, msg_id, body))

    async def _send_after(
        self, before: asyncio.Future[None] | None, hook: Hook, msg_id: str, body: dict[str, Any]
    ) -> None:
        """Post one event once the previous one was delivered (or given up on)."""
        if before is not None:
            await asyncio.wait([before])
        await self.sender.send_event(hook.account, hook.url, msg_id, body)

    async def _follow_output(self, job: Job, hook: Hook) -> None:
        """An `output` event with each item a streaming prediction yields."""
        chunks: list[Any] = []
        async for kind, value in self.jobs.stream_events(job):
            if kind == "chunk":
                chunks.append(value)
                body = await self.describe(job, hook.base, list(chunks))
                body["status"] = "processing"
                self._event(hook, job, "output", body)

    async def _follow_logs(self, job: Job, hook: Hook) -> None:
        """A `logs` event when new log lines appeared, at most every `LOGS_EVERY_S`; the first
        look is one period after the start (the job is being queued as this begins)."""
        seen = 0
        while True:
            await self.clock.sleep(LOGS_EVERY_S)
            current = await self.jobs.find(job.account, job.id)
            if current is None or current.status.final:
                return
            lines = len(await self.jobs.logs(job.id))
            if lines > seen:
                seen = lines
                self._event(hook, current, "logs", await self.describe(current, hook.base, None))

    def _on_final(self, job: Job) -> None:
        hook = self._hooks.pop(job.id, None)
        if hook is not None:
            self._spawn(self._completed(job, hook))

    async def _completed(self, job: Job, hook: Hook) -> None:
        """Open the gate of the job's `completed` webhook once the events before it ended."""
        try:
            if hook.followers:  # their last `output` and `logs` events go first
                await asyncio.wait(hook.followers)
            if hook.last is not None:
                await asyncio.wait([hook.last])
        finally:
            gate = self._gates.pop(job.id, None)
            if gate is not None and not gate.done():
                gate.set_result(None)

    async def _completed_body(self, job: Job, hook: dict[str, Any]) -> dict[str, Any]:
        """The `completed` webhook's body: the prediction (the sender calls this)."""
        return await self.describe(job, str(hook.get("base", "")), None)

    async def close(self) -> None:
        """Stop every follower and undelivered event (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
