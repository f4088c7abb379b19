"""The bundled examples, deployed as `make run` deploys them, called as the banner says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES
from tests.e2e.conftest import Server

ZERO = [
    0,
    0,
    5,
    13,
    9,
    1,
    0,
    0,
    0,
    0,
    13,
    15,
    10,
    15,
    5,
    0,
    0,
    3,
    15,
    2,
    0,
    11,
    8,
    0,
    0,
    4,
    12,
    0,
    0,
    8,
    8,
    0,
    0,
    5,
    8,
    0,
    0,
    9,
    8,
    0,
    0,
    4,
    11,
    0,
    1,
    12,
    7,
    0,
    0,
    2,
    14,
    5,
    10,
    12,
    0,
    0,
    0,
    0,
    6,
    13,
    10,
    0,
    0,
    0,
]


@pytest.fixture(scope="module", autouse=True)
def mlp_weights() -> None:
    if not (EXAMPLES / "mlp" / "weights.safetensors").exists():
        subprocess.run([sys.executable, str(EXAMPLES / "mlp" / "make_weights.py")], check=True)


@pytest.mark.slow
def test_every_example_answers_and_the_printed_curl_line_works(server: Server) -> None:
    names = ["echo", "digits", "mlp", "embeddings", "chat"]
    banner = server.start(*(EXAMPLES / n for n in names))
    curl = next(line.strip() for line in banner.splitlines() if line.strip().startswith("curl"))
    printed = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120)
    answer = json.loads(printed.stdout)
    assert answer["status"] == "COMPLETED" and answer["output"] == {"message": "hello"}

    with server.http() as http:

        def run(name: str, payload: dict[str, object]) -> dict[str, object]:
            body = http.post(f"/v2/{name}/runsync", json={"input": payload}).json()
            assert body["status"] == "COMPLETED", body
            output: dict[str, object] = body["output"]
            return output

        assert run("echo", {"a": [1, 2]}) == {"a": [1, 2]}
        assert run("digits", {"pixels": ZERO})["digit"] == 0
        mlp = run("mlp", {"seed": 1})
        assert isinstance(mlp["sum"], float) and len(mlp["head"]) == 3  # type: ignore[arg-type]
        assert run("mlp", {"seed": 1}) == mlp  # deterministic from the seed
        embedded = run("embeddings", {"sentences": ["a cat", "a kitten", "tax law"]})
        assert embedded["dim"] == 384
        cat, kitten, tax = embedded["embeddings"]  # type: ignore[misc]
        dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
        assert dot(cat, kitten) > dot(cat, tax)

        run("chat", {"session_id": "tour", "message": "my name is Ada"})
        assert run("chat", {"session_id": "tour", "message": "what is my name?"}) == {
            "reply": "Your name is Ada.",
            "turn": 2,
            "session_id": "tour",
        }

        short = http.post("/v2/digits/runsync", json={"input": {"pixels": [1, 2]}})
        assert short.status_code == 400 and "64" in short.json()["error"]["message"]
        timed = http.post(
            "/v2/echo/runsync", json={"input": {"sleep_s": 5}, "policy": {"executionTimeout": 200}}
        ).json()
        assert timed["status"] == "TIMED_OUT"
        failed = http.post("/v2/echo/runsync", json={"input": {"fail": "on purpose"}}).json()
        assert failed["status"] == "FAILED" and failed["error"] == "on purpose"
