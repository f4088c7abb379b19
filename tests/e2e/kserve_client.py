"""Drives coldbrew with KServe's own REST client; runs in .venv-kserve, prints one JSON object.

Usage: python kserve_client.py URL API_KEY
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = False) -> InferInput:
    tensor = InferInput(name=name, shape=list(array.shape), datatype=datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


async def main(url: str, key: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    headers = {"Authorization": f"Bearer {key}"}
    seen: dict[str, Any] = {
        "live": await client.is_server_live(url, headers=headers),
        "ready": await client.is_server_ready(url, headers=headers),
        "double_ready": await client.is_model_ready(url, "double", headers=headers),
        "missing_ready": await client.is_model_ready(url, "missing", headers=headers),
    }
    pixels = _input("in", np.array([[1, 2], [3, 4]], dtype=np.float32), "FP32")
    doubled = await client.infer(
        url, InferRequest("double", [pixels]), model_name="double", headers=headers
    )
    seen["double"] = {o.name: o.as_numpy().tolist() for o in doubled.outputs}
    rows = _input("x", np.arange(6, dtype=np.float32).reshape(2, 3), "FP32")
    summed = await client.infer(
        url,
        InferRequest("rows", [rows], parameters={"tag": "from-kserve"}),
        model_name="rows",
        headers=headers,
    )
    seen["rows"] = {o.name: o.data for o in summed.outputs}
    packed = _input("x", np.ones((2, 2), dtype=np.float32), "FP32", binary=True)  # kserve's default
    binary = await client.infer(
        url, InferRequest("rows", [packed]), model_name="rows", headers=headers
    )
    seen["binary"] = {o.name: o.data for o in binary.outputs}
    negative = _input("in", np.array([[-1.0]], dtype=np.float32), "FP32")
    try:
        await client.infer(
            url, InferRequest("double", [negative]), model_name="double", headers=headers
        )
    except httpx.HTTPStatusError as exc:
        seen["refused"] = [exc.response.status_code, exc.response.json()]
    await client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
