"""What the message-broker kinds (NATS, RabbitMQ, MQTT, Kafka) share: how a dead letter carries
its error, how a result is encoded for a sink, and the errors that tell a user which client
package or broker object is missing.

A dead letter is published long after its message was acked (the runner retried its job first),
from the runner's copy: the payload is the message's JSON input as the job got it (bytes that
were not JSON arrive as `{"data": <base64>}`), and the error sits beside it (NATS headers, AMQP
headers, MQTT 5 user properties, Kafka headers), so an operator can republish the payload to the
source once the cause is fixed. The full error record is JSON in one field; its type and message
also get fields of their own for brokers' UIs that show headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from typing import Any

import orjson

from coldbrew.errors import InvalidRequest, ServerError
from coldbrew.integrations.triggers.base import Message, SinkRecord

# A traceback can be long; brokers cap header sizes (NATS's max_payload covers headers too,
# RabbitMQ's frame_max). 4 KiB keeps the error readable and far from every cap.
MAX_ERROR_BYTES = 4096
EXTRA = "coldbrew[triggers]"


def dead_letter_payload(message: Message) -> bytes:
    """What a dead letter carries: the message's input, as JSON."""
    return orjson.dumps(message.body)


def error_fields(trigger_id: str, key: str, error: dict[str, Any]) -> dict[str, str]:
    """The header/property fields a dead letter carries: who, which message, and why."""
    record = orjson.dumps(error, default=str)
    if len(record) > MAX_ERROR_BYTES:
        trimmed = {k: v for k, v in error.items() if k != "traceback"}
        trimmed["traceback"] = str(error.get("traceback", ""))[-MAX_ERROR_BYTES // 2 :]
        record = orjson.dumps(trimmed, default=str)[:MAX_ERROR_BYTES]
    return {
        "coldbrew-trigger": trigger_id,
        "coldbrew-message-key": key,
        "coldbrew-error-type": str(error.get("type", "error")),
        "coldbrew-error-message": str(error.get("message", ""))[:512],
        "coldbrew-error": record.decode(errors="replace"),
    }


def record_json(record: SinkRecord) -> bytes:
    """A sink record as the JSON document a broker sink publishes (one per message)."""
    return orjson.dumps(dataclasses.asdict(record), default=str)


def record_id(record: SinkRecord) -> str:
    """The id a sink gives a published result, so a reader (or the broker) can drop repeats:
    the runner may write a record twice after a crash, never with another id."""
    return f"{record.trigger_id}:{record.message_key}"


def short_id(text: str, limit: int = 255) -> str:
    """`text`, or its SHA-256 when it is longer than `limit` bytes (AMQP's message_id is a
    short string: 255 bytes at most, and a key like `id:<255-byte id>` would not fit)."""
    if len(text.encode()) <= limit:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def require_client(kind: str, module: str, package: str) -> None:
    """Fail config validation (a 400 at `coldbrew triggers create`) when `kind`'s client library
    is not installed, instead of a runner that dies at its first `open`."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"the {kind} trigger kind needs the {package!r} package, which is not installed: "
            f"pip install '{EXTRA}'"
        )


def missing_object(kind: str, what: str, name: str, fix: str) -> InvalidRequest:
    """A broker object the config names does not exist (and the config did not ask to create
    it): the user fixes the config or the broker, so it is a client error."""
    return InvalidRequest(f"{kind}: {what} {name!r} does not exist", hint=fix)


def unreachable(kind: str, url: str, exc: BaseException) -> ServerError:
    """The broker did not answer: the runner retries `open`, the message says where it looked."""
    return ServerError(
        f"{kind}: cannot reach the broker at {url}: {type(exc).__name__}: {exc}",
        hint=f"check that the broker runs and that the trigger's url ({url}) is right",
    )


def redact(url: str) -> str:
    """`url` without its password, for errors and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
