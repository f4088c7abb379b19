"""What happens when user code fails: exceptions, crashes, timeouts, broken setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def test_an_exception_in_predict_fails_the_job_with_its_traceback(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        result = await cb.runsync("toy", {"crash": "bad pixel"})
        assert result["status"] == "FAILED"
        assert result["error"] == "bad pixel"
        assert result["errorDetail"]["type"] == "RuntimeError"
        assert "Traceback" in result["errorDetail"]["traceback"]
        assert result["attempts"] == 1  # user errors are not retried
        assert (await cb.runsync("toy", {"value": 5}))["output"]["value"] == 5


@pytest.mark.parametrize(
    ("crash", "described"),
    [("exit", "exited with status 3"), ("segv", "killed by SIGSEGV")],
)
async def test_a_worker_that_always_dies_fails_the_job_after_its_retries(
    tmp_path: Path, crash: str, described: str
) -> None:
    async with running(tmp_path, TOYS) as cb:
        result = await cb.runsync("toy", {"crash": crash})
        assert result["status"] == "FAILED"
        assert result["errorDetail"]["type"] == "worker_crashed"
        assert described in result["error"]
        assert result["attempts"] == 2  # retries=1: two attempts, then FAILED
        assert (await cb.runsync("toy", {"value": "still serving"}))["status"] == "COMPLETED"


async def test_a_job_whose_worker_died_once_is_retried_on_a_new_worker(tmp_path: Path) -> None:
    # sandbox off: the toy leaves its once-marker in the test's directory
    async with running(tmp_path, TOYS, sandbox="off") as cb:
        marker = tmp_path / "crashed-once"
        result = await cb.runsync("toy", {"crash": "exit", "once_marker": str(marker), "value": 7})
        assert marker.exists()
        assert result["status"] == "COMPLETED"
        assert result["output"]["value"] == 7
        assert result["attempts"] == 2


async def test_a_job_past_its_timeout_ends_timed_out_and_its_worker_is_replaced(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, TOYS) as cb:
        slow = await cb.runsync("toy", {"sleep_s": 30}, policy={"executionTimeout": 300})
        assert slow["status"] == "TIMED_OUT"
        assert "timeout of 0.3 s" in slow["error"]
        assert slow["errorDetail"]["type"] == "timed_out"
        after = await cb.runsync("toy", {"value": 1})
        assert after["status"] == "COMPLETED"
        assert after["workerId"] != slow["workerId"]
        assert after["coldStart"] is True


async def test_a_failing_setup_fails_waiting_jobs_with_its_traceback_and_backs_off(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, FIXTURES / "broken", TOYS) as cb:
        first = await cb.runsync("broken", {})
        assert first["status"] == "FAILED"
        assert first["errorDetail"]["type"] == "setup_failed"
        assert "weights file missing" in first["error"]
        assert "OSError" in first["errorDetail"]["traceback"]
        backoff = cb.platform.scheduler.fleet.backoff[first_version(cb)]
        assert backoff[1] >= 0.2  # the next try waits
        assert (await cb.runsync("toy", {"value": 1}))["status"] == "COMPLETED"


def first_version(cb: object) -> int:
    scheduler = cb.platform.scheduler  # type: ignore[attr-defined]
    (vid,) = [v for v, (ver, _) in scheduler.fleet.versions.items() if ver.endpoint == "broken"]
    return int(vid)
