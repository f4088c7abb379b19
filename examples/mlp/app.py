"""mlp: one matrix-vector product over float32 weights loaded from a safetensors file."""

from pathlib import Path

import coldbrew

app = coldbrew.App("mlp")

WEIGHTS = Path(__file__).with_name("weights.safetensors")


@app.model(max_workers=2, idle_timeout_s=120, timeout_s=30)
class MLP:
    def setup(self) -> None:
        if not WEIGHTS.exists():
            raise FileNotFoundError(f"{WEIGHTS} is missing; run `python make_weights.py` first")
        # Memory-mapped, not copied: every worker reads the same page-cache pages.
        self.weight = coldbrew.load_safetensors(WEIGHTS)["weight"]
        print(f"mapped weights {self.weight.shape} ({self.weight.nbytes / 1e6:.0f} MB)")

    def predict(self, seed: int) -> dict:
        import numpy as np

        x = np.random.default_rng(seed).standard_normal(self.weight.shape[0], dtype=np.float32)
        y = x @ self.weight
        return {"sum": float(y.sum()), "head": [float(v) for v in y[:3]]}
