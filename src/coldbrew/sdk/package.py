"""Package a model directory into a deterministic tar: same files, same bytes, same hash."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

#: Directories never shipped: VCS data, virtualenvs, caches.
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        ".coldbrew",
    }
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def _files(directory: Path) -> list[Path]:
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part in EXCLUDED_DIRS for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(EXCLUDED_SUFFIXES):
            found.append(path)
    return found


def package(directory: Path) -> tuple[bytes, str]:
    """The directory as an uncompressed tar (weights rarely compress) and its sha256.

    Entries are sorted with zeroed times and owners, so an unchanged directory gives the same
    hash and the server creates no new version.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(directory):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(directory).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()
