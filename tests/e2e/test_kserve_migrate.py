"""KServe model files and Open Inference Protocol clients as migrating users bring them:
BYTES and FP16 tensors with the binary extension, HTTP errors raised by the model, and a model
named by KServe's `--model_name` default.

The binary bodies are built here byte by byte as the protocol's binary tensor extension defines
them (what `InferInput.set_data_from_numpy(..., binary_data=True)` and `tritonclient[http]`
send): the JSON header, whose length is in `Inference-Header-Content-Length`, then each tensor's
bytes; a BYTES element is a 4-byte little-endian length and the raw bytes.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port
from tests.e2e.test_kserve import _kserve_python

pytestmark = pytest.mark.timeout(900)  # the first run may build .venv-kserve

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"  # the start of a PNG: not UTF-8


@pytest.fixture(scope="module")
def oip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        home=tmp_path_factory.mktemp("kserve-migrate") / "home",
        port=free_port(),
        python=_kserve_python(),
    )
    try:
        server.start(FIXTURES / "kserve_images", FIXTURES / "oip_arrays")
        yield server
    finally:
        server.stop()


def _binary_request(tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, str]:
    header = {
        "inputs": [
            {
                "name": name,
                "shape": shape,
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
            for name, datatype, shape, data in tensors
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(data for *_, data in tensors), str(len(head))


def _bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _infer(oip: Server, model: str, tensors: list[tuple[str, str, list[int], bytes]]) -> Any:
    body, length = _binary_request(tensors)
    with oip.http() as http:
        return http.post(
            f"/v2/models/{model}/infer",
            content=body,
            headers={
                "Inference-Header-Content-Length": length,
                "Content-Type": "application/octet-stream",
            },
        )


def test_the_model_is_served_under_kserves_default_name(oip: Server) -> None:
    """`ImageSizer(args.model_name)`: kserve.ModelServer serves it as `model`."""
    assert "deployed model v1" in oip.output
    with oip.http() as http:
        assert http.get("/v2/models/model/ready").json() == {"name": "model", "ready": True}


def test_bytes_reach_a_kserve_model_as_kserve_hands_them_over(oip: Server) -> None:
    """Base64 images as BYTES text: the model decodes them itself, as on KServe."""
    data = _bytes_elements(base64.b64encode(PNG), base64.b64encode(b"\x00\x01\x02\xff"))
    response = _infer(oip, "model", [("image", "BYTES", [2], data)])
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs == {"sizes": [len(PNG), 4], "png": [True, False]}


def test_bytes_that_are_not_utf8_are_refused_never_altered(oip: Server) -> None:
    """Raw image bytes cannot become the text a model gets: a 400 that names the input (KServe's
    own server refuses them too), where they used to reach the model with each bad byte
    replaced by U+FFFD."""
    response = _infer(oip, "model", [("image", "BYTES", [1], _bytes_elements(PNG))])
    assert response.status_code == 400
    assert "input 'image'" in response.json()["error"]
    assert "UTF-8" in response.json()["error"] and "base64" in response.json()["error"]


def test_fp16_sent_as_binary_reaches_a_kserve_model_as_fp16(oip: Server) -> None:
    half = np.array([[0.5, 1.5], [2.0, -3.0]], dtype="<f2")
    response = _infer(oip, "model", [("scale", "FP16", [2, 2], half.tobytes())])
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "scale_float16"
    assert output["data"] == [1.0, 3.0, 4.0, -6.0]
    assert output["shape"] == [2, 2]


def test_an_http_error_raised_by_the_model_keeps_its_status(oip: Server) -> None:
    response = _infer(oip, "model", [("image", "BYTES", [1], _bytes_elements(b""))])  # no image
    assert response.status_code == 404
    assert response.json() == {"detail": "image not found"}


def test_bytes_that_are_not_utf8_are_refused_for_a_coldbrew_model(oip: Server) -> None:
    """A coldbrew model takes BYTES as text too: other bytes are a 400 naming the input."""
    rows = np.ones((1, 2), dtype="<f8").tobytes()
    response = _infer(
        oip,
        "rows",
        [("x", "FP64", [1, 2], rows), ("tag", "BYTES", [1], _bytes_elements(PNG))],
    )
    assert response.status_code == 400
    assert "input 'tag'" in response.json()["error"]
    assert "UTF-8" in response.json()["error"]
    text = _infer(
        oip, "rows", [("x", "FP64", [1, 2], rows), ("tag", "BYTES", [1], _bytes_elements(b"ok"))]
    )
    assert text.status_code == 200, text.text
    assert {o["name"]: o["data"] for o in text.json()["outputs"]}["tag"] == ["ok"]


def test_tritonclient_sends_bytes_and_fp16_with_the_binary_extension(oip: Server) -> None:
    """The same through Triton's own HTTP client (skipped where it is not installed)."""
    python = _kserve_python()
    probe = subprocess.run([python, "-c", "import tritonclient.http"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("tritonclient[http] is not installed in .venv-kserve")
    script = Path(__file__).with_name("triton_client.py")
    done = subprocess.run(
        [python, str(script), f"127.0.0.1:{oip.port}", oip.key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["sizes"] == [len(PNG), 2]
    assert seen["half"] == [1.0, -3.0]
    assert str(seen["raw"][0]) == "400"
    assert "input 'image'" in seen["raw"][1]
