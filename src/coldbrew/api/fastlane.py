"""FastLane: the two hottest routes, `POST /v2/{endpoint}/run` and `/runsync`, served without
FastAPI's routing, dependency solving and parameter parsing (about a fifth of the gateway's time
per request). Everything else, and the OpenAPI documents, stay with FastAPI; errors are answered
through the same mapping as FastAPI's handlers (`responses.error_response`)."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from coldbrew.api.invoke import RunPod
from coldbrew.api.responses import error_response


class FastLane:
    """ASGI middleware: `/v2/{endpoint}/run` and `/runsync` straight to `RunPod`."""

    def __init__(self, app: ASGIApp, runpod: RunPod) -> None:
        self.app = app
        self.verbs = {"run": runpod.run, "runsync": runpod.runsync}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            verb = self.verbs.get(parts[3]) if len(parts) == 4 else None
            if verb is not None and parts[1] == "v2" and parts[2]:
                try:
                    response = await verb(parts[2], Request(scope, receive))
                except Exception as exc:
                    response = error_response(exc, "POST", scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
