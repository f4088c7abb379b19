"""$COLDBREW_HOME is private: 0600 files and 0700 directories, older homes tightened at start."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldbrew.home import private_tar_filter, secure_home, tighten


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def restore_umask() -> Iterator[None]:
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def test_a_new_home_is_0700_and_what_is_created_after_is_private(
    tmp_path: Path, restore_umask: None
) -> None:
    os.umask(0o022)
    home = tmp_path / "home"
    secure_home(home)
    assert _mode(home) == 0o700
    (home / "logs").mkdir()
    (home / "logs" / "a.log").write_text("x")
    assert _mode(home / "logs") == 0o700 and _mode(home / "logs" / "a.log") == 0o600


def test_an_old_home_loses_group_and_other_access_but_keeps_owner_bits(
    tmp_path: Path, restore_umask: None
) -> None:
    os.umask(0o022)
    home = tmp_path / "home"
    (home / "artifacts" / "acme").mkdir(parents=True)
    (home / "artifacts" / "acme" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(home / "artifacts" / "acme" / "run.sh", 0o755)
    (home / "coldbrew.db").write_text("")
    os.chmod(home / "coldbrew.db", 0o666)
    outside = tmp_path / "outside"
    outside.write_text("not coldbrew's")
    os.chmod(outside, 0o644)
    (home / "link").symlink_to(outside)
    secure_home(home)
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            assert _mode(path) & 0o066 == 0, path
    assert _mode(home / "coldbrew.db") == 0o600
    assert _mode(home / "artifacts" / "acme" / "run.sh") == 0o711  # still executable for its owner
    assert _mode(outside) == 0o644  # a link is not followed out of the home
    assert tighten(home) == 0  # nothing left to change


def test_uploaded_tars_unpack_readable_by_their_owner_only(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("app.py", 0o644), ("run.sh", 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 2, mode
            tar.addfile(info, io.BytesIO(b"x\n"))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        tar.extractall(tmp_path / "tree", filter=private_tar_filter)
    assert _mode(tmp_path / "tree" / "app.py") == 0o600
    assert _mode(tmp_path / "tree" / "run.sh") == 0o700


def test_a_private_directory_is_not_descended_into(tmp_path: Path, restore_umask: None) -> None:
    os.umask(0o022)
    home = tmp_path / "home"
    (home / "closed").mkdir(parents=True)
    (home / "closed" / "inner.txt").write_text("x")
    os.chmod(home / "closed", 0o700)
    (home / "traversable").mkdir()
    (home / "traversable" / "inner.txt").write_text("x")
    os.chmod(home / "traversable", 0o711)  # as a sandbox grants an account's uid
    tighten(home)
    assert _mode(home / "closed" / "inner.txt") == 0o644  # unreachable: left as it was
    assert _mode(home / "traversable") == 0o711
    assert _mode(home / "traversable" / "inner.txt") == 0o600
