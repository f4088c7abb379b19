"""`RayBackend` against a stand-in for Ray's API (placement groups, nodes, actors as local
objects), with real node agents, templates and workers: where a worker lands, what it holds,
and what happens when an agent stops answering. The real cluster is tests/e2e/test_ray_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coldbrew.backends.base import ColdPath, WorkerLaunch
from coldbrew.backends.ray import RayBackend, RayOptions
from coldbrew.backends.ray_agent import AgentConfig
from coldbrew.backends.ray_worker import RayWorker
from coldbrew.backends.worker_socket import WorkerSocket
from coldbrew.errors import ClusterUnavailable
from tests.conftest import FIXTURES

pytestmark = pytest.mark.anyio

NODES = {"cpu-node": {"CPU": 2.0}, "l4-node": {"L4": 2.0, "GPU": 2.0}}


class _Method:
    def __init__(self, call: Callable[..., Awaitable[Any]], hang: bool) -> None:
        self._call, self._hang = call, hang

    def remote(self, *args: Any) -> Awaitable[Any]:
        if self._hang:  # an actor on a dead node: the call never answers
            return asyncio.get_running_loop().create_future()
        return asyncio.ensure_future(self._call(*args))  # runs whether awaited or not


class _Actor:
    """An actor handle over a local object: `actor.method.remote(...)` is its coroutine."""

    def __init__(self, body: Any, fake: FakeRay) -> None:
        self._body, self._fake = body, fake

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._body, name), self._fake.hang and name != "ready")


class _Group:
    def __init__(self, bundles: list[dict[str, float]], node_id: str) -> None:
        self.bundles, self.node_id = bundles, node_id

    async def ready(self) -> None:
        return None


class FakeRay:
    """The part of Ray's API `RayBackend` uses, for two nodes: the first with room wins."""

    def __init__(self) -> None:
        self.hang = False
        self.groups: list[_Group] = []
        self.removed: list[_Group] = []
        self.actors: list[tuple[dict[str, Any], _Actor]] = []
        self.killed: list[_Actor] = []
        self._closing: list[asyncio.Future[None]] = []
        self.util = SimpleNamespace(
            placement_group=self._placement_group,
            placement_group_table=lambda g: {"bundles_to_node_id": {0: g.node_id}},
            remove_placement_group=self.removed.append,
            scheduling_strategies=SimpleNamespace(NodeAffinitySchedulingStrategy=self._pin),
        )

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "Alive": True, "Resources": r} for n, r in NODES.items()]

    def remote(self, cls: type) -> Any:
        fake = self

        class _Options:
            def options(self, **options: Any) -> Any:
                return SimpleNamespace(remote=lambda *a: fake._actor(cls, options, a))

        return _Options()

    def kill(self, actor: _Actor) -> None:
        """As Ray ends the actor's process, whose templates and workers die with it."""
        self.killed.append(actor)
        self._closing.append(asyncio.ensure_future(actor._body.close()))

    def _actor(self, cls: type, options: dict[str, Any], args: tuple[Any, ...]) -> _Actor:
        actor = _Actor(cls(*args), self)
        self.actors.append((options, actor))
        return actor

    def _pin(self, node_id: str, soft: bool) -> tuple[str, bool]:
        return node_id, soft

    def _placement_group(self, bundles: list[dict[str, float]]) -> _Group:
        for node_id, resources in NODES.items():
            if all(resources.get(k, 0.0) >= v for k, v in bundles[0].items()):
                group = _Group(bundles, node_id)
                self.groups.append(group)
                return group
        raise AssertionError(f"no node fits {bundles}")


def _launch(home: Path, worker_id: str, hardware: str) -> WorkerLaunch:
    return WorkerLaunch(
        worker_id=worker_id,
        artifact_dir=FIXTURES / "toys",
        module="app",
        class_name="Toy",
        concurrency=1,
        hardware=hardware,
        log_path=home / "logs" / f"{worker_id}.log",
        snapshot=hardware == "cpu",
    )


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[tuple[RayBackend, FakeRay]]:
    fake = FakeRay()
    ray = RayBackend(
        RayOptions(address="fake:1", call_timeout_s=2.0),
        AgentConfig(home=tmp_path),
        WorkerSocket("127.0.0.1", "127.0.0.1"),
    )
    ray._ray = fake  # connected, as far as the backend knows
    await ray.sockets.start()
    try:
        yield ray, fake
    finally:
        fake.hang = False
        await ray.close()
        await asyncio.gather(*fake._closing)


async def test_each_class_runs_on_a_node_that_has_it(
    tmp_path: Path, backend: tuple[RayBackend, FakeRay]
) -> None:
    ray, fake = backend
    launches = [_launch(tmp_path, "template", "cpu"), _launch(tmp_path, "t2", "L4")]
    await ray.prepare(launches)
    assert await ray.ready(launches, 60) == [ColdPath.FORK, ColdPath.FORK]  # templates loaded
    assert [options["num_cpus"] for options, _ in fake.actors] == [0, 0]
    pins = {options["scheduling_strategy"] for options, _ in fake.actors}
    assert pins == {("cpu-node", False), ("l4-node", False)}  # one agent per node, pinned

    cpu = await ray.start(_launch(tmp_path, "w1", "cpu"))
    l4 = await ray.start(_launch(tmp_path, "w2", "L4"))
    assert isinstance(cpu, RayWorker) and isinstance(l4, RayWorker)
    assert (cpu.node_id, l4.node_id) == ("cpu-node", "l4-node")
    assert [g.bundles for g in fake.groups] == [[{"CPU": 1.0}], [{"L4": 1.0, "GPU": 1.0}]]
    for handle in (cpu, l4):
        ready = await handle.recv()
        assert ready is not None and ready["t"] == "ready"
        await handle.send({"t": "job", "id": "j", "input": {"value": 3}})
        done = await handle.recv()
        assert done is not None and done["output"]["value"] == 3
        handle.kill()
        await handle.wait()
        assert handle.pid not in await fake.actors[0][1].pids.remote()
    assert fake.removed == fake.groups  # both slots given back


async def test_an_agent_that_stops_answering_is_replaced(
    tmp_path: Path, backend: tuple[RayBackend, FakeRay]
) -> None:
    ray, fake = backend
    await ray.prepare([_launch(tmp_path, "template", "cpu")])
    fake.hang = True
    with pytest.raises(ClusterUnavailable, match="timed out"):
        await ray.start(_launch(tmp_path, "w1", "cpu"))
    (_, lost), *_ = fake.actors
    assert fake.killed == [lost]  # ended, so what it started dies with it
    assert fake.removed == fake.groups  # the slot went back
    fake.hang = False
    handle = await ray.start(_launch(tmp_path, "w2", "cpu"))
    assert len(fake.actors) == 2  # a new agent on that node
    ready = await handle.recv()
    assert ready is not None and ready["t"] == "ready"
    handle.kill()
    await handle.wait()
