"""The PostgreSQL store beyond the shared contract: gateways starting at once, secrets sealed at
rest, a lost server, retention that leaves no bloat, and a start-up that says what to fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from coldbrew.config import Settings
from coldbrew.crypto import Sealer
from coldbrew.errors import SecretUnreadable, StorageUnavailable
from coldbrew.store import pg_queue
from coldbrew.store.factory import open_postgres, open_store
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.postgres import PARTS, PostgresStore
from tests import postgres

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def database() -> AsyncIterator[str]:
    url = postgres.create_database("cb_pgstore")
    yield url
    postgres.drop_database(url)


@pytest.fixture
async def schema(database: str) -> AsyncIterator[str]:
    name = await postgres.create_schema(database)
    yield name
    await postgres.drop_schema(database, name)


async def test_gateways_starting_at_once_migrate_once(database: str, schema: str) -> None:
    stores = await asyncio.gather(
        *(PostgresStore.connect(database, schema=schema, pool_max=1) for _ in range(4))
    )
    try:
        await stores[0].create_account("acme", "whsec", 1.0)
        assert [await s.count_accounts() for s in stores] == [1, 1, 1, 1]
    finally:
        for store in stores:
            await store.close()
    conn = await asyncpg.connect(database, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT part, version FROM schema_versions ORDER BY part")
    finally:
        await conn.close()
    assert {r[0]: r[1] for r in rows} == {p.name: p.version for p in PARTS}


async def test_secrets_are_sealed_at_rest_and_open_only_with_the_key(
    database: str, schema: str, tmp_path: Path
) -> None:
    sealer = Sealer.from_file(tmp_path / "secrets.key")
    store = await PostgresStore.connect(database, sealer, schema=schema, pool_max=1)
    try:
        await store.create_account("acme", "whsec_plain", 1.0)
        await store.set_secrets("acme", "echo", {"TOKEN": "s3cret"}, 1.0)
        raw = await store._all(
            "SELECT webhook_secret FROM accounts UNION ALL SELECT value FROM endpoint_secrets"
        )
        assert all("whsec_plain" not in r[0] and "s3cret" not in r[0] for r in raw)
    finally:
        await store.close()

    again = await PostgresStore.connect(database, sealer, schema=schema, pool_max=1)
    try:
        assert (await again.get_account("acme")).webhook_secret == "whsec_plain"  # type: ignore[union-attr]
        assert await again.all_secrets() == {("acme", "echo"): {"TOKEN": "s3cret"}}
    finally:
        await again.close()
    other = Sealer.from_file(tmp_path / "other.key")
    with pytest.raises(SecretUnreadable):  # a replaced key fails the start, not a webhook
        await PostgresStore.connect(database, other, schema=schema, pool_max=1)


class Proxy:
    """A loopback TCP proxy to the PostgreSQL server that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every forwarded connection: the server is gone."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_lost_server_is_a_storage_fault_until_a_probe_succeeds(
    database: str, schema: str
) -> None:
    proxy = Proxy(("127.0.0.1", 5432))
    await proxy.start()
    url = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    if url == database:
        pytest.skip("the proxy knows only the default server address")
    store = await PostgresStore.connect(url, schema=schema, pool_max=1, timeout_s=2.0)
    try:
        await proxy.cut()
        with pytest.raises(StorageUnavailable):
            await store.count_accounts()
        assert store.fault is not None and "PostgreSQL" in store.fault
        with pytest.raises(StorageUnavailable):
            await store.probe(1.0)  # still gone
        await proxy.start()  # the server is back, on the same port
        await store.probe(2.0)
        assert store.fault is None
        assert await store.count_accounts() == 0
    finally:
        await store.close()
        await proxy.cut()


async def test_a_large_purge_vacuums_what_it_emptied(database: str, schema: str) -> None:
    store = await PostgresStore.connect(postgres.fast(database), schema=schema, pool_max=1)
    try:
        await store.create_account("acme", "whsec", 1.0)
        version, _ = await store.add_version("acme", "echo", "sha", "app", "E", {}, {}, 1.0)
        jobs = [
            Job(
                f"j{i}",
                "acme",
                version.endpoint_id,
                "echo",
                version.id,
                JobStatus.COMPLETED,
                {"n": i},
                created_at=1.0,
                expires_at=5.0,
                timeout_s=1.0,
                max_attempts=1,
            )
            for i in range(pg_queue.PURGE_BATCH + pg_queue.VACUUM_AFTER)
        ]
        await store.save_jobs(jobs)
        assert await store.purge_expired(10.0) == len(jobs)
        vacuumed = await store._value(
            "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'jobs' AND schemaname = $1",
            schema,
        )
        assert vacuumed is True
        assert await store.account_jobs("acme", 10) == []
    finally:
        await store.close()


async def test_an_unreachable_database_fails_the_start_with_the_fix() -> None:
    with pytest.raises(StorageUnavailable) as caught:
        await open_postgres("postgresql://postgres@127.0.0.1:1/nowhere", None)
    assert "cannot open the PostgreSQL database postgresql://postgres@127.0.0.1:1/nowhere" in (
        caught.value.message
    )
    assert "check that the server is running" in caught.value.hint


async def test_the_password_is_not_shown(database: str) -> None:
    url = database.replace("postgres@", "postgres:hunter2@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StorageUnavailable) as caught:
        await open_postgres(url, None)
    assert "hunter2" not in caught.value.message and ":***@" in caught.value.message


async def test_open_store_picks_postgres_from_the_url(database: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=database)
    store = await open_store(settings, Sealer.from_file(tmp_path / "k"))
    try:
        assert isinstance(store, PostgresStore)
    finally:
        await store.close()


def test_a_url_that_is_not_postgres_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a PostgreSQL URL"):
        Settings(database_url="mysql://root@localhost/db")


def test_the_embedded_default_never_imports_asyncpg() -> None:
    code = (
        "import sys, coldbrew.platform, coldbrew.cli.main, coldbrew.store.factory; "
        "assert 'asyncpg' not in sys.modules, 'asyncpg imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
