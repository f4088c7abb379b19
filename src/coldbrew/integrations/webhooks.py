"""Signed webhook delivery with retries and a delivery log.

Signatures follow the Standard Webhooks scheme (as Replicate's do): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
keyed with the account's secret (`whsec_<base64>`, from `GET /v1/account`). Receivers can check
it with `coldbrew.verify_webhook`.

A job's webhook is an outbox row: the job, final, with `webhook_state = pending`. The gateway that
ends the job claims it at once and delivers it; every gateway also looks for due ones every
`webhook_poll_s`. A claim lasts `webhook_claim_s` past each attempt's retry time and is renewed by
its holder, so if that gateway dies the next one claims the webhook when the claim lapses and
carries on from the attempts recorded. Delivery is at least once: receivers dedupe on
`webhook-id`, which stays the same across attempts and gateways.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx
import orjson

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.integrations.egress import REFUSED, EgressPolicy, EgressRefused
from coldbrew.store.catalog import Catalog
from coldbrew.store.history import History
from coldbrew.store.models import Job, WebhookState
from coldbrew.wire import status_json

log = logging.getLogger("coldbrew.webhooks")

TOLERANCE_S = 300
UNDELIVERED = "no HTTP response from the receiver"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """Whether a received webhook was signed with `secret` (and is recent, when `now` is given)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = (
        lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and ts and sigs and ts.isascii() and ts.isdigit()):
        return False
    if now is not None and abs(now - int(ts)) > TOLERANCE_S:
        return False
    expected = sign(secret, msg_id, int(ts), body).split(",", 1)[1].encode()
    return any(
        hmac.compare_digest(expected, s.split(",", 1)[1].encode("utf-8", "replace"))
        for s in sigs.split()
        if "," in s
    )


class WebhookStore(History, Catalog, Protocol):
    """What the sender needs: the delivery log (history) and each account's secret (catalog)."""


#: A job's webhook body in another format than RunPod's status (Replicate's prediction), by
#: name; a gateway's edge registers it (`WebhookSender.formats`).
Format = Callable[[Job, dict[str, Any]], Awaitable[dict[str, Any]]]

_CLAIM_BATCH = 100  # pending webhooks claimed per look


