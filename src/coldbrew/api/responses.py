"""JSON responses and the one mapping from errors to them: a `ColdbrewError` (errors.py) answers
with its own status code, body and headers; anything else is a logged 500. The FastAPI handlers
in `app.py` and the FastLane middleware both answer through `error_response`."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi.responses import Response

from coldbrew.errors import ColdbrewError

log = logging.getLogger("coldbrew.api")


def json_response(body: Any, status_code: int = 200) -> Response:
    """`body` as JSON (numpy arrays included), without FastAPI's encoder."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def error_body(kind: str, message: str, hint: str = "") -> dict[str, Any]:
    """coldbrew's error shape: `{"error": {type, message, hint}}`."""
    return {"error": {"type": kind, "message": message, "hint": hint}}


def error_response(exc: Exception, method: str, path: str) -> Response:
    """The answer to an error raised while serving `method path`."""
    if isinstance(exc, ColdbrewError):
        response = json_response(exc.to_json(), exc.status_code)
        response.headers.update(exc.headers())
        return response
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    body = error_body("internal_error", f"{type(exc).__name__}: {exc}", "see the server log")
    return json_response(body, 500)
