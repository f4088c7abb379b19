"""Request limits, enforced while a body is read: a refused body is never buffered whole.

`BodyLimits` wraps the whole gateway (FastLane included), so every route is bounded before any
handler sees a byte: a declared `Content-Length` over the route's limit is refused before the
body is read at all, and a chunked body is counted as it arrives and refused as soon as it passes
the limit. Peak memory for a refused body is therefore the limit plus one chunk, whatever the
client sends. Each refusal is a 413 that names the limit and the setting that raises it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coldbrew.backends.runpod import ROUTE_PREFIX
from coldbrew.config import Settings
from coldbrew.errors import InvalidInput, InvalidRequest, PayloadTooLarge

log = logging.getLogger("coldbrew.api")

MB = 1 << 20
_CLOSE = (b"connection", b"close")


def setting_hint(field: str) -> str:
    """How an operator raises the limit kept in settings field `field`."""
    return f"raise it with COLDBREW_{field.upper()} (or `{field}` in config.toml)"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:g} MB"


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes one route takes, and the setting that says so."""

    max_bytes: int
    field: str
    route: str

    def error(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than {mb(self.max_bytes)}, the limit for {self.route}",
            hint=setting_hint(self.field),
            limit_bytes=self.max_bytes,
            setting=self.field,
        )


def body_limit(settings: Settings, method: str, path: str) -> BodyLimit:
    """The limit for one request, by route: RunPod's 10 MB for /run and 20 MB for /runsync."""
    parts = path.split("/")
    field, route = "body_max_mb", f"{method} {path}"
    if method == "POST" and len(parts) == 4 and parts[1] == "v2" and parts[3] == "run":
        field, route = "run_body_max_mb", "POST /v2/{endpoint}/run"
    elif method == "POST" and len(parts) == 4 and parts[1] == "v2" and parts[3] == "runsync":
        field, route = "runsync_body_max_mb", "POST /v2/{endpoint}/runsync"
    elif method == "POST" and path.rstrip("/") == "/v1/files":
        field, route = "upload_max_mb", "POST /v1/files"
    elif method == "PUT" and path.startswith("/v1/artifacts/"):
        field, route = "artifact_max_mb", "PUT /v1/artifacts/{sha}"
    elif method == "POST" and path.startswith(ROUTE_PREFIX + "/job-"):
        field, route = "output_max_mb", "a RunPod handler's output"
    return BodyLimit(int(getattr(settings, field) * MB), field, route)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimits:
    """ASGI middleware: bound every request body by its route's limit while it is read."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit.max_bytes:
            await refuse(send, limit.error())  # nothing of the body is read
            return
        received = 0
        started = exceeded = False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    exceeded = True
                    raise limit.error()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if exceeded:  # however the refusal was rendered: stop the client sending
                    message = {**message, "headers": [*message["headers"], _CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except PayloadTooLarge as exc:
            if started:
                raise
            await refuse(send, exc)


async def refuse(send: Send, exc: PayloadTooLarge) -> None:
    """A 413 that closes the connection, so the client stops sending the rest."""
    body = orjson.dumps(exc.to_json())
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether `value` nests lists and objects more than `max_depth` levels (`{}` is 1).

    Iterative, so a hostile document cannot exhaust the stack; it stops at the first branch
    that is too deep.
    """
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > max_depth:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def check_depth(value: Any, settings: Settings, what: str = "the body") -> None:
    """Refuse JSON nested deeper than `json_max_depth` (SQLite's JSON functions stop at 254)."""
    if too_deep(value, settings.json_max_depth):
        raise InvalidInput(
            f"{what} nests more than {settings.json_max_depth} levels of lists and objects",
            hint="flatten the input, or " + setting_hint("json_max_depth"),
            limit=settings.json_max_depth,
            setting="json_max_depth",
        )


def loads(body: bytes, settings: Settings) -> Any:
    """Parse a JSON body and check its depth: a 400 for either problem."""
    try:
        value = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}", hint='send {"input": {...}}') from None
    check_depth(value, settings)
    return value
