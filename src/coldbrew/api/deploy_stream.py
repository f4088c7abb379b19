"""A deploy that shows its environment build as it happens: `POST /v1/deployments` with
`Accept: application/x-ndjson` answers one JSON object per line: `{"progress": "..."}` for each
phase (resolve, download, install), then `{"endpoints": [...]}`, or `{"error": {...}}` with the
status the plain request would have had. The deploy runs to its end even if the client leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from fastapi.responses import StreamingResponse

from coldbrew.errors import ColdbrewError
from coldbrew.platform import Platform

NDJSON = "application/x-ndjson"
log = logging.getLogger("coldbrew.deploy")
_running: set[asyncio.Task[None]] = set()  # deploys whose client may have gone


def deploy_stream(
    platform: Platform,
    account: str,
    sha: str,
    directory: str | None,
    name: str | None,
    replace: bool,
) -> StreamingResponse:
    """Run the deploy in a task and stream its progress lines, then its result."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(item: dict[str, object]) -> None:
        lines.put_nowait(orjson.dumps(item) + b"\n")

    async def run() -> None:
        try:
            endpoints = await platform.deploy(
                account,
                sha,
                directory,
                name=name,
                replace=replace,
                report=lambda line: send({"progress": line}),
            )
            send({"endpoints": endpoints})
        except ColdbrewError as exc:
            send({**exc.to_json(), "status": exc.status_code})
        except Exception as exc:
            log.exception("deploy of %s failed", sha)
            send({"error": {"type": "internal_error", "message": str(exc)}, "status": 500})
        finally:
            lines.put_nowait(None)

    task = asyncio.get_running_loop().create_task(run())
    _running.add(task)
    task.add_done_callback(_running.discard)

    async def body() -> AsyncIterator[bytes]:
        while (line := await lines.get()) is not None:
            yield line

    return StreamingResponse(body(), media_type=NDJSON)
