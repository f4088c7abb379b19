"""schemathesis against a real gateway's OpenAPI document: no request may get a 5xx.

The document is the account's (`/v1/openapi.json`), so the RunPod routes of the deployed
endpoint (`/v2/fuzz/run`, `/v2/fuzz/runsync`) come with its real input schema, next to every
management, Replicate and Open Inference Protocol route. The budget is bounded and the run is
deterministic (hypothesis derandomized, no example database): valid and invalid requests,
EXAMPLES_PER_OPERATION per operation (about 1,000 requests in all, under a minute here).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, free_port

EXAMPLES_PER_OPERATION = 25

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(home=tmp_path_factory.mktemp("fuzz") / "home", port=free_port())
    try:
        srv.start(FIXTURES / "fuzz", COLDBREW_RUNSYNC_WAIT_MS="2000")
        yield srv
    finally:
        srv.stop(signal.SIGKILL if srv.process and srv.process.poll() is None else 0)


@pytest.fixture
def api_schema(fuzz_server: Server) -> schemathesis.BaseSchema:
    auth = {"Authorization": f"Bearer {fuzz_server.key}"}
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/v1/openapi.json", headers=auth)


def _fuzz(operation: schemathesis.APIOperation, server: Server) -> None:
    """Up to EXAMPLES_PER_OPERATION requests to one operation; raises on the first failure."""
    headers = {"Authorization": f"Bearer {server.key}"}

    # the deployed endpoint's name in most paths, or nearly every request is a plain 404;
    # DELETEs keep random names so that the endpoint survives the run
    fixed = {
        name: "fuzz"
        for name in ("endpoint", "name")
        if "{" + name + "}" in operation.path and operation.method.upper() != "DELETE"
    }
    valid = operation.as_strategy(path_parameters=fixed or None)
    invalid = operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed or None)

    @given(case=valid | invalid)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same requests on every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a bounded budget
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=server.url,
            headers=headers,
            timeout=30,
            checks=[not_a_server_error, response_schema_conformance],
        )

    run()


@pytest.mark.timeout(900)
def test_no_request_gets_a_server_error(
    api_schema: schemathesis.BaseSchema, fuzz_server: Server
) -> None:
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        try:
            _fuzz(operation, fuzz_server)
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
    assert len(operations) > 40
    assert not failures, "\n\n".join(failures)


def test_the_document_includes_the_runpod_routes(api_schema: schemathesis.BaseSchema) -> None:
    paths = {result.ok().path for result in api_schema.get_all_operations()}
    assert {"/v2/fuzz/run", "/v2/fuzz/runsync", "/v2/{endpoint}/status/{job_id}"} <= paths
