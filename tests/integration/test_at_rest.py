"""What a node leaves on disk: private modes (0600/0700) for everything under $COLDBREW_HOME, and
secrets sealed — including homes written by an older coldbrew, which are upgraded on start."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest

from coldbrew.api.app import create_app
from coldbrew.crypto import is_sealed
from coldbrew.errors import SecretUnreadable
from coldbrew.platform import Platform, hash_key
from coldbrew.store.sqlite import SQLiteStore
from tests.conftest import FIXTURES
from tests.integration.conftest import make_settings, running

pytestmark = pytest.mark.anyio


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def test_everything_a_node_writes_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a typical shell's: the server must not rely on it
    try:
        async with running(tmp_path, FIXTURES / "toys") as cb:
            job = await cb.runsync("toy", {"say": "hello"})
            assert job["status"] == "COMPLETED"
            upload = await cb.http.post(
                "/v1/files", files={"content": ("a.txt", b"abc", "text/plain")}
            )
            assert upload.status_code == 201
            await cb.platform.scheduler.write_back()
            modes = {  # while it runs: the database's -wal and -shm exist
                p.relative_to(tmp_path).as_posix(): (_mode(p), p.is_dir())
                for p in tmp_path.rglob("*")
                if not p.is_symlink()
            }
    finally:
        os.umask(old_umask)
    for name in (
        "coldbrew.db",
        "coldbrew.db-wal",
        "coldbrew.db-shm",
        "admin.key",
        "secrets.key",
        "files/.signing-key",
    ):
        assert modes[name] == (0o600, False), name
    assert _mode(tmp_path) == 0o700
    for kind in ("logs/workers/", "artifacts/default/", "files/"):
        assert any(name.startswith(kind) for name in modes), kind  # so the loop checks it
    for name, (mode, is_dir) in modes.items():
        assert mode & 0o077 == 0, (name, oct(mode))
        if not name.startswith("artifacts/"):  # unpacked files keep their owner's x bit
            assert mode == (0o700 if is_dir else 0o600), (name, oct(mode))


async def test_a_home_from_before_encryption_at_rest_is_sealed_and_tightened(
    tmp_path: Path,
) -> None:
    # a 0.1 home: plaintext webhook secret and signing key, everything world-readable
    old_umask = os.umask(0o022)
    try:
        old = SQLiteStore(tmp_path / "coldbrew.db")
        await old.create_account("default", "whsec_b2xkLXNlY3JldC1mcm9tLTAuMQ==", 1.0)
        await old.add_key(hash_key("cb_old-admin-key"), "default", True, 1.0)
        await old.close()
        (tmp_path / "files").mkdir()
        (tmp_path / "files" / ".signing-key").write_text("ab" * 32)
        (tmp_path / "admin.key").write_text("cb_old-admin-key\n")
        for path in (tmp_path, *tmp_path.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

        platform = Platform.create(make_settings(tmp_path))
        assert await platform.start() is None  # not a new home: no new admin key
    finally:
        os.umask(old_umask)
    app = create_app(platform, manage_lifecycle=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://coldbrew.test",
            headers={"Authorization": "Bearer cb_old-admin-key"},
        ) as http:
            account = (await http.get("/v1/account")).json()
            assert account["webhookSecret"] == "whsec_b2xkLXNlY3JldC1mcm9tLTAuMQ=="
            listed = await http.get("/v1/files")  # the file routes load the signing key
            assert listed.status_code == 200
    finally:
        await platform.stop()

    with sqlite3.connect(tmp_path / "coldbrew.db") as conn:
        (stored,) = conn.execute("SELECT webhook_secret FROM accounts").fetchone()
    assert is_sealed(stored) and "whsec_" not in stored
    signing = (tmp_path / "files" / ".signing-key").read_text().strip()
    assert is_sealed(signing) and "ab" * 32 not in signing
    assert platform.sealer.file_secret(tmp_path / "files" / ".signing-key", "file-signing key") == (
        "ab" * 32
    )
    for path in (tmp_path, *tmp_path.rglob("*")):
        assert _mode(path) & 0o066 == 0, (path, oct(_mode(path)))


async def test_a_lost_key_file_is_refused_before_a_new_one_is_made(tmp_path: Path) -> None:
    # a new key would not open the sealed values either; it would only be left behind, and a
    # later start would read it as the real one
    async with running(tmp_path):
        pass
    key_file = tmp_path / "secrets.key"
    key_file.unlink()
    with pytest.raises(SecretUnreadable) as refused:
        Platform.create(make_settings(tmp_path))
    assert not key_file.exists()
    assert "secrets.key" in refused.value.message
    assert "restore" in refused.value.hint

    fresh = tmp_path / "fresh"  # an empty home still gets its key made
    await Platform.create(make_settings(fresh)).store.close()
    assert (fresh / "secrets.key").exists()
