"""What bulk map stands on, with real workers: `POST /v1/jobs/lookup`, `Idempotency-Key` on
`/v2/{endpoint}/run`, and the map engine resuming a journal."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from coldbrew.clock import FakeClock
from coldbrew.sdk.bulk import TRANSIENT_TRIES, Mapper, run_map
from coldbrew.sdk.errors import APIError
from coldbrew.sdk.journal import InputError, Journal
from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def jobs_of(cb: Running, endpoint: str) -> int:
    counts = (await cb.http.get(f"/v2/{endpoint}/health")).json()["jobs"]
    return int(counts["completed"] + counts["failed"] + counts["inProgress"] + counts["inQueue"])


async def other_account(cb: Running) -> dict[str, str]:
    created = await cb.http.post("/v1/keys", json={"account": "acme"})
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def test_lookup_answers_each_job_as_its_status_route_does(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        done = await cb.runsync("toy", {"value": 1})
        failed = await cb.runsync("toy", {"crash": "boom"})
        queued = await cb.run("toy", {"value": 2, "sleep_s": 5})

        response = await cb.http.post(
            "/v1/jobs/lookup", json={"ids": [failed["id"], "nope", done["id"], queued]}
        )

        assert response.status_code == 200
        body = response.json()
        assert [j["id"] for j in body["jobs"]] == [failed["id"], done["id"], queued]
        assert body["notFound"] == ["nope"]
        for job in body["jobs"][:2]:
            status = (await cb.http.get(f"/v2/toy/status/{job['id']}")).json()
            assert job == status
        assert body["jobs"][1]["output"]["value"] == 1
        assert body["jobs"][0]["error"] == "boom"
        assert body["jobs"][2]["status"] in ("IN_QUEUE", "IN_PROGRESS")


async def test_lookup_never_shows_another_accounts_jobs(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        mine = await cb.runsync("toy", {"value": "secret"})
        acme = await other_account(cb)
        response = await cb.http.post("/v1/jobs/lookup", json={"ids": [mine["id"]]}, headers=acme)
        assert response.json() == {"jobs": [], "notFound": [mine["id"]]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'ids' must be a list of job ids"),
        ({"ids": "abc"}, "'ids' must be a list of job ids"),
        ({"ids": [1, 2]}, "'ids' must be a list of job ids"),
        ({"ids": [str(i) for i in range(1001)]}, "at most 1000 ids per lookup, got 1001"),
    ],
)
async def test_a_bad_lookup_is_refused(tmp_path: Path, body: Any, message: str) -> None:
    async with running(tmp_path, TOYS) as cb:
        response = await cb.http.post("/v1/jobs/lookup", json=body)
        assert response.status_code == 400
        assert message in response.json()["error"]["message"]


async def test_a_repeated_idempotency_key_gets_the_first_job_back(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        key = {"Idempotency-Key": "map-1-0-0"}
        body = {"input": {"value": 7}}
        first = await cb.http.post("/v2/other/run", json=body, headers=key)
        done = await cb.wait_job(first.json()["id"])
        again = await cb.http.post("/v2/other/run", json=body, headers=key)

        assert first.status_code == again.status_code == 200
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == {"id": first.json()["id"], "status": "COMPLETED"}
        assert done["output"] == {"value": 7}
        assert await jobs_of(cb, "other") == 1

        plain = await cb.http.post("/v2/other/run", json=body)
        assert plain.json()["id"] != first.json()["id"]
        assert await jobs_of(cb, "other") == 2


async def test_an_idempotency_key_reused_for_another_request_is_a_conflict(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, TOYS) as cb:
        key = {"Idempotency-Key": "k-1"}
        first = await cb.http.post("/v2/other/run", json={"input": {"value": 1}}, headers=key)
        other_input = await cb.http.post("/v2/other/run", json={"input": {"value": 2}}, headers=key)
        other_endpoint = await cb.http.post(
            "/v2/toy/run", json={"input": {"value": 1}}, headers=key
        )
        for response in (other_input, other_endpoint):
            assert response.status_code == 409
            error = response.json()["error"]
            assert error["message"] == (
                f"Idempotency-Key 'k-1' was already used for another request "
                f"(job {first.json()['id']} on endpoint 'other')"
            )
            assert error["hint"] == "use a new key for a new request"
        assert await jobs_of(cb, "other") + await jobs_of(cb, "toy") == 1


async def test_idempotency_keys_are_per_account_and_must_be_printable(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        acme = await other_account(cb)
        key = {"Idempotency-Key": "shared"}
        mine = await cb.http.post("/v2/other/run", json={"input": {}}, headers=key)
        theirs = await cb.http.post("/v2/other/run", json={"input": {}}, headers={**acme, **key})
        assert mine.status_code == 200
        assert theirs.status_code == 404  # acme has no endpoint 'other': nothing leaks

        for bad in ("", "x" * 256, "tab\there"):
            response = await cb.http.post(
                "/v2/other/run", json={"input": {}}, headers={"Idempotency-Key": bad}
            )
            assert response.status_code == 400, bad
            assert "Idempotency-Key must be 1 to 255 printable ASCII" in response.text
        assert await jobs_of(cb, "other") == 1


async def test_a_map_returns_results_in_input_order_failures_included(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        inputs = [{"value": i, "crash": "boom" if i % 7 == 3 else None} for i in range(40)]
        seen: list[Any] = []

        results = await run_map(cb.http, "toy", inputs, max_in_flight=5, on_progress=seen.append)

        assert [r["index"] for r in results] == list(range(40))
        for i, result in enumerate(results):
            if i % 7 == 3:
                assert (result["status"], result["error"]) == ("FAILED", "boom")
                assert result["errorDetail"]["type"] == "RuntimeError"
            else:
                assert result["status"] == "COMPLETED"
                assert result["output"]["value"] == i
        assert len({r["id"] for r in results}) == 40
        assert max(p.in_flight for p in seen) <= 5
        assert (seen[-1].done, seen[-1].failed, seen[-1].finished) == (40, 6, True)
        assert await jobs_of(cb, "toy") == 40


async def test_a_job_whose_id_never_reached_the_journal_is_not_submitted_again(
    tmp_path: Path,
) -> None:
    """The client died between the server's answer and the journal write: the resumed map
    submits the same idempotency key and gets that job back."""
    async with running(tmp_path, TOYS) as cb:
        inputs = [{"value": i} for i in range(6)]
        path = tmp_path / "out.jsonl.partial"
        journal = Journal.open(path, "toy", inputs)

        async def submit(index: int) -> str:
            headers = {"Idempotency-Key": journal.key(index)}
            response = await cb.http.post(
                "/v2/toy/run", json={"input": inputs[index]}, headers=headers
            )
            job_id: str = response.json()["id"]
            return job_id

        journal.submitted(0, await submit(0))  # journaled
        lost = await submit(1)  # accepted by the server, never journaled
        journal.close()

        results = await run_map(cb.http, "toy", inputs, journal_path=path)

        assert results[1]["id"] == lost
        assert [r["output"]["value"] for r in results] == list(range(6))
        assert await jobs_of(cb, "toy") == 6


async def test_a_finished_map_resumed_from_its_journal_submits_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        inputs = [{"value": i} for i in range(5)]
        path = tmp_path / "j"
        first = await run_map(cb.http, "toy", inputs, journal_path=path)
        again = await run_map(cb.http, "toy", inputs, journal_path=path)
        assert again == first
        assert await jobs_of(cb, "toy") == 5


async def test_retry_failed_runs_only_the_failed_inputs_again(tmp_path: Path) -> None:
    # sandbox off: the toy leaves its once-marker in the test's directory
    async with running(tmp_path, TOYS, sandbox="off") as cb:
        marker = str(tmp_path / "crashed-once")
        inputs = [{"value": 0}, {"value": 1, "crash": "flaky", "once_marker": marker}]
        path = tmp_path / "j"
        first = await run_map(cb.http, "toy", inputs, journal_path=path)
        seen: list[Any] = []
        kept = await run_map(cb.http, "toy", inputs, journal_path=path, on_progress=seen.append)
        retried = await run_map(
            cb.http, "toy", inputs, journal_path=path, retry_failed=True, on_progress=seen.append
        )

        assert (
            [r["status"] for r in first] == [r["status"] for r in kept] == ["COMPLETED", "FAILED"]
        )
        assert [r["status"] for r in retried] == ["COMPLETED", "COMPLETED"]
        assert retried[0] == first[0]
        assert retried[1]["id"] != first[1]["id"]
        kept_report, retried_report = seen[0], seen[-1]
        assert (kept_report.done, kept_report.failed, kept_report.resumed) == (2, 1, 2)
        assert (retried_report.done, retried_report.failed, retried_report.resumed) == (2, 0, 1)
        assert await jobs_of(cb, "toy") == 3


async def test_inputs_the_endpoint_refuses_submit_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        path = tmp_path / "j"
        with pytest.raises(InputError) as refused:
            await run_map(
                cb.http, "other", [{"value": 1}, {"value": "x"}, {"nope": 1}], journal_path=path
            )
        assert [where for where, _ in refused.value.problems] == ["input 1", "input 2"]
        assert refused.value.hint == "endpoint 'other' takes: value (integer)"
        assert await jobs_of(cb, "other") == 0
        assert not path.exists()

        with pytest.raises(APIError) as missing:
            await run_map(cb.http, "nosuch", [{}], journal_path=path)
        assert missing.value.status_code == 404
        assert not path.exists()


async def test_a_map_against_no_server_gives_up_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        clock = FakeClock()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            journal = Journal.open(None, "toy", [{}])
            mapper = Mapper(http, journal, [{}], clock=clock)
            with pytest.raises(APIError) as unreachable:
                await mapper.run()
    assert unreachable.value.error_type == "unreachable"
    assert "run the same map again to resume" in unreachable.value.hint
    # it backed off between its tries: 0.25 s doubling, at most 5 s
    assert TRANSIENT_TRIES == 8
    assert clock.monotonic() == 0.25 + 0.5 + 1 + 2 + 4 + 5 + 5
