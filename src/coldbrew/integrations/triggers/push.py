"""Object-store upload events pushed to coldbrew: the `s3` source kind.

S3 (through SNS, or an HTTPS event destination) and MinIO's webhook target POST the S3
event-notification JSON to `POST /v1/triggers/{id}/events?sig=…`. The signature is an HMAC of
the trigger id with the trigger's own secret, so the URL itself is the credential (a bucket
notification cannot send our API key). The route parses the records into messages and hands
them to the runner through `PushSource.offer`, which returns only once their jobs are durably
accepted: the sender gets its 2xx after that, and retries on anything else, so the sender's
retry is the durability before the ack. Each record becomes one job with input
`{bucket, key, size, eventName}`; its message key is bucket/key plus the event's `sequencer`,
which S3 makes unique per object change, so a redelivered event never makes a second job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Sequence
from typing import Any

import orjson

from coldbrew.clock import Clock
from coldbrew.errors import InvalidRequest
from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    Source,
    TriggerContext,
    register_source,
)


def sign(trigger_id: str, secret: str) -> str:
    """The `sig` of a trigger's event URL."""
    digest = hmac.new(secret.encode(), trigger_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify(trigger_id: str, secret: str, sig: str) -> bool:
    return hmac.compare_digest(sign(trigger_id, secret), sig)


def s3_messages(body: Any, now: float, prefix: str = "", suffix: str = "") -> list[Message]:
    """One message per `ObjectCreated:*` record of an S3 event notification (others skipped).

    SNS wraps the notification: a `Notification` envelope carries it as a JSON string in
    `Message`. Object keys arrive URL-encoded (`+` for a space) and are decoded here.
    """
    if isinstance(body, dict) and body.get("Type") == "Notification":
        try:
            body = orjson.loads(str(body.get("Message") or "{}"))
        except orjson.JSONDecodeError:
            raise InvalidRequest("the SNS notification's Message is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("Records", []), list):
        raise InvalidRequest("not an S3 event notification", hint='expected {"Records": [...]}')
    messages = []
    for record in body.get("Records", []):
        event = str(record.get("eventName", "")) if isinstance(record, dict) else ""
        if not event.removeprefix("s3:").startswith("ObjectCreated:"):
            continue
        s3 = _object(record.get("s3"))
        bucket = _object(s3.get("bucket")).get("name")
        obj = _object(s3.get("object"))
        key = urllib.parse.unquote_plus(str(obj.get("key", "")))
        if not isinstance(bucket, str) or not bucket or not key:
            raise InvalidRequest("an S3 record lacks s3.bucket.name or s3.object.key")
        if not (key.startswith(prefix) and key.endswith(suffix)):
            continue
        tag = obj.get("sequencer") or obj.get("eTag") or record.get("eventTime") or ""
        item = {"bucket": bucket, "key": key, "size": obj.get("size"), "eventName": event}
        messages.append(Message(f"{bucket}/{key}#{tag}", item, now))
    return messages


def _object(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("not an S3 event notification: a record field is not an object")
    return value


class S3Config(KindConfig):
    """Pushed object-store events; only keys with this prefix and suffix make jobs."""

    prefix: str = ""
    suffix: str = ""


class PushSource(Source):
    """Messages handed in by the events route; `offer` waits until the runner acks them."""

    def __init__(self, config: S3Config, ctx: TriggerContext) -> None:
        self.config = config
        self.clock: Clock = ctx.clock
        self._queue: asyncio.Queue[tuple[Message, asyncio.Future[None]]] = asyncio.Queue()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    async def offer(self, messages: Sequence[Message]) -> None:
        """Queue `messages` for the runner; return when every one is acked."""
        loop = asyncio.get_running_loop()
        futures = []
        for message in messages:
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)
            await self._queue.put((message, future))
        await asyncio.gather(*futures)

    async def open(self) -> None:
        return None

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        try:
            first = await self.clock.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return []
        taken = [first]
        while len(taken) < max_messages and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        for message, future in taken:
            self._waiting.setdefault(message.key, []).append(future)
        return [m for m, _ in taken]

    async def ack(self, messages: Sequence[Message]) -> None:
        for message in messages:
            for future in self._waiting.pop(message.key, []):
                if not future.done():
                    future.set_result(None)

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        return None  # the runner's own table keeps it

    async def lag(self) -> int | None:
        return self._queue.qsize()

    async def close(self) -> None:
        """Senders still waiting get an error (then retry): nothing was accepted for them."""
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionAbortedError("trigger stopped"))
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ConnectionAbortedError("trigger stopped"))


register_source(
    Kind("s3", S3Config, PushSource, "object-store events POSTed to the trigger's signed URL")
)
