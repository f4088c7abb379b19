"""The Ray node agent without Ray: it forks a worker from its template onto a TCP connection to
the gateway's worker socket, and the worker's frames arrive there directly."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.ray import pack_artifact
from coldbrew.backends.ray_agent import AgentConfig, NodeAgent
from coldbrew.backends.worker_socket import WorkerSocket, hello
from coldbrew.runtime import protocol
from tests.conftest import FIXTURES
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.anyio


def _launch(home: Path, worker_id: str, hardware: str = "cpu") -> WorkerLaunch:
    return WorkerLaunch(
        worker_id=worker_id,
        artifact_dir=FIXTURES / "toys",
        module="app",
        class_name="Toy",
        concurrency=1,
        hardware=hardware,
        log_path=home / "logs" / f"{worker_id}.log",
        snapshot=True,
        account="acct",
    )


@pytest.fixture
async def sockets() -> AsyncIterator[WorkerSocket]:
    listener = WorkerSocket("127.0.0.1", "127.0.0.1")
    await listener.start()
    try:
        yield listener
    finally:
        await listener.close()


@pytest.fixture(params=["off", "standard"])
async def agent(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[NodeAgent]:
    """An agent whose templates run unsandboxed, and one whose run in the sandbox (a worker
    in its own network namespace still talks over the connection the agent opened for it)."""
    node = NodeAgent(AgentConfig(home=tmp_path, sandbox=request.param), "node-a", ["0", "1"])
    await node.prepare([_launch(tmp_path, "template")])

    async def usable() -> list[object]:
        return [t for t in node.templates._templates.values() if t.usable]

    await wait_for(usable, bool)
    try:
        yield node
    finally:
        await node.close()


async def _frame(reader: asyncio.StreamReader) -> dict[str, object]:
    (length,) = protocol.HEADER.unpack(await reader.readexactly(protocol.HEADER.size))
    return protocol.decode(await reader.readexactly(length))


async def test_a_forked_worker_dials_the_gateway(
    tmp_path: Path, agent: NodeAgent, sockets: WorkerSocket
) -> None:
    token, connected = sockets.expect("w1")
    pid = await agent.start_worker(_launch(tmp_path, "w1"), sockets.address, token, 0)
    reader, writer = await asyncio.wait_for(connected, 30)
    ready = await _frame(reader)
    assert ready["t"] == "ready" and "fork_s" in ready  # forked, not spawned
    writer.write(protocol.encode({"t": "job", "id": "j1", "input": {"value": 7}}))
    done = await _frame(reader)
    assert done["output"]["value"] == 7 and done["output"]["pid"] == pid
    assert pid in await agent.pids()
    await agent.kill_worker("w1")
    assert await asyncio.wait_for(agent.wait_worker("w1"), 30) == -signal.SIGKILL
    assert pid not in await agent.pids()
    writer.close()


async def test_gpus_are_handed_out_and_back(
    tmp_path: Path, agent: NodeAgent, sockets: WorkerSocket
) -> None:
    token, connected = sockets.expect("g1")
    await agent.start_worker(_launch(tmp_path, "g1", "L4"), sockets.address, token, 2)
    _, writer = await asyncio.wait_for(connected, 30)
    assert (await agent.ready())["free_gpus"] == []
    with pytest.raises(RuntimeError, match="1 GPUs wanted, 0 free"):
        await agent.start_worker(_launch(tmp_path, "g2", "L4"), sockets.address, "x", 1)
    writer.close()  # the worker sees its connection end and exits
    await asyncio.wait_for(agent.wait_worker("g1"), 30)
    assert (await agent.ready())["free_gpus"] == ["0", "1"]


async def test_the_worker_socket_refuses_a_wrong_token(sockets: WorkerSocket) -> None:
    _, connected = sockets.expect("w2")
    reader, writer = await asyncio.open_connection(*sockets.address)
    writer.write(hello("w2", "not-the-token"))
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed on us
    assert not connected.done()
    writer.close()


async def test_a_process_asked_to_die_dies_with_its_parent(tmp_path: Path) -> None:
    """`runtime/lifeline.py`: the parent is SIGKILLed, the child goes with it."""
    child_code = (
        "from coldbrew.runtime import lifeline; import time; lifeline.from_env(); time.sleep(60)"
    )
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child_code!r}], env={{**os.environ, "
        "'COLDBREW_DIE_WITH_PARENT': '1', 'COLDBREW_PARENT_PID': str(os.getpid())})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", parent_code, stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    child = int(await asyncio.wait_for(parent.stdout.readline(), 30))
    parent.kill()
    await parent.wait()

    async def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state == "Z"

    await wait_for(gone, bool, 10)


async def test_a_node_without_the_code_gets_it_from_the_gateway(tmp_path: Path) -> None:
    node = NodeAgent(AgentConfig(home=tmp_path), "node-b", [])
    target = tmp_path / "elsewhere" / "artifacts" / "abc123"
    assert not await node.has_artifact(str(target))
    await node.put_artifact(str(target), pack_artifact(FIXTURES / "toys"))
    assert await node.has_artifact(str(target))
    assert (target / "app.py").read_bytes() == (FIXTURES / "toys" / "app.py").read_bytes()
