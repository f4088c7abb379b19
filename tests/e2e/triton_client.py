"""Drives coldbrew with Triton's `tritonclient[http]`, a second Open Inference Protocol client;
runs in .venv-kserve, prints one JSON object.

Usage: python triton_client.py HOST:PORT API_KEY
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


def _input(name: str, array: np.ndarray, datatype: str) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)  # the client's default
    return tensor


def main(url: str, key: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(url=url)
    headers = {"Authorization": f"Bearer {key}"}
    seen: dict[str, Any] = {}
    images = np.array([base64.b64encode(PNG), base64.b64encode(b"\x00\xff")], dtype=np.object_)
    result = client.infer("model", [_input("image", images, "BYTES")], headers=headers)
    seen["sizes"] = result.as_numpy("sizes").tolist()
    half = np.array([0.5, -1.5], dtype=np.float16)
    result = client.infer("model", [_input("scale", half, "FP16")], headers=headers)
    seen["half"] = result.as_numpy("scale_float16").tolist()
    raw = np.array([PNG], dtype=np.object_)
    try:
        client.infer("model", [_input("image", raw, "BYTES")], headers=headers)
    except InferenceServerException as exc:
        seen["raw"] = [exc.status(), exc.message()]
    client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
