"""A 500 that keeps the connection: unexpected errors answered inside the middleware stack.

Starlette's outermost `ServerErrorMiddleware` answers an unhandled exception with a 500 and then
re-raises it, and uvicorn closes a connection whose application raised: every keep-alive client
that hit a bug paid a reconnect. `ContainErrors` sits just inside it and answers the same JSON
500 without re-raising, so the connection stays open. An error after the response has started
cannot be answered and still propagates (the connection must close then).
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coldbrew.api.responses import error_body

log = logging.getLogger("coldbrew.api")


def internal_error_body(exc: BaseException) -> bytes:
    """The body of a 500: the error's type and message, and where to look."""
    return orjson.dumps(
        error_body("internal_error", f"{type(exc).__name__}: {exc}", "see the server log")
    )


class ContainErrors:
    """ASGI middleware: answer an unhandled exception with a JSON 500 and keep the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            body = internal_error_body(exc)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
