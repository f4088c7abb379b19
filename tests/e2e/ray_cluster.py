"""A Ray cluster on loopback for tests/e2e/test_ray_cluster.py, in a process of its own: a head
that runs no work, a `cpu` node and an `L4` node.

Prints one JSON line {"address", "nodes": {"cpu": node id, "L4": node id}}, then reads commands
from stdin, one a line: `remove NAME` (the node dies as if its machine was lost; answers
{"removed": NAME}) and `quit` (or end of input) to shut the cluster down.
"""

from __future__ import annotations

import json
import os
import socket
import sys

# before Ray is imported: nothing leaves loopback, and a lost node is noticed in ~3 s
os.environ.update(
    RAY_USAGE_STATS_ENABLED="0",
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # "this machine" is 127.0.0.1, not eth0's address
    RAY_health_check_period_ms="500",
    RAY_health_check_failure_threshold="3",
    RAY_DISABLE_DOCKER_CPU_WARNING="1",
)

from ray.cluster_utils import Cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    temp_dir = sys.argv[1]
    # Ray writes its address file under its default temp dir (/tmp/ray), which a fresh machine
    # lacks (FileNotFoundError): ours instead, so the test touches nothing outside its own
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    loopback = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            **loopback,
            "gcs_server_port": _free_port(),
            "include_dashboard": False,
            "num_cpus": 0,
            "temp_dir": temp_dir,
        },
    )
    nodes = {
        "cpu": cluster.add_node(**loopback, num_cpus=2),
        "L4": cluster.add_node(**loopback, num_cpus=0, resources={"L4": 2}),
    }
    cluster.wait_for_nodes()
    ids = {name: node.node_id for name, node in nodes.items()}
    print(json.dumps({"address": cluster.address, "nodes": ids}), flush=True)
    try:
        for line in sys.stdin:
            command = line.split()
            if command[:1] == ["remove"] and command[1] in nodes:
                cluster.remove_node(nodes.pop(command[1]), allow_graceful=False)
                print(json.dumps({"removed": command[1]}), flush=True)
            elif command[:1] == ["quit"]:
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