class WebhookSender:
    """Delivers each final job's status to its webhook, retrying with exponential backoff."""

    def __init__(
        self, store: WebhookStore, clock: Clock, settings: Settings, owner: str = "local"
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.owner = owner  # this gateway's name on its claims
        self._client = httpx.AsyncClient(timeout=settings.webhook_timeout_s)
        self.egress = EgressPolicy.from_settings(settings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[str] = set()  # jobs whose webhook this gateway is delivering
        self._poller: asyncio.Task[None] | None = None
        self.formats: dict[str, Format] = {}
        #: per job, what its delivery waits for first (this gateway's earlier events of it)
        self.gates: dict[str, asyncio.Future[None]] = {}

    def submit(self, job: Job) -> None:
        """Start delivering `job` if it has a webhook (called for every final job)."""
        if job.webhook_url and job.durable and job.id not in self._active:
            self._start(job.id, None)

    def _start(self, job_id: str, claimed: Job | None) -> None:
        self._active.add(job_id)
        task = asyncio.create_task(self._run(job_id, claimed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job_id: str, claimed: Job | None) -> None:
        try:
            if claimed is None:
                claimed = await self._claim(job_id, self.settings.webhook_timeout_s)
            if claimed is not None:
                await self._deliver(claimed)
        except Exception:
            log.exception("webhook of job %s: delivery stopped; a gateway retries it", job_id)
        finally:
            self._active.discard(job_id)

    async def _claim(self, job_id: str, for_s: float) -> Job | None:
        """Hold the job's webhook for `for_s` and then `webhook_claim_s`; None when another
        gateway holds it (or it is no longer pending)."""
        now = self.clock.time()
        until = now + for_s + self.settings.webhook_claim_s
        found = await self.store.claim_webhooks(self.owner, now, until, 1, job_id=job_id)
        return found[0] if found else None

    async def resume(self) -> None:
        """Start looking for webhooks due to this gateway: pending ones left by a restart, or by
        a gateway that died (its claims lapsed); the first look is now."""
        await self.poll()
        self._poller = asyncio.create_task(self._poll_forever())

    async def poll(self) -> int:
        """Claim the pending webhooks nobody holds and deliver them; how many were claimed."""
        now = self.clock.time()
        until = now + self.settings.webhook_timeout_s + self.settings.webhook_claim_s
        jobs = await self.store.claim_webhooks(self.owner, now, until, _CLAIM_BATCH)
        for job in jobs:
            if job.id not in self._active:
                self._start(job.id, job)
        return len(jobs)

    async def _poll_forever(self) -> None:
        while True:
            await self.clock.sleep(self.settings.webhook_poll_s)
            try:
                await self.poll()
            except Exception as exc:  # the storage is down: the next look tries again
                log.warning("could not look for pending webhooks: %s", exc)

    async def close(self) -> None:
        """Stop delivering; the webhooks this gateway held are let go at once (their claims end
        now), so the next look by any gateway, or this one restarted, carries on with them."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        held = list(self._active)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        now = self.clock.time()
        for job_id in held:
            with contextlib.suppress(Exception):  # a claim not let go lapses by itself
                await self.store.claim_webhooks(self.owner, now, now, 1, job_id=job_id)
        await self._client.aclose()

    def send_event(
        self, account: str, url: str, msg_id: str, payload: dict[str, Any]
    ) -> asyncio.Task[None]:
        """Deliver a signed event that is not a job (a budget alert), with the same retries.

        The returned task ends when the event was delivered or given up on, so a caller can
        keep its events in order."""
        task = asyncio.create_task(self._send_event(account, url, msg_id, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_event(
        self, account: str, url: str, msg_id: str, payload: dict[str, Any]
    ) -> None:
        found = await self.store.get_account(account)
        assert found is not None
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        for attempt in range(1, self.settings.webhook_max_attempts + 1):
            if attempt > 1:
                await self.clock.sleep(self.settings.webhook_backoff_s * 2 ** (attempt - 2))
            _, error = await self._post(url, found.webhook_secret, msg_id, body)
            if error is None or error.startswith(REFUSED):
                return
            log.warning("event %s to %s, attempt %d: %s", msg_id, url, attempt, error)

    async def _post(
        self, url: str, secret: str, msg_id: str, body: bytes
    ) -> tuple[int | None, str | None]:
        """One signed POST: (status code, error or None)."""
        timestamp = int(self.clock.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }
        try:
            target = await self.egress.target(url)
        except EgressRefused as exc:
            return None, str(exc)
        try:
            response = await self._client.post(
                target.url,
                content=body,
                headers=headers | target.headers,
                extensions=target.extensions,
            )
        except Exception as exc:  # any failure to deliver is recorded, never fatal
            # one text for every transport failure: the delivery log must not tell a tenant
            # which ports are open (refused, reset, timed out); the operator's log has the detail
            log.info("webhook POST to %s failed: %s: %s", url, type(exc).__name__, exc)
            return None, UNDELIVERED
        if not 200 <= response.status_code < 300:
            return response.status_code, f"receiver answered HTTP {response.status_code}"
        return response.status_code, None

    async def _body(self, job: Job) -> bytes:
        """RunPod's status of the job, or the body of the format its hook asked for."""
        hook = await self.store.webhook_hook(job.id)
        form = self.formats.get(str(hook.get("format"))) if hook else None
        gate = self.gates.pop(job.id, None)
        if gate is not None:  # this gateway's earlier events of the job go first
            with contextlib.suppress(Exception):
                await gate
        payload = status_json(job) if form is None or hook is None else await form(job, hook)
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

    async def _deliver(self, job: Job) -> None:
        """Attempt the claimed webhook from the first attempt not yet recorded; before each
        retry the claim is renewed past its wait, and lost claims stop this gateway's attempts."""
        account = await self.store.get_account(job.account)
        assert account is not None and job.webhook_url is not None
        first_attempt = len(await self.store.deliveries(job.id)) + 1
        body = await self._body(job)
        # one id per run of the job: a retried job's result is a new message to receivers
        msg_id = f"msg_{job.id}_{int((job.finished_at or 0) * 1000)}"
        attempts = self.settings.webhook_max_attempts
        if first_attempt > attempts:
            await self.store.record_delivery(
                job.id, attempts, self.clock.time(), None, "no attempts left", WebhookState.GAVE_UP
            )
            return
        for attempt in range(first_attempt, attempts + 1):
            if attempt > first_attempt:
                wait_s = self.settings.webhook_backoff_s * 2 ** (attempt - 2)
                if await self._claim(job.id, wait_s + self.settings.webhook_timeout_s) is None:
                    return  # another gateway holds it now
                await self.clock.sleep(wait_s)
            code, error = await self._post(job.webhook_url, account.webhook_secret, msg_id, body)
            ok = error is None
            refused = error is not None and error.startswith(REFUSED)  # retrying cannot help
            state = WebhookState.DELIVERED if ok else None
            if not ok and (attempt == attempts or refused):
                state = WebhookState.GAVE_UP
            await self.store.record_delivery(job.id, attempt, self.clock.time(), code, error, state)
            if ok:
                return
            log.warning("webhook for job %s, attempt %d: %s", job.id, attempt, error)
            if refused:
                return
