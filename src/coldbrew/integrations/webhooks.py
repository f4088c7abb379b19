"""Signed webhook delivery with retries and a delivery log.

Signatures follow the Standard Webhooks scheme (as Replicate's do): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
keyed with the account's secret (`whsec_<base64>`, from `GET /v1/account`). Receivers can check
it with `coldbrew.verify_webhook`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
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


class WebhookSender:
    """Delivers each final job's status to its webhook, retrying with exponential backoff."""

    def __init__(self, store: WebhookStore, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.webhook_timeout_s)
        self.egress = EgressPolicy.from_settings(settings)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, job: Job) -> None:
        """Start delivering `job` if it has a webhook (called for every final job)."""
        if job.webhook_url:
            task = asyncio.create_task(self._deliver(job, first_attempt=1))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """After a restart: deliver every webhook that was still pending."""
        for job in await self.store.pending_webhooks():
            done = len(await self.store.deliveries(job.id))
            task = asyncio.create_task(self._deliver(job, first_attempt=done + 1))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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

    async def _deliver(self, job: Job, first_attempt: int) -> None:
        account = await self.store.get_account(job.account)
        assert account is not None and job.webhook_url is not None
        body = orjson.dumps(status_json(job), option=orjson.OPT_SERIALIZE_NUMPY)
        # one id per run of the job: a retried job's result is a new message to receivers
        msg_id = f"msg_{job.id}_{int((job.finished_at or 0) * 1000)}"
        attempts = self.settings.webhook_max_attempts
        if first_attempt > attempts:
            await self.store.record_delivery(
                job.id, attempts, self.clock.time(), None, "no attempts left", WebhookState.GAVE_UP
            )
            return
        for attempt in range(first_attempt, attempts + 1):
            if attempt > 1:
                await self.clock.sleep(self.settings.webhook_backoff_s * 2 ** (attempt - 2))
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
