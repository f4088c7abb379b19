"""Cold-start paths and node provisioning as latency distributions, with measured defaults.

A worker starts one of four ways, and the simulator draws how long that takes:

- **local fork** from a template that already ran `setup()` on the gateway's node: measured
  ~8 ms for echo and ~35 ms for the 100 MB MLP, so 8 ms + 0.27 ms per MB of model;
- **agent fork** on a remote node's template (the Ray agent's call, then the same fork):
  measured ~11 ms for echo, so the local fork + 3 ms;
- **fresh spawn** where the node has no template yet (a new interpreter, imports, `setup()`):
  ~1 s; the node keeps the template it made, so the next start there forks;
- **GPU setup** for GPU hardware (no fork across a CUDA context): context creation and weight
  upload, ~2-5 s.

Each is a lognormal around a median (`sigma` is its spread), so a long tail exists but is rare.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum


class StartPath(StrEnum):
    """How a worker came up."""

    LOCAL_FORK = "local_fork"  # a template on the gateway's own node forked it
    AGENT_FORK = "agent_fork"  # a remote node's agent forked it from that node's template
    SPAWN = "spawn"  # a fresh process: no template on the node yet
    GPU = "gpu"  # GPU context and weight upload


@dataclass(frozen=True)
class Latency:
    """A lognormal duration: `median_s`, spread `sigma` (0: always the median)."""

    median_s: float
    sigma: float = 0.25

    def draw(self, rng: random.Random, extra_s: float = 0.0) -> float:
        median = self.median_s + extra_s
        if self.sigma <= 0:
            return median
        return median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class ColdStarts:
    """The latency of each start path and of a new node; every field can be overridden."""

    local_fork: Latency = field(default_factory=lambda: Latency(0.008, 0.25))
    fork_per_mb_s: float = 0.00027  # 100 MB MLP: 8 ms + 27 ms = 35 ms
    agent_rpc: Latency = field(default_factory=lambda: Latency(0.003, 0.25))
    spawn: Latency = field(default_factory=lambda: Latency(1.0, 0.3))
    gpu_setup: Latency = field(default_factory=lambda: Latency(3.2, 0.25))  # ~2-5 s
    node_provision: Latency = field(default_factory=lambda: Latency(90.0, 0.2))

    def draw(self, path: StartPath, model_mb: float, rng: random.Random) -> float:
        """Seconds from placing a worker on a node to it taking its first job."""
        if path is StartPath.GPU:
            return self.gpu_setup.draw(rng)
        if path is StartPath.SPAWN:
            return self.spawn.draw(rng)
        fork_s = self.local_fork.draw(rng, self.fork_per_mb_s * model_mb)
        if path is StartPath.AGENT_FORK:
            fork_s += self.agent_rpc.draw(rng)
        return fork_s


def parse_latency(text: str) -> Latency:
    """`0.5` or `0.5:0.3` (median seconds, optional sigma) → a `Latency`."""
    median, _, sigma = text.partition(":")
    return Latency(float(median), float(sigma) if sigma else 0.25)
