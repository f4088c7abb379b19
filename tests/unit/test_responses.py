"""The one error mapping: FastAPI's handlers and the FastLane middleware answer every error the
same way, so a client sees one status code, body and headers per error wherever it was raised."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from coldbrew.api.fastlane import FastLane
from coldbrew.api.responses import error_response
from coldbrew.errors import ColdbrewError, NotFound, QueueFull


def test_a_coldbrew_error_answers_with_its_status_body_and_headers() -> None:
    exc = QueueFull("too many queued jobs", retry_after_s=5, hint="wait", limit=3)
    response = error_response(exc, "POST", "/v2/e/run")
    assert response.status_code == 429
    assert orjson.loads(response.body) == exc.to_json()
    assert response.headers["retry-after"] == "5"


def test_anything_else_is_a_logged_500_that_names_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = error_response(KeyError("x"), "POST", "/v2/e/run")
    assert response.status_code == 500
    body = orjson.loads(response.body)
    assert body["error"]["type"] == "internal_error"
    assert body["error"]["message"] == "KeyError: 'x'"
    assert "unhandled error on POST /v2/e/run" in caplog.text


class _Raising:
    """Stands in for `RunPod`: both verbs raise what the test gives them."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def run(self, name: str, request: Any) -> Any:
        raise self.exc

    runsync = run


@pytest.mark.parametrize(
    "exc", [NotFound("no endpoint 'e'", hint="deploy"), RuntimeError("boom")], ids=["404", "500"]
)
def test_fastlane_answers_errors_as_fastapi_does(exc: ColdbrewError | Exception) -> None:
    async def scenario() -> None:
        app = FastAPI()

        @app.post("/other")
        async def other() -> None:
            raise exc

        @app.exception_handler(Exception)
        async def unexpected(request: Any, error: Exception) -> Any:
            return error_response(error, request.method, request.url.path)

        lane = FastLane(app, runpod=_Raising(exc))  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=lane, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            fast = await http.post("/v2/e/runsync", json={"input": {}})
            routed = await http.post("/other")
        assert fast.status_code == routed.status_code
        assert fast.json() == routed.json()

    asyncio.run(scenario())
