"""digits: a scikit-learn classifier trained on scikit-learn's bundled 8x8 digits data."""

from typing import Annotated

from pydantic import Field

import coldbrew

app = coldbrew.App("digits")

Pixels = Annotated[list[Annotated[float, Field(ge=0, le=16)]], Field(min_length=64, max_length=64)]


@app.model(max_workers=2, idle_timeout_s=120, timeout_s=30)
class Digits:
    def setup(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        data = load_digits()
        self.model = LogisticRegression(max_iter=1000).fit(data.data / 16, data.target)
        accuracy = self.model.score(data.data / 16, data.target)
        print(f"trained on {len(data.target)} digits, training accuracy {accuracy:.3f}")

    def predict(self, pixels: Pixels) -> dict:
        """An 8x8 image as 64 values from 0 (white) to 16 (black), row by row."""
        probabilities = self.model.predict_proba([[p / 16 for p in pixels]])[0]
        digit = int(probabilities.argmax())
        return {"digit": digit, "confidence": round(float(probabilities[digit]), 4)}
