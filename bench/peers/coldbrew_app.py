"""coldbrew side of `bench/throughput.py`: one workload of `workloads.py` as one endpoint.

The benchmark copies this file (as app.py), workloads.py and a `workload.json` naming the
workload into a directory and deploys it with `coldbrew serve --deploy`. One worker, one job at
a time per worker (batched workloads: batches of up to 32 jobs, 5 ms window), like the peers.
"""

import json
from pathlib import Path
from typing import Any

from workloads import MLP, Embeddings, Noop

import coldbrew

HERE = Path(__file__).parent
CONF = json.loads((HERE / "workload.json").read_text())
WEIGHTS = str(HERE / "weights.safetensors")
OPTIONS: dict[str, Any] = {
    "name": CONF["name"],
    "max_workers": CONF.get("max_workers", 1),
    "idle_timeout_s": CONF.get("idle_timeout_s", 60),
    "timeout_s": 120,
}
BATCH = coldbrew.Batch(max_size=32, max_wait_ms=5)

app = coldbrew.App("throughput")


class NoopModel:
    def setup(self) -> None:
        self.model = Noop()
        self.model.setup()

    def predict(self, **payload: Any) -> dict:
        return self.model.predict(payload)


class MLPModel:
    def setup(self) -> None:
        self.model = MLP(WEIGHTS)
        self.model.setup()

    def predict(self, seed: int) -> dict:
        return self.model.predict(seed)


class MLPBatched:
    def setup(self) -> None:
        self.model = MLP(WEIGHTS)
        self.model.setup()

    def predict(self, seed: list[int]) -> list[dict]:
        return self.model.predict_batch(seed)


class EmbeddingsBatched:
    def setup(self) -> None:
        self.model = Embeddings()
        self.model.setup()

    def predict(self, sentence: list[str]) -> list[list[float]]:
        return self.model.predict_batch(sentence)


if CONF["kind"] == "noop":
    app.model(**OPTIONS)(NoopModel)
elif CONF["kind"] == "mlp":
    app.model(**OPTIONS)(MLPModel)
elif CONF["kind"] == "mlp_batched":
    app.model(**OPTIONS, batch=BATCH)(MLPBatched)
else:
    app.model(**OPTIONS, batch=BATCH)(EmbeddingsBatched)
