"""Encryption at rest: the key file, sealing bound to a context, and sealing plaintext in place."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coldbrew.crypto import SEALED_PREFIX, Sealer, is_sealed
from coldbrew.errors import SecretUnreadable


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_sealed_value_opens_only_in_its_own_context() -> None:
    sealer = Sealer.generate()
    token = sealer.seal("hunter2", "secret A of endpoint acme/chat")
    assert is_sealed(token) and "hunter2" not in token
    assert sealer.open(token, "secret A of endpoint acme/chat") == "hunter2"
    with pytest.raises(SecretUnreadable) as moved:  # copied into another row: does not open
        sealer.open(token, "secret A of endpoint other/chat")
    assert "hunter2" not in str(moved.value) and "other/chat" in moved.value.message


def test_sealing_twice_gives_different_ciphertexts() -> None:
    sealer = Sealer.generate()
    assert sealer.seal("same", "c") != sealer.seal("same", "c")


def test_another_key_does_not_open_a_value_and_says_which_key_file(tmp_path: Path) -> None:
    token = Sealer.from_file(tmp_path / "a.key").seal("value-123", "webhook secret")
    other = Sealer.from_file(tmp_path / "b.key")
    with pytest.raises(SecretUnreadable) as failed:
        other.open(token, "webhook secret")
    assert str(tmp_path / "b.key") in failed.value.message
    assert "restore" in failed.value.hint
    assert "value-123" not in failed.value.message + failed.value.hint


def test_the_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secrets.key"
    token = Sealer.from_file(path).seal("x", "c")
    assert _mode(path) == 0o600
    assert Sealer.from_file(path).open(token, "c") == "x"


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    Sealer.from_file(path)
    os.chmod(path, 0o644)
    Sealer.from_file(path)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("content", ["not base64!", "c2hvcnQ="], ids=["garbage", "short"])
def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secrets.key"
    path.write_text(content)
    with pytest.raises(SecretUnreadable) as failed:
        Sealer.from_file(path)
    assert str(path) in failed.value.message and failed.value.hint


def test_a_file_secret_is_made_sealed_and_plaintext_ones_are_sealed_in_place(
    tmp_path: Path,
) -> None:
    sealer = Sealer.from_file(tmp_path / "secrets.key")
    fresh = tmp_path / "fresh"
    made = sealer.file_secret(fresh, "file-signing key")
    assert len(made) == 64 and made not in fresh.read_text()
    assert fresh.read_text().startswith(SEALED_PREFIX) and _mode(fresh) == 0o600
    assert sealer.file_secret(fresh, "file-signing key") == made  # stable across restarts

    old = tmp_path / "old"
    old.write_text("ab" * 32)  # as coldbrew 0.1 left it
    assert sealer.file_secret(old, "file-signing key") == "ab" * 32
    assert "ab" * 32 not in old.read_text() and is_sealed(old.read_text().strip())
    assert _mode(old) == 0o600
    assert sealer.file_secret(old, "file-signing key") == "ab" * 32
