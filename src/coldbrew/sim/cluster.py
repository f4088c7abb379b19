"""The simulated cluster: nodes with slots per hardware class, added when full, removed when
empty for a while, and the node-seconds they were up (what the operator pays for).

A node holds one hardware class (`node_slots[hardware]` worker slots). When a worker cannot be
placed, the cluster provisions enough nodes for the workers waiting (each takes the
`node_provision` latency to come up), up to `max_nodes` per class. Every node but node 0 (the
gateway's own machine) is released after `node_idle_s` without a worker.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_NODE_SLOTS: dict[str, int] = {"cpu": 64}
GPU_NODE_SLOTS = 8  # GPUs per node for every class not in `node_slots`


@dataclass(eq=False)
class Node:
    """One machine: its hardware class, slots in use, and when it came up (and went)."""

    id: int
    hardware: str
    slots: int
    up_at: float
    used: int = 0
    empty_since: float | None = None
    initial: bool = False
    templates: set[int] = field(default_factory=set)  # endpoints with a template here
    listed: bool = False  # in the free-node heap
    removed: bool = False


class Cluster:
    """Nodes by hardware class, slot accounting and node-seconds."""

    def __init__(
        self,
        node_slots: Mapping[str, int],
        initial_nodes: Mapping[str, int],
        max_nodes: int,
        node_idle_s: float,
        measure_from_s: float = 0.0,
    ) -> None:
        self.node_slots = dict(node_slots)
        self.measure_from_s = measure_from_s
        self.max_nodes = max_nodes
        self.node_idle_s = node_idle_s
        self.nodes: dict[str, list[Node]] = {}
        self.pending: dict[str, int] = {}  # nodes being provisioned, by class
        self.node_s: dict[str, float] = {}  # node-seconds of released nodes, by class
        self.peak_nodes: dict[str, int] = {}
        self.by_id: dict[int, Node] = {}
        # nodes that may have a free slot, lowest id first (entries of full ones are dropped
        # when met), so placement finds one without scanning every node
        self.free: dict[str, list[tuple[int, Node]]] = {}
        self._next_id = 0
        # the gateway's own machine (node 0, where templates fork locally) is a CPU node
        for hardware, count in sorted(initial_nodes.items(), key=lambda i: (i[0] != "cpu", i[0])):
            for _ in range(count):
                self.add_node(hardware, 0.0, initial=True)

    def slots_per_node(self, hardware: str) -> int:
        return self.node_slots.get(hardware, GPU_NODE_SLOTS)

    def add_node(self, hardware: str, now: float, initial: bool = False) -> Node:
        node = Node(self._next_id, hardware, self.slots_per_node(hardware), now, initial=initial)
        node.empty_since = now
        self._next_id += 1
        nodes = self.nodes.setdefault(hardware, [])
        nodes.append(node)
        self.by_id[node.id] = node
        node.listed = True
        heapq.heappush(self.free.setdefault(hardware, []), (node.id, node))
        self.peak_nodes[hardware] = max(self.peak_nodes.get(hardware, 0), len(nodes))
        return node

    def free_node(self, hardware: str, prefer: set[int]) -> Node | None:
        """A node of `hardware` with a free slot: the lowest-numbered one when it holds a
        template of the endpoint (`prefer`), else one that does, else the lowest-numbered."""
        heap = self.free.get(hardware)
        while heap:
            node = heap[0][1]
            if node.used < node.slots and not node.removed:
                break
            heapq.heappop(heap)
            node.listed = False
        else:
            return None
        if node.id in prefer or not prefer:
            return node
        by_id = self.by_id
        for node_id in prefer:
            other = by_id[node_id]
            if other.used < other.slots:
                return other
        return node

    def take(self, node: Node) -> None:
        node.used += 1
        node.empty_since = None

    def give_back(self, node: Node, now: float) -> None:
        node.used -= 1
        if node.used == 0:
            node.empty_since = now
        if not node.listed and not node.removed:
            node.listed = True
            heapq.heappush(self.free[node.hardware], (node.id, node))

    def provision(self, hardware: str, waiting: int) -> int:
        """How many more nodes to start for `waiting` workers with no slot (0 at the cap)."""
        per_node = self.slots_per_node(hardware)
        pending = self.pending.get(hardware, 0)
        short = waiting - pending * per_node
        if short <= 0:
            return 0
        have = len(self.nodes.get(hardware, ())) + pending
        more = min(-(-short // per_node), max(0, self.max_nodes - have))
        self.pending[hardware] = pending + more
        return more

    def node_up(self, hardware: str, now: float) -> Node:
        self.pending[hardware] -= 1
        return self.add_node(hardware, now)

    def release_idle(self, now: float, forget: Callable[[Node], Any]) -> None:
        """Release nodes (all but node 0) that have been empty for `node_idle_s`."""
        for hardware, nodes in self.nodes.items():
            keep = []
            for node in nodes:
                idle = node.empty_since is not None and now - node.empty_since >= self.node_idle_s
                if idle and node.id != 0:  # node 0 is the gateway's own machine
                    self.node_s[hardware] = self.node_s.get(hardware, 0.0) + self._up_s(node, now)
                    node.removed = True
                    del self.by_id[node.id]
                    forget(node)
                else:
                    keep.append(node)
            self.nodes[hardware] = keep

    def node_seconds(self, end: float) -> dict[str, float]:
        """Node-seconds by class up to `end`, released nodes and live ones."""
        out = dict(self.node_s)
        for hardware, nodes in self.nodes.items():
            live = sum(self._up_s(n, end) for n in nodes)
            out[hardware] = out.get(hardware, 0.0) + live
        return out

    def _up_s(self, node: Node, end: float) -> float:
        return max(0.0, end - max(node.up_at, self.measure_from_s))
