"""What a model directory asks to have installed, read the way users already write it.

Three places are read, and what they list is combined: `requirements.txt`, a `pyproject.toml`'s
`[project] dependencies`, and a Cog `cog.yaml`'s `build.python_packages` and
`build.python_requirements` (a file, usually `requirements.txt`). Only requirement specifiers
are taken: options (`-r`, `--index-url`, `-e`) and local paths or `file:` URLs are refused, since
the environment is built by the server and must not read the server's own files.

The PyTorch trap is checked here, before anything is resolved: an unpinned `torch` (or a range)
makes uv pick the newest release, a CUDA build of several GB; only an exact pin can take the
CPU wheel that lies on the machine's disk (`Environments` passes pip's `find-links` to uv).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldbrew.errors import SpecError

REQUIREMENTS_FILE = "requirements.txt"
PYPROJECT_FILE = "pyproject.toml"
COG_FILE = "cog.yaml"
#: The pin that takes the CPU wheel on this machine's disk.
TORCH_PIN = "torch==2.13.0"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: One exact version (`torch==2.13.0`), never a range or a wildcard (`==2.*`).
_EXACT = re.compile(
    r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*===?\s*[0-9][^,;\s*]*\s*(;.*)?$"
)


@dataclass(frozen=True)
class Requirements:
    """The requirement lines of a directory and the files they came from."""

    lines: tuple[str, ...]
    files: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.lines)


def normalized_name(line: str) -> str | None:
    """The PEP 503 name a requirement line asks for (`Torch_Vision` → `torch-vision`)."""
    match = _NAME.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def _file_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [s for raw in text.splitlines() if (s := raw.split(" #", 1)[0].split("#", 1)[0].strip())]


def _pyproject(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{PYPROJECT_FILE} is not valid TOML: {exc}") from None
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SpecError(
            f"{PYPROJECT_FILE}: [project] dependencies must be a list of strings",
            hint='[project]\ndependencies = ["six==1.17.0"]',
        )
    return [d.strip() for d in deps if d.strip()]


def _cog(directory: Path) -> list[str]:
    """`build.python_packages` and the lines of `build.python_requirements`."""
    import yaml

    try:
        config: Any = yaml.safe_load((directory / COG_FILE).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return []  # the Cog adapter reports a broken cog.yaml with its own message
    build = config.get("build") if isinstance(config, dict) else None
    if not isinstance(build, dict):
        return []
    lines = [str(p).strip() for p in build.get("python_packages") or [] if str(p).strip()]
    named = build.get("python_requirements")
    if isinstance(named, str) and named:
        path = (directory / named).resolve()
        if not path.is_relative_to(directory.resolve()) or not path.is_file():
            raise SpecError(
                f"{COG_FILE}: python_requirements {named!r} is not a file in the directory",
                hint="name a requirements file inside the model directory",
            )
        lines += _file_lines(path)
    return lines


def _check_line(line: str, source: str) -> None:
    lowered = line.lower()
    if line.startswith(("-", ".", "/", "~")) or "file:" in lowered or normalized_name(line) is None:
        raise SpecError(
            f"{source}: {line!r} is not a package requirement",
            hint="list packages from PyPI (name and version specifier, e.g. six==1.17.0); "
            "options, local paths and file: URLs are not taken",
        )


def check_torch(lines: tuple[str, ...]) -> None:
    """Refuse `torch` unless it is pinned to one version: the newest release is a CUDA build of
    several GB, which no deploy should download by accident."""
    for line in lines:
        if normalized_name(line) == "torch" and not _EXACT.match(line):
            raise SpecError(
                f"the requirements ask for {line!r}: an unpinned torch (or a range) makes the "
                "resolver take the newest release, a CUDA build of several GB",
                hint=f"pin it to one version: {TORCH_PIN} takes the CPU wheel on this "
                "machine's disk",
            )


def read_requirements(directory: Path) -> Requirements:
    """Everything the directory asks to have installed, checked; empty when it asks nothing."""
    lines: list[str] = []
    found: list[tuple[str, list[str]]] = []
    if (directory / REQUIREMENTS_FILE).is_file():
        found.append((REQUIREMENTS_FILE, _file_lines(directory / REQUIREMENTS_FILE)))
    if (directory / PYPROJECT_FILE).is_file():
        found.append((PYPROJECT_FILE, _pyproject(directory / PYPROJECT_FILE)))
    if (directory / COG_FILE).is_file():
        found.append((COG_FILE, _cog(directory)))
    for source, source_lines in found:
        for line in source_lines:
            _check_line(line, source)
            if line not in lines:
                lines.append(line)
    check_torch(tuple(lines))
    return Requirements(tuple(lines), tuple(source for source, got in found if got))


def check_resolved_torch(pinned: str, lines: tuple[str, ...]) -> None:
    """A package that needs torch pulls it in even when the requirements never name it: refuse
    that before anything is downloaded, with the pin that takes the local CPU wheel."""
    if any(normalized_name(line) == "torch" for line in lines):
        return
    for line in pinned.splitlines():
        if normalized_name(line) == "torch":
            raise SpecError(
                f"the requirements pull in {line.strip()} through another package: an "
                "unpinned torch is the newest release, a CUDA build of several GB",
                hint=f"add {TORCH_PIN} to the requirements (the CPU wheel on this disk)",
            )
