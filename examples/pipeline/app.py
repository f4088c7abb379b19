"""moods: a four-stage pipeline over four small models on two hardware classes, in the shape of
image → emotion → recommendation → notification.

- `glyph` (cpu): the digits classifier (scikit-learn, bundled data) reads an 8x8 drawing.
- `emotion` (cpu): a rule stage turns the digit and the classifier's confidence into a mood.
- `recommend` (L4): ranks a small catalogue by cosine similarity between tiny mood and item
  vectors (numpy); on its own hardware class, so it scales and is billed apart.
- `notify` (cpu): formats the message.

The pipeline is declared next to the models and deployed with them:
`coldbrew deploy examples/pipeline`, then `POST /v2/moods/runsync {"input": {...}}`.
"""

from typing import Annotated

from pydantic import Field

import coldbrew

app = coldbrew.App("moods")

Pixels = Annotated[list[Annotated[float, Field(ge=0, le=16)]], Field(min_length=64, max_length=64)]

#: Each digit's mood, read as a tiny drawing's feeling (a stand-in for an emotion model).
MOODS = [
    "calm",
    "proud",
    "playful",
    "curious",
    "bold",
    "cheerful",
    "cosy",
    "lucky",
    "dreamy",
    "wise",
]
#: Unit-less feature axes: energy, warmth, focus.
MOOD_VECTORS = {
    "calm": (0.1, 0.6, 0.5),
    "proud": (0.7, 0.4, 0.6),
    "playful": (0.9, 0.7, 0.1),
    "curious": (0.5, 0.3, 0.9),
    "bold": (1.0, 0.2, 0.5),
    "cheerful": (0.8, 0.9, 0.2),
    "cosy": (0.1, 1.0, 0.2),
    "lucky": (0.6, 0.8, 0.4),
    "dreamy": (0.2, 0.7, 0.1),
    "wise": (0.2, 0.4, 1.0),
    "unsure": (0.4, 0.5, 0.5),
}
CATALOGUE = {
    "a walk by the river": (0.3, 0.6, 0.3),
    "a board game night": (0.7, 0.8, 0.4),
    "a chess puzzle": (0.3, 0.2, 1.0),
    "a spicy ramen bowl": (0.9, 0.6, 0.1),
    "a blanket and a novel": (0.0, 1.0, 0.4),
    "a climbing session": (1.0, 0.3, 0.6),
    "a documentary": (0.3, 0.4, 0.9),
    "a karaoke evening": (1.0, 0.9, 0.0),
}


@app.model(name="glyph", hardware="cpu", max_workers=2, idle_timeout_s=120, timeout_s=30)
class Glyph:
    def setup(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        data = load_digits()
        self.model = LogisticRegression(max_iter=1000).fit(data.data / 16, data.target)

    def predict(self, pixels: Pixels) -> dict:
        """An 8x8 drawing as 64 values from 0 (white) to 16 (black), row by row."""
        probabilities = self.model.predict_proba([[p / 16 for p in pixels]])[0]
        digit = int(probabilities.argmax())
        return {"digit": digit, "confidence": round(float(probabilities[digit]), 4)}


@app.model(name="emotion", hardware="cpu", max_workers=2, idle_timeout_s=120)
class Emotion:
    def predict(self, digit: int, confidence: float) -> dict:
        mood = MOODS[digit] if confidence >= 0.5 else "unsure"
        return {"emotion": mood, "intensity": round(confidence, 2)}


@app.model(name="recommend", hardware="L4", max_workers=1, idle_timeout_s=120)
class Recommend:
    def setup(self) -> None:
        import numpy as np

        self.np = np
        self.names = list(CATALOGUE)
        items = np.array([CATALOGUE[n] for n in self.names], dtype=np.float32)
        self.items = items / np.linalg.norm(items, axis=1, keepdims=True)

    def predict(self, emotion: str, top_k: int = 2) -> dict:
        mood = self.np.array(MOOD_VECTORS.get(emotion, MOOD_VECTORS["unsure"]), dtype="float32")
        scores = self.items @ (mood / self.np.linalg.norm(mood))
        best = scores.argsort()[::-1][:top_k]
        return {"emotion": emotion, "items": [self.names[i] for i in best]}


@app.model(name="notify", hardware="cpu", max_workers=2, idle_timeout_s=120)
class Notify:
    def predict(self, user: str, emotion: str, items: list[str]) -> dict:
        picks = " or ".join(items)
        return {"to": user, "text": f"Hi {user}, your drawing looks {emotion}. How about {picks}?"}


moods = app.pipeline("moods", description="drawing → mood → ideas → message")
moods.task("see", "glyph", input={"pixels": "$input.pixels"})
moods.task("feel", "emotion")
moods.task("suggest", "recommend", input={"emotion": "$.emotion", "top_k": 2})
moods.task(
    "tell",
    "notify",
    input={"user": "$input.user", "emotion": "$.emotion", "items": "$.items"},
)
