"""Cold start through a Ray node agent's fork, against a local fork, for examples/echo.

Both measure the backend alone (no gateway, no HTTP): from `backend.start(launch)` to the
worker's `ready` frame, the template already loaded, the worker killed and reaped between tries.

- `local_fork`: `TemplateBackend` on this machine (the embedded default's fast path);
- `ray_agent_fork`: `RayBackend` on an in-process Ray cluster on loopback (a head that runs no
  work and one node with CPUs): a placement group per worker, a call to the node's agent, a fork
  from the agent's template, the worker's connection to the gateway's worker socket.

Run it from the Ray virtualenv (`make bench-ray`, or `.venv-ray/bin/python bench/ray_coldstart.py
--tries 30`). Prints p50/p90 per system, then one JSON line. Everything it starts is stopped
before it exits; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

# nothing leaves loopback: "this machine" is 127.0.0.1 to Ray, not the first interface's address
os.environ.update(
    RAY_USAGE_STATS_ENABLED="0",
    RAY_DISABLE_DOCKER_CPU_WARNING="1",
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
)

from coldbrew.backends.base import Backend, WorkerLaunch
from coldbrew.backends.ray import RayBackend, RayOptions
from coldbrew.backends.ray_agent import AgentConfig
from coldbrew.backends.template import TemplateBackend
from coldbrew.backends.worker_socket import WorkerSocket

ROOT = Path(__file__).resolve().parents[1]


def _launch(home: Path, worker_id: str) -> WorkerLaunch:
    return WorkerLaunch(
        worker_id=worker_id,
        artifact_dir=ROOT / "examples" / "echo",
        module="app",
        class_name="Echo",
        concurrency=1,
        hardware="cpu",
        log_path=home / "logs" / f"{worker_id}.log",
        snapshot=True,
    )


async def _tries(backend: Backend, home: Path, tries: int, warmup: int) -> list[float]:
    """Cold starts in ms, after `warmup` untimed ones (the template loads meanwhile)."""
    await backend.prepare([_launch(home, "template")])
    await asyncio.sleep(3.0)  # the template imports and runs setup() once
    times = []
    for n in range(warmup + tries):
        began = time.perf_counter()
        handle = await backend.start(_launch(home, f"w{n}"))
        ready = await handle.recv()
        elapsed_ms = (time.perf_counter() - began) * 1000
        assert ready is not None and ready["t"] == "ready", ready
        handle.kill()
        await handle.wait()
        if n >= warmup and "fork_s" in ready:
            times.append(elapsed_ms)
        await asyncio.sleep(1.2)  # the template's next spare is forked 1 s after a take
    await backend.close()
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _summary(times: list[float]) -> dict[str, float]:
    if not times:
        return {"n": 0}
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50_ms": statistics.median(ordered), "p90_ms": p90}


async def _ray(home: Path, address: str, tries: int, warmup: int) -> list[float]:
    sockets = WorkerSocket("127.0.0.1", "127.0.0.1")
    backend = RayBackend(RayOptions(address=address), AgentConfig(home=home), sockets)
    return await _tries(backend, home, tries, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    home = Path(tempfile.mkdtemp(prefix="cbbench-"))
    results = {
        "local_fork": _summary(
            asyncio.run(_tries(TemplateBackend(10.0), home, args.tries, args.warmup))
        )
    }
    ray_dir = tempfile.mkdtemp(prefix="cbray-", dir="/tmp")  # short: Ray's socket paths
    os.environ["RAY_TMPDIR"] = ray_dir  # Ray's address file: here, not /tmp/ray (may not exist)
    os.makedirs(os.path.join(ray_dir, "ray"), exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "node_ip_address": "127.0.0.1",
            "gcs_server_port": _free_port(),
            "include_dashboard": False,
            "num_cpus": 0,
            "temp_dir": ray_dir,
        },
    )
    try:
        cluster.add_node(node_ip_address="127.0.0.1", num_cpus=2)
        cluster.wait_for_nodes()
        times = asyncio.run(_ray(home, cluster.address, args.tries, args.warmup))
        results["ray_agent_fork"] = _summary(times)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    for name, summary in results.items():
        if summary.get("n"):
            p50, p90 = summary["p50_ms"], summary["p90_ms"]
            print(f"{name:16} n={summary['n']:<3} p50 {p50:6.1f} ms  p90 {p90:6.1f} ms")
    print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
