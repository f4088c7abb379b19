"""Unpacking an uploaded artifact tar within limits: size, file count and compression ratio.

Every member's declared size is added up from the headers before anything is written, so a tar
bomb (a megabyte that unpacks to a gigabyte) is refused having written nothing. The work is plain
blocking file I/O and decompression: callers run `unpack` in a thread, off the event loop.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from coldbrew.config import Settings
from coldbrew.errors import InvalidRequest, PayloadTooLarge
from coldbrew.home import private_tar_filter

MB = 1 << 20
#: Below this, the ratio is not checked: a few small compressed files may compress well.
_RATIO_FLOOR_BYTES = 1 * MB


def _hint(field: str) -> str:
    return f"raise it with COLDBREW_{field.upper()} (or `{field}` in config.toml)"


@dataclass(frozen=True)
class UnpackLimits:
    """What one artifact may unpack to."""

    max_bytes: int
    max_files: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UnpackLimits:
        return cls(
            max_bytes=int(settings.artifact_unpacked_max_mb * MB),
            max_files=settings.artifact_max_files,
            max_ratio=settings.artifact_max_ratio,
        )


def _check(limits: UnpackLimits, files: int, total: int, packed: int) -> None:
    if files > limits.max_files:
        raise PayloadTooLarge(
            f"the artifact has more than {limits.max_files} files",
            hint="leave caches and data out of the model directory, or "
            + _hint("artifact_max_files"),
            setting="artifact_max_files",
        )
    if total > limits.max_bytes:
        raise PayloadTooLarge(
            f"the artifact unpacks to more than {limits.max_bytes / MB:g} MB",
            hint=_hint("artifact_unpacked_max_mb"),
            setting="artifact_unpacked_max_mb",
        )
    if total > _RATIO_FLOOR_BYTES and total > limits.max_ratio * max(packed, 1):
        raise PayloadTooLarge(
            f"the artifact unpacks to more than {limits.max_ratio:g} times its "
            f"{packed / MB:.3g} MB upload (a compression bomb?)",
            hint="upload an uncompressed tar (coldbrew deploy does), or "
            + _hint("artifact_max_ratio"),
            setting="artifact_max_ratio",
        )


def unpack(tar_path: Path, target: Path, limits: UnpackLimits) -> None:
    """Extract `tar_path` into `target` (created), refusing as soon as a limit would pass.

    Errors name no server path: the message goes back to the client.
    """
    packed = tar_path.stat().st_size
    files = total = 0
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:  # headers first: nothing is written until every size passed
                files += 1
                total += max(member.size, 0)
                _check(limits, files, total, packed)
            if files:
                tar.extractall(target, filter=private_tar_filter)
    except tarfile.TarError as exc:
        raise InvalidRequest(
            f"the upload is not a valid tar archive ({type(exc).__name__}: {exc})",
            hint="upload the tar `coldbrew deploy` makes",
        ) from None
    except OSError as exc:
        raise InvalidRequest(
            f"the upload could not be unpacked: {exc.strerror or type(exc).__name__}",
            hint="upload the tar `coldbrew deploy` makes",
        ) from None
    if files == 0:
        raise InvalidRequest(
            "the upload is an empty tar archive",
            hint="deploy a directory that holds a model file (see examples/)",
        )
