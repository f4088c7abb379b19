"""digits: a scikit-learn classifier trained on scikit-learn's bundled 8x8 digits data."""

import coldbrew

app = coldbrew.App("digits")


@app.model(max_workers=2, idle_timeout_s=120, timeout_s=30)
class Digits:
    def setup(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        data = load_digits()
        self.model = LogisticRegression(max_iter=2000).fit(data.data, data.target)
        self.accuracy = float(self.model.score(data.data, data.target))
        print(f"trained on {len(data.target)} digits, training accuracy {self.accuracy:.3f}")

    def predict(self, pixels: list[float]) -> dict:
        if len(pixels) != 64:
            raise ValueError(f"pixels must hold 64 values (an 8x8 image, 0-16), got {len(pixels)}")
        probabilities = self.model.predict_proba([pixels])[0]
        digit = int(probabilities.argmax())
        return {"digit": digit, "confidence": round(float(probabilities[digit]), 4)}
