"""`$COLDBREW_HOME` is private: it holds keys, every account's jobs, uploads and model code.

The server runs with umask 077, so everything it and the workers it starts create there is 0600
(files) or 0700 (directories) from the first byte — the database and its `-wal`/`-shm` files,
`admin.key`, uploads, logs, artifacts. At start it also tightens what an older version left
readable. Tightening removes read and write for group and others but keeps execute bits: a
directory someone made traversable on purpose (0711, for a sandbox user that owns an artifact
below it) stays traversable, and nothing in the home can be listed or read by another user.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
from pathlib import Path

log = logging.getLogger("coldbrew.home")

PRIVATE_UMASK = 0o077
_GROUP_OTHER_RW = 0o066


def secure_home(home: Path) -> None:
    """Create `home` (0700) under umask 077 for this process, and tighten what is in it."""
    os.umask(PRIVATE_UMASK)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = tighten(home)
    if changed:
        log.warning(
            "made %d entries under %s private (no group/other read or write)", changed, home
        )


def tighten(root: Path) -> int:
    """Drop group/other read and write from `root` and everything below it; symlinks are not
    followed. Returns how many entries changed. Entries the server may not change (another
    user's) are left alone.

    A directory that was already closed to group and others is not descended into: nobody else
    can reach what is inside, and a home tightened once costs a look at its top level only.
    """
    changed = 0
    for directory, dirs, files in os.walk(root):
        if Path(directory) == root:
            changed += _tighten_one(root)[0]
        kept = []
        for name in dirs:
            done, was_open = _tighten_one(Path(directory) / name)
            changed += done
            if was_open:
                kept.append(name)
        dirs[:] = kept
        changed += sum(_tighten_one(Path(directory) / name)[0] for name in files)
    return changed


def _tighten_one(path: Path) -> tuple[bool, bool]:
    """(whether the mode changed, whether group or others had any access before)."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return False, False
        if mode & _GROUP_OTHER_RW:
            os.chmod(path, stat.S_IMODE(mode) & ~_GROUP_OTHER_RW)
            return True, True
    except OSError:
        return False, False
    return False, bool(mode & 0o077)


def private_tar_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, and files only their owner can read: an uploaded model's files
    keep their owner bits (executable stays executable) and lose everything for others."""
    filtered = tarfile.data_filter(member, dest_path)
    if filtered is not None and filtered.mode is not None:
        filtered = filtered.replace(mode=filtered.mode & 0o700, deep=False)
    return filtered
