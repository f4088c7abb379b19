"""Per-endpoint secrets: what may be set, and that each worker launch carries its own endpoint's
secrets from memory, with no store call per launch or per job."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from coldbrew.backends.base import ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.scheduler import Scheduler
from coldbrew.control.secrets import (
    MAX_SECRETS_PER_ACCOUNT,
    MAX_SECRETS_PER_ENDPOINT,
    MAX_VALUE_BYTES,
    EndpointSecrets,
    validate_changes,
)
from coldbrew.errors import InvalidRequest
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.sqlite import SQLiteStore

VALUE = "s3cr3t-value-do-not-echo"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({}, "JSON object", id="empty"),
        pytest.param(["A"], "JSON object", id="not-an-object"),
        pytest.param({"1ABC": VALUE}, "not a secret name", id="leading-digit"),
        pytest.param({"A-B": VALUE}, "not a secret name", id="dash"),
        pytest.param({"A" * 129: VALUE}, "not a secret name", id="too-long-name"),
        pytest.param({"LD_PRELOAD": VALUE}, "reserved", id="loader"),
        pytest.param({"PYTHONPATH": VALUE}, "reserved", id="python"),
        pytest.param({"COLDBREW_WORKER_ID": VALUE}, "reserved", id="platform"),
        pytest.param({"RUNPOD_AI_API_KEY": VALUE}, "reserved", id="runpod"),
        pytest.param({"PATH": VALUE}, "reserved", id="path"),
        pytest.param({"A": 5}, "must be a string", id="number"),
        pytest.param({"A": VALUE + "\x00"}, "NUL", id="nul"),
        pytest.param({"A": "x" * (MAX_VALUE_BYTES + 1)}, "longer than", id="too-long-value"),
    ],
)
def test_bad_secrets_are_refused_without_echoing_the_value(body: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate_changes(body)
    assert message in refused.value.message
    assert VALUE not in refused.value.message + refused.value.hint


def test_a_patch_sets_and_removes() -> None:
    assert validate_changes({"HF_TOKEN": "v", "OLD": None, "_x9": ""}) == {
        "HF_TOKEN": "v",
        "OLD": None,
        "_x9": "",
    }


def test_an_endpoint_holds_a_bounded_number_of_secrets() -> None:
    store = SQLiteStore(":memory:")
    secrets = EndpointSecrets(store, FakeClock())
    many = {f"S{i}": "v" for i in range(MAX_SECRETS_PER_ENDPOINT)}
    asyncio.run(secrets.change("a", "e", many))
    with pytest.raises(InvalidRequest, match="at most"):
        asyncio.run(secrets.change("a", "e", {"ONE_MORE": "v"}))
    asyncio.run(secrets.change("a", "e", {"S0": None, "ONE_MORE": "v"}))  # a swap fits
    assert len(secrets.env("a", "e")) == MAX_SECRETS_PER_ENDPOINT


def test_an_account_holds_a_bounded_number_of_secrets() -> None:
    store = SQLiteStore(":memory:")
    secrets = EndpointSecrets(store, FakeClock())
    per_endpoint = {f"S{i}": "v" for i in range(MAX_SECRETS_PER_ENDPOINT)}
    for n in range(MAX_SECRETS_PER_ACCOUNT // MAX_SECRETS_PER_ENDPOINT):
        asyncio.run(secrets.change("a", f"e{n}", per_endpoint))
    with pytest.raises(InvalidRequest, match="over all its endpoints"):
        asyncio.run(secrets.change("a", "one-more", {"S": "v"}))
    asyncio.run(secrets.change("b", "one-more", {"S": "v"}))  # another account's are its own
    asyncio.run(secrets.change("a", "e0", {"S0": "rotated"}))  # a rotation always fits
    asyncio.run(secrets.change("a", "e0", {"S0": None}))
    asyncio.run(secrets.change("a", "one-more", {"S": "v"}))


class RecordingBackend:
    """Starts nothing; remembers each launch."""

    def __init__(self) -> None:
        self.launches: list[WorkerLaunch] = []

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        self.launches.append(launch)
        raise OSError("not starting workers in a unit test")

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        self.launches.extend(launches)

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        return [ColdPath.SPAWN for _ in launches]

    async def close(self) -> None:
        return None


class CountingStore(SQLiteStore):
    def __init__(self) -> None:
        super().__init__(":memory:")
        self.secret_reads = 0

    async def all_secrets(self) -> dict[tuple[str, str], dict[str, str]]:
        self.secret_reads += 1
        return await super().all_secrets()

    async def secret_names(self, account: str, endpoint: str) -> Any:
        self.secret_reads += 1
        return await super().secret_names(account, endpoint)


def _job(account: str, endpoint: str, endpoint_id: int, version_id: int, now: float) -> Job:
    return Job(
        id=str(uuid.uuid4()),
        account=account,
        endpoint_id=endpoint_id,
        endpoint=endpoint,
        version_id=version_id,
        status=JobStatus.IN_QUEUE,
        input={},
        created_at=now,
        expires_at=now + 60,
        timeout_s=10,
        max_attempts=1,
    )


async def _launches(tmp_path: Path) -> tuple[list[WorkerLaunch], int]:
    clock = FakeClock()
    store = CountingStore()
    secrets = EndpointSecrets(store, clock)
    backend = RecordingBackend()
    settings = Settings(home=tmp_path, hardware_slots={"cpu": 4}, setup_backoff_s=100.0)
    scheduler = Scheduler(store, backend, clock, settings, endpoint_env=secrets.env)
    await secrets.change("a", "chat", {"TOKEN": VALUE})
    await secrets.change("b", "chat", {"TOKEN": "b's own"})
    await store.set_secrets("a", "other", {"TOKEN": "set behind the cache's back"}, 0.0)
    await secrets.load()
    store.secret_reads = 0
    for account, endpoint in (("a", "chat"), ("a", "other"), ("b", "chat"), ("a", "plain")):
        await store.create_account(account, "whsec_x", clock.time())
        version, _ = await store.add_version(
            account, endpoint, f"sha-{endpoint}", "app", "M", {}, {}, clock.time()
        )
        for _ in range(3):
            await store.create_job(
                _job(account, endpoint, version.endpoint_id, version.id, clock.time())
            )
    await scheduler.refresh_endpoints()
    for _ in range(5):
        await scheduler.tick()
        for _ in range(5):
            await asyncio.sleep(0)
    await store.close()
    return backend.launches, store.secret_reads


def test_each_launch_carries_its_own_endpoints_secrets_from_memory(tmp_path: Path) -> None:
    launches, store_reads = asyncio.run(_launches(tmp_path))
    envs: dict[tuple[str, str], list[dict[str, str]]] = {}
    for launch in launches:  # artifacts/<account>/sha-<endpoint>
        where = (launch.artifact_dir.parent.name, launch.artifact_dir.name.removeprefix("sha-"))
        envs.setdefault(where, []).append(launch.env)
        assert VALUE not in repr(launch)  # never in a log line that prints the launch
    assert set(envs) == {("a", "chat"), ("a", "other"), ("b", "chat"), ("a", "plain")}
    assert all(env == {"TOKEN": VALUE} for env in envs[("a", "chat")])
    assert all(env == {"TOKEN": "b's own"} for env in envs[("b", "chat")])
    assert all(env == {"TOKEN": "set behind the cache's back"} for env in envs[("a", "other")])
    assert all(env == {} for env in envs[("a", "plain")])
    assert store_reads == 0  # no store call per launch or per job
