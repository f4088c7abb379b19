"""Kafka without a broker (none can run on these machines, docs/brokers.md): what can be checked
for real is that aiokafka is driven up to its bootstrap and the failure says where it looked."""

from __future__ import annotations

import socket

import pytest

from coldbrew.errors import ServerError
from coldbrew.integrations.triggers import kinds
from coldbrew.integrations.triggers.base import source_kind
from tests.integration.brokers import context

pytest.importorskip("aiokafka")
pytestmark = pytest.mark.anyio
kinds.load()


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then released: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_broker_is_an_error_that_names_it() -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    raw = {"bootstrap_servers": servers, "topics": ["orders"], "group_id": "coldbrew"}
    source = source_kind("kafka").create(raw, context())
    with pytest.raises(ServerError, match=f"kafka: cannot reach the broker at {servers}") as info:
        await source.open()
    assert "check that the broker runs" in info.value.hint
    await source.close()  # nothing to release, and no error for it
