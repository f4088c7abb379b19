"""The Open Inference Protocol (KServe v2) over coldbrew endpoints, and a kserve.Model file
deployed unmodified, checked with plain HTTP and with KServe's own REST client.

kserve 0.21 cannot share the dev environment (it pins psutil<6; runpod 1.12 needs psutil>=7.2.2),
so this module runs `coldbrew serve` and kserve's client from `.venv-kserve` (coldbrew plus the
`kserve` extra), which `make test` builds; the fixture builds it when missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
KSERVE_VENV = ROOT / ".venv-kserve"

pytestmark = pytest.mark.timeout(900)  # the first run may build .venv-kserve


def _kserve_python() -> str:
    python = KSERVE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import kserve, coldbrew"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[kserve]"], check=True)
    return str(python)


@pytest.fixture(scope="module")
def oip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        home=tmp_path_factory.mktemp("kserve") / "home", port=free_port(), python=_kserve_python()
    )
    try:
        server.start(FIXTURES / "oip_arrays", FIXTURES / "kserve_model")
        yield server
    finally:
        server.stop()


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_health_needs_no_key_and_metadata_describes_predict(oip: Server) -> None:
    with httpx.Client(base_url=oip.url, timeout=30) as anonymous:
        assert anonymous.get("/v2/health/live").json() == {"live": True}
        assert anonymous.get("/v2/health/ready").json() == {"ready": True}
        refused = anonymous.get("/v2/models/rows")
        assert refused.status_code == 401
        assert "no API key" in refused.json()["error"]
        assert anonymous.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    with oip.http() as http:
        assert http.get("/v2/models/rows/ready").json() == {"name": "rows", "ready": True}
        meta = http.get("/v2/models/rows").json()
        assert meta["name"] == "rows"
        assert meta["versions"] == ["1"]
        assert {"name": "x", "datatype": "FP64", "shape": [-1, -1]} in meta["inputs"]
        missing = http.get("/v2/models/missing")
        assert missing.status_code == 404
        assert set(missing.json()) == {"error"}
        assert "no endpoint 'missing'" in missing.json()["error"]
        assert http.get("/v2/models/missing/ready").status_code == 404


def test_infer_maps_tensors_to_arguments_and_back(oip: Server) -> None:
    request = {
        "id": "req-1",
        "inputs": [
            tensor("x", [2, 3], "FP32", [1, 2, 3, 4, 5, 6]),
            tensor("scale", [1], "FP64", [2]),
        ],
        "parameters": {"tag": "p"},
        "outputs": [{"name": "sums"}, {"name": "tag"}],
    }
    with oip.http() as http:
        answer = http.post("/v2/models/rows/infer", json=request)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_name"] == "rows"
        assert body["id"] == "req-1"
        assert body["outputs"] == [
            {"name": "sums", "shape": [2], "datatype": "FP64", "data": [12.0, 30.0]},
            {"name": "tag", "shape": [], "datatype": "BYTES", "data": ["p"]},
        ]
        job = http.get(f"/v2/rows/status/{body['parameters']['coldbrew_job_id']}").json()
        assert job["status"] == "COMPLETED"  # one job, through the same queue and metering
        assert job["output"]["count"] == 6


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"inputs": [tensor("x", [2, 3], "FP32", [1, 2])]}, 400, "holds 6 values, data has 2"),
        ({"inputs": [tensor("x", [1], "FP99", [1])]}, 400, "datatype 'FP99' is not one of"),
        ({"inputs": [tensor("y", [1, 1], "FP32", [1])]}, 400, "'x' is a required property"),
        ({"inputs": [tensor("x", [1, 1], "FP32", ["a"])]}, 400, "not a flat or nested list"),
        ({"inputs": "x"}, 400, "needs 'inputs'"),
        (
            {"inputs": [tensor("x", [1, 1], "FP32", [1])], "outputs": [{"name": "nope"}]},
            400,
            "'nope' is not among the outputs",
        ),
        (
            {"inputs": [tensor("x", [1, 1], "FP32", [1]), tensor("scale", [1], "FP32", [-1])]},
            500,
            "ValueError: scale must not be negative",
        ),
    ],
)
def test_bad_requests_get_a_clear_error(
    oip: Server, request_body: Any, status: int, message: str
) -> None:
    with oip.http() as http:
        answer = http.post("/v2/models/rows/infer", json=request_body)
    assert answer.status_code == status
    assert list(answer.json()) == ["error"]
    assert message in answer.json()["error"]


def test_unknown_model_is_404_and_an_endpoint_named_models_keeps_its_runpod_routes(
    oip: Server,
) -> None:
    with oip.http() as http:
        unknown = http.post("/v2/models/nope/infer", json={"inputs": []})
        assert unknown.status_code == 404
        assert "no endpoint 'nope'" in unknown.json()["error"]
        # "models" is an endpoint here: RunPod-style routes on it still answer
        ran = http.post("/v2/models/runsync", json={"input": {"value": 7}}).json()
        assert ran["output"] == {"value": 7}
        assert http.get(f"/v2/models/status/{ran['id']}").json()["status"] == "COMPLETED"
        assert http.get("/v2/models/health").json()["jobs"]["completed"] >= 1
        # and it is an OIP model too
        answer = http.post(
            "/v2/models/models/infer", json={"inputs": [tensor("value", [1], "INT64", [3])]}
        )
        assert answer.json()["outputs"] == [
            {"name": "value", "shape": [], "datatype": "INT64", "data": [3]}
        ]


def test_a_kserve_model_file_deploys_unmodified(oip: Server) -> None:
    with oip.http() as http:
        endpoint = http.get("/v1/endpoints/double").json()
        assert endpoint["spec"]["snapshot"] is False
        v1 = http.post("/v2/double/runsync", json={"input": {"instances": [[1, 2]]}}).json()
        assert v1["output"] == {"predictions": [[2.0, 4.0]], "model": "double"}  # postprocess ran
        v2 = http.post(
            "/v2/models/double/infer", json={"inputs": [tensor("in", [1, 3], "FP32", [1, 2, 3])]}
        ).json()
        assert v2["model_name"] == "double"
        assert v2["outputs"][0]["data"] == [2.0, 4.0, 6.0]


def test_kserves_own_rest_client(oip: Server) -> None:
    done = subprocess.run(
        [oip.python, str(Path(__file__).parent / "kserve_client.py"), oip.url, oip.key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["live"] is True
    assert seen["ready"] is True
    assert seen["double_ready"] is True
    assert seen["missing_ready"] is False
    assert seen["double"] == {"output-0": [[2.0, 4.0], [6.0, 8.0]]}
    assert seen["rows"]["sums"] == [3.0, 12.0]
    assert seen["rows"]["tag"] == ["from-kserve"]
    assert seen["binary"]["sums"] == [2.0, 2.0]  # binary tensor data, kserve's default
    status, body = seen["refused"]
    assert status == 400
    assert body == {"error": "FAILED: InvalidInput: negative values are not allowed"}
