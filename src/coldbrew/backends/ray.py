"""Workers on a Ray cluster: Ray counts and places the slots, a node agent forks the workers.

For each worker the backend reserves a placement group with the worker's hardware class as a
Ray resource (`{"CPU": 1}` for `cpu`, `{"L4": 1, "GPU": 1}` for an L4 slot), so slots are
counted cluster-wide and demand that fits nowhere stays pending where Ray's autoscaler sees it.
Where the group lands picks the node; that node's agent (`ray_agent.py`, one actor per node,
created on first use) forks the worker from its template, on a connection the agent opened to
the gateway's worker socket (`worker_socket.py`). Ray carries only the control calls, each with
a timeout: a call to an actor on a dead node hangs instead of failing.

Ray is imported only here and only when this backend is created: the embedded default never
loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import os
import tarfile
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from coldbrew.backends.base import ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.backends.ray_agent import AgentConfig, NodeAgent
from coldbrew.backends.ray_worker import NodeView, RayWorker, bundle
from coldbrew.backends.worker_socket import WorkerSocket
from coldbrew.config import Settings
from coldbrew.errors import ClusterUnavailable
from coldbrew.runtime.protocol import OUTPUT_MAX_ENV

log = logging.getLogger("coldbrew.ray")

T = TypeVar("T")
#: What Ray must not do on its own from a gateway: report usage to its makers.
QUIET_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
NAMESPACE = "coldbrew"


@dataclass(frozen=True)
class RayOptions:
    """The Ray side of the settings (`config.py`: `ray_*`)."""

    address: str
    gpus_per_worker: dict[str, int] = field(default_factory=dict)  # default: 1 for GPU classes
    call_timeout_s: float = 10.0
    placement_timeout_s: float = 120.0
    agent_start_timeout_s: float = 120.0


class RayBackend:
    """Starts each worker on the Ray node where its placement group landed."""

    def __init__(self, options: RayOptions, agent: AgentConfig, sockets: WorkerSocket) -> None:
        self.options = options
        self.agent_config = agent
        self.sockets = sockets
        self._ray: Any = None
        self._agents: dict[str, NodeView] = {}
        self._creating: dict[str, asyncio.Task[NodeView]] = {}
        self._launches: list[WorkerLaunch] = []

    # the Backend interface
    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Keep templates on every live node whose resources fit a launch's class."""
        await self._connect()
        self._launches = list(launches)
        nodes = dict(await asyncio.to_thread(self._live_nodes))
        wanted = {
            node_id
            for node_id, resources in nodes.items()
            if any(self._fits(launch, resources) for launch in launches)
        }
        # every node at once (an agent takes a second or so to start); agents with nothing
        # left to run retire their templates
        await asyncio.gather(
            *(self._prepare_node(node_id, nodes[node_id]) for node_id in wanted),
            *(
                self._prepare_node(n, a.resources)
                for n, a in self._agents.items()
                if n not in wanted
            ),
        )

    async def _prepare_node(self, node_id: str, resources: dict[str, float]) -> None:
        with contextlib.suppress(ClusterUnavailable):
            await self._prepare(await self._agent(node_id, resources))

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        await self._connect()
        group, node_id = await self._place(launch)
        try:
            agent = await self._agent(node_id)
            token, connected = self.sockets.expect(launch.worker_id)
            try:
                pid = await self._start_on(agent, launch, token)
                reader, writer = await self._connection(agent, launch.worker_id, connected)
            finally:
                self.sockets.forget(launch.worker_id)
        except BaseException:
            self.release(group)
            raise
        return RayWorker(
            agent, launch.worker_id, pid, group, reader, writer, self.call, self.release
        )

    async def _start_on(self, agent: NodeView, launch: WorkerLaunch, token: str) -> int:
        """Have the agent start the worker; its pid. An agent that does not answer is lost."""
        try:
            await self._ship(agent, launch.artifact_dir)
            pid: int = await self.call(
                agent.actor.start_worker.remote(
                    launch, self.sockets.address, token, self._gpus(launch.hardware)
                )
            )
        except ClusterUnavailable:
            self.lost(agent)  # the next worker on that node gets a new agent
            raise
        return pid

    async def _connection(
        self,
        agent: NodeView,
        worker_id: str,
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(connected, self.options.call_timeout_s)
        except TimeoutError:  # started, but never reached us: of no use to anyone
            agent.actor.kill_worker.remote(worker_id)
            raise ClusterUnavailable(
                f"a worker on node {agent.node_id[:12]} did not connect to "
                f"{self.sockets.address} (is `advertise_host` reachable from there?)"
            ) from None

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        """Wait up to `timeout_s` for the agents' templates; a launch forks when a node that
        fits it has its template loaded (else loading, else spawn: no node fits it yet)."""
        agents = list(self._agents.values())
        answers = await asyncio.gather(
            *(self._cold_paths(agent, launches, timeout_s) for agent in agents)
        )
        order = [ColdPath.FORK, ColdPath.LOADING, ColdPath.SPAWN]
        paths = []
        for n, launch in enumerate(launches):
            found = [
                answer[n]
                for agent, answer in zip(agents, answers, strict=True)
                if answer is not None and self._fits(launch, agent.resources)
            ]
            paths.append(min(found, key=order.index, default=ColdPath.SPAWN))
        return paths

    async def _cold_paths(
        self, agent: NodeView, launches: list[WorkerLaunch], timeout_s: float
    ) -> list[ColdPath] | None:
        fitting = [launch for launch in launches if self._fits(launch, agent.resources)]
        try:
            answer: list[ColdPath] = await self.call(
                agent.actor.cold_paths.remote(fitting, timeout_s),
                timeout_s + self.options.call_timeout_s,
            )
        except ClusterUnavailable:
            return None
        paths = iter(answer)
        return [
            next(paths) if self._fits(launch, agent.resources) else ColdPath.SPAWN
            for launch in launches
        ]

    async def close(self) -> None:
        for agent in list(self._agents.values()):
            with contextlib.suppress(ClusterUnavailable):
                await self.call(agent.actor.close.remote())
            with contextlib.suppress(Exception):
                self._ray.kill(agent.actor)
        self._agents.clear()
        await self.sockets.close()

    # for the workers and the tests
    async def call(self, ref: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await a Ray call, bounded: an actor on a dead node never answers."""
        try:
            return await asyncio.wait_for(ref, timeout_s or self.options.call_timeout_s)
        except TimeoutError:
            raise ClusterUnavailable("a Ray call timed out (a lost node?)") from None
        except Exception as exc:
            raised = getattr(getattr(self._ray, "exceptions", None), "RayTaskError", ())
            if isinstance(exc, raised):  # the agent answered with an error: it still runs
                raise RuntimeError(f"the node agent: {exc}") from exc
            if type(exc).__module__.startswith("ray"):  # RayActorError and its kin
                raise ClusterUnavailable(f"Ray: {exc}") from exc
            raise

    def lost(self, agent: NodeView) -> None:
        """Forget an agent that stopped answering (ending it, should it still run: what it
        started dies with it); the node's next worker gets a new one."""
        if self._agents.get(agent.node_id) is agent:
            del self._agents[agent.node_id]
        with contextlib.suppress(Exception):
            self._ray.kill(agent.actor)

    def release(self, group: Any) -> None:
        """Give a worker's slot back to Ray."""
        with contextlib.suppress(Exception):
            self._ray.util.remove_placement_group(group)

    def agents(self) -> dict[str, Any]:
        """The agent actor of each node (tests and the benchmark ask them for their pids)."""
        return {node_id: agent.actor for node_id, agent in self._agents.items()}

    # placement
    async def _place(self, launch: WorkerLaunch) -> tuple[Any, str]:
        """Reserve the worker's slot; the group and the node it landed on."""
        util = self._ray.util
        group = util.placement_group([bundle(launch.hardware, self._gpus(launch.hardware))])
        try:
            await self.call(group.ready(), self.options.placement_timeout_s)
            table = await asyncio.to_thread(util.placement_group_table, group)
        except BaseException:
            self.release(group)
            raise
        node_id: str = table["bundles_to_node_id"][0]
        return group, node_id

    def _gpus(self, hardware: str) -> int:
        if hardware == "cpu":
            return 0
        return self.options.gpus_per_worker.get(hardware, 1)

    def _fits(self, launch: WorkerLaunch, resources: dict[str, float]) -> bool:
        wanted = bundle(launch.hardware, self._gpus(launch.hardware))
        return all(resources.get(name, 0.0) >= amount for name, amount in wanted.items())

    def _live_nodes(self) -> list[tuple[str, dict[str, float]]]:
        return [(n["NodeID"], n["Resources"]) for n in self._ray.nodes() if n.get("Alive")]

    def _resources(self, node_id: str) -> dict[str, float]:
        return dict(self._live_nodes()).get(node_id, {})

    # agents
    async def _agent(self, node_id: str, resources: dict[str, float] | None = None) -> NodeView:
        """The node's agent, created (and given its templates) on first use."""
        agent = self._agents.get(node_id)
        if agent is not None:
            return agent
        task = self._creating.get(node_id)
        if task is None:
            if resources is None:
                resources = await asyncio.to_thread(self._resources, node_id)
            task = asyncio.get_running_loop().create_task(self._create_agent(node_id, resources))
            self._creating[node_id] = task
            task.add_done_callback(lambda _: self._creating.pop(node_id, None))
        return await asyncio.shield(task)

    async def _create_agent(self, node_id: str, resources: dict[str, float]) -> NodeView:
        pinned = self._ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
        gpu_ids = [str(i) for i in range(int(resources.get("GPU", 0)))]
        actor = (
            self._ray.remote(NodeAgent)
            .options(
                num_cpus=0,
                max_concurrency=1000,
                scheduling_strategy=pinned(node_id, soft=False),
            )
            .remote(self.agent_config, node_id, gpu_ids)
        )
        agent = NodeView(actor, node_id, resources)
        try:
            await self.call(actor.ready.remote(), self.options.agent_start_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)  # never to be used: no half-started agent stays behind
            raise
        self._agents[node_id] = agent
        log.info("node agent ready on %s", node_id[:12])
        await self._prepare(agent)
        return agent

    async def _prepare(self, agent: NodeView) -> None:
        launches = [launch for launch in self._launches if self._fits(launch, agent.resources)]
        if agent.prepared == launches:
            return
        for launch in launches:
            await self._ship(agent, launch.artifact_dir)
        await self.call(agent.actor.prepare.remote(launches))
        agent.prepared = launches

    async def _ship(self, agent: NodeView, artifact_dir: Path) -> None:
        """Send a version's code to a node that lacks it (a node with a shared or copied home
        already has it)."""
        path = str(artifact_dir)
        if path in agent.artifacts:
            return
        if not await self.call(agent.actor.has_artifact.remote(path)):
            data = await asyncio.to_thread(pack_artifact, artifact_dir)
            await self.call(agent.actor.put_artifact.remote(path, data))
        agent.artifacts.add(path)

    async def _connect(self) -> None:
        if self._ray is not None:
            return
        for name, value in QUIET_RAY_ENV.items():
            os.environ.setdefault(name, value)
        import ray
        import ray.util
        import ray.util.scheduling_strategies

        if not ray.is_initialized():
            ray.init(
                address=self.options.address,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        self._ray = ray
        if not self.sockets.advertise_host:  # bound to every address: say the one Ray uses
            self.sockets.advertise_host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        if self.agent_config.gateway is not None and not self.agent_config.gateway[0]:
            gateway = (self.sockets.advertise_host, self.agent_config.gateway[1])
            self.agent_config = dataclasses.replace(self.agent_config, gateway=gateway)
        await self.sockets.start()
        log.info(
            "connected to Ray at %s; workers dial %s", self.options.address, self.sockets.address
        )


def pack_artifact(directory: Path) -> bytes:
    """A version's code as an uncompressed tar, for a node that lacks it (`put_artifact`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def ray_backend(settings: Settings) -> RayBackend:
    """The backend `Platform.create` uses when `ray_address` is set."""
    wildcard = settings.host in ("0.0.0.0", "::", "")
    advertise = settings.advertise_host or ("" if wildcard else settings.host)
    agent = AgentConfig(
        home=settings.home,
        sandbox=settings.sandbox,
        scratch_mb=settings.sandbox_scratch_mb,
        pids_max=settings.sandbox_pids_max,
        open_files=settings.sandbox_open_files,
        gateway=(advertise, settings.port),
        extra_env={OUTPUT_MAX_ENV: str(int(settings.output_max_mb * (1 << 20)))},
        fork_ready_timeout_s=settings.fork_ready_timeout_s,
        template_backoff_s=settings.template_backoff_s,
        template_backoff_max_s=settings.template_backoff_max_s,
        template_load_wait_s=settings.template_load_wait_s,
    )
    options = RayOptions(
        address=settings.ray_address or "auto",
        gpus_per_worker=dict(settings.ray_gpus_per_worker),
        call_timeout_s=settings.ray_call_timeout_s,
        placement_timeout_s=settings.ray_placement_timeout_s,
    )
    return RayBackend(options, agent, WorkerSocket(settings.host, advertise, settings.worker_port))
