"""Packaging a model directory: same files give the same bytes and hash; junk is left out."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from coldbrew.sdk.package import package


def _write(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    _write(root, "app.py", "import coldbrew\n")
    _write(root, "weights/head.bin", "0123")
    _write(root, "requirements.txt", "numpy\n")
    return root


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {info.name: info for info in tar.getmembers()}


def test_same_directory_twice_gives_the_same_bytes(model_dir: Path) -> None:
    first = package(model_dir)
    assert package(model_dir) == first


def test_sha_is_the_sha256_of_the_tar(model_dir: Path) -> None:
    data, sha = package(model_dir)
    assert sha == hashlib.sha256(data).hexdigest()
    assert len(sha) == 64


def test_touching_files_keeps_the_sha(model_dir: Path) -> None:
    _, before = package(model_dir)
    for path in model_dir.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    _, after = package(model_dir)
    assert after == before


def test_a_copy_elsewhere_has_the_same_sha(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(model_dir, copy)
    assert package(copy)[1] == package(model_dir)[1]


def test_changing_content_changes_the_sha(model_dir: Path) -> None:
    _, before = package(model_dir)
    (model_dir / "weights" / "head.bin").write_text("0124")
    assert package(model_dir)[1] != before


def test_adding_a_file_changes_the_sha(model_dir: Path) -> None:
    _, before = package(model_dir)
    _write(model_dir, "README.md")
    assert package(model_dir)[1] != before


def test_read_permissions_do_not_change_the_sha(model_dir: Path) -> None:
    _, before = package(model_dir)
    (model_dir / "app.py").chmod(0o600)
    assert package(model_dir)[1] == before


def test_executable_bit_is_kept(model_dir: Path) -> None:
    _, before = package(model_dir)
    _write(model_dir, "run.sh", "#!/bin/sh\n").chmod(0o700)
    data, after = package(model_dir)
    members = _members(data)
    assert members["run.sh"].mode == 0o755
    assert members["app.py"].mode == 0o644
    assert after != before


def test_tar_holds_the_files_with_zeroed_times_and_owners(model_dir: Path) -> None:
    data, _ = package(model_dir)
    members = _members(data)
    assert sorted(members) == ["app.py", "requirements.txt", "weights/head.bin"]
    for info in members.values():
        assert info.isfile()
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile("weights/head.bin")
        assert extracted is not None
        assert extracted.read() == b"0123"


@pytest.mark.parametrize(
    "junk",
    [
        ".git/config",
        ".git/objects/ab/cdef",
        ".venv/lib/python3.11/site.py",
        "venv/bin/python",
        "__pycache__/app.cpython-311.pyc",
        "weights/__pycache__/x.cpython-311.pyc",
        "app.pyc",
        "lib/old.pyo",
        ".mypy_cache/3.11/app.meta.json",
        ".pytest_cache/v/cache/lastfailed",
        "node_modules/left-pad/index.js",
        ".coldbrew/admin.key",
    ],
)
def test_junk_is_excluded_and_does_not_change_the_sha(model_dir: Path, junk: str) -> None:
    _, before = package(model_dir)
    _write(model_dir, junk)
    data, after = package(model_dir)
    assert after == before
    assert junk not in _members(data)


def test_dot_files_that_are_not_junk_are_kept(model_dir: Path) -> None:
    _write(model_dir, ".env.example", "KEY=\n")
    _write(model_dir, "config/.settings.toml", "a = 1\n")
    names = _members(package(model_dir)[0])
    assert ".env.example" in names
    assert "config/.settings.toml" in names


def test_empty_directory_packages_to_an_empty_tar(tmp_path: Path) -> None:
    data, sha = package(tmp_path)
    assert _members(data) == {}
    assert package(tmp_path)[1] == sha
