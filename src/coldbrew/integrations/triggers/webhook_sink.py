"""The `webhook` sink: results POSTed as JSON to a URL, a batch per request.

The body is `{"trigger": id, "results": [{key, job, status, output, error, finishedAt}]}`; a
non-2xx answer or no answer raises, and the runner retries the whole batch (so a receiver
de-duplicates on `key`). Only http(s) URLs are taken, and only to the addresses webhooks may
reach (`integrations/egress.py`: no metadata or link-local address; loopback and private ranges
as the operator allows), checked on every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import field_validator

from coldbrew.integrations.egress import EgressPolicy
from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Sink,
    SinkRecord,
    TriggerContext,
    register_sink,
)


class WebhookSinkConfig(KindConfig):
    """Where results are POSTed, and how long one request may take."""

    url: str
    timeout_s: float = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        return value


class WebhookSink(Sink):
    def __init__(self, config: WebhookSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.trigger_id = ctx.trigger_id
        self.egress = ctx.egress or EgressPolicy()
        self.client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.config.timeout_s)

    async def write(self, records: Sequence[SinkRecord]) -> None:
        assert self.client is not None
        results: list[dict[str, Any]] = [
            {
                "key": r.message_key,
                "job": r.job_id,
                "status": r.status,
                "output": r.output,
                "error": r.error,
                "finishedAt": r.finished_at,
            }
            for r in records
        ]
        target = await self.egress.target(self.config.url)  # EgressRefused: the runner retries
        response = await self.client.post(
            target.url,
            json={"trigger": self.trigger_id, "results": results},
            headers=target.headers,
            extensions=target.extensions,
        )
        response.raise_for_status()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


register_sink(Kind("webhook", WebhookSinkConfig, WebhookSink, "url='https://…'"))
