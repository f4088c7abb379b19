"""Which file of a RunPod worker repository the image runs, read from its `Dockerfile`.

RunPod's worker template builds an image that copies `src/` into the working directory and runs
`CMD python -u /handler.py`. coldbrew runs no image; it reads the Dockerfile to find the handler:
the first `.py` argument of the last `CMD` or `ENTRYPOINT`, as a path inside the image, mapped
back to the repository through the `COPY`/`ADD` lines and `WORKDIR`. Nothing is executed.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DOCKERFILE = "Dockerfile"


@dataclass
class _Image:
    """The parts of a Dockerfile that place files and start the process."""

    workdir: str = "/"
    copies: list[tuple[str, str]] = field(default_factory=list)  # (repo source, image dest)
    command: list[str] = field(default_factory=list)  # ENTRYPOINT then CMD words


def _lines(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops these inside a continuation too
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    out = []
    for line in joined:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")


def _substitute(text: str, variables: dict[str, str]) -> str:
    """`$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` as Docker expands them at build
    time in WORKDIR, COPY and ADD (an unknown name is empty)."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = variables.get(name, "")
        if match.group(2) == "-":
            return value or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if value else ""
        return value

    return _VARIABLE.sub(expand, text)


def _assignments(args: str, variables: dict[str, str]) -> None:
    """Record `ARG name=default`, `ENV k=v ...` and the old `ENV k v` form."""
    words = _words(args)
    if len(words) >= 2 and "=" not in words[0]:
        variables[words[0]] = _substitute(" ".join(words[1:]), variables)
        return
    for word in words:
        name, sep, value = word.partition("=")
        if sep:
            variables[name] = _substitute(value, variables)


def _words(args: str) -> list[str]:
    """Exec form (`["python", "x.py"]`) or shell form (`python x.py`)."""
    if args.startswith("["):
        try:
            words = json.loads(args)
        except json.JSONDecodeError:
            return []
        return [str(w) for w in words] if isinstance(words, list) else []
    try:
        return shlex.split(args)
    except ValueError:
        return args.split()


def _parse(text: str) -> _Image:
    image = _Image()
    entrypoint: list[str] = []
    cmd: list[str] = []
    variables: dict[str, str] = {}
    for instruction, raw_args in _lines(text):
        args = raw_args
        if instruction in ("WORKDIR", "COPY", "ADD"):
            args = _substitute(raw_args, variables)
        if instruction == "FROM":
            image = _Image()  # a later stage starts over: the last stage is the image that runs
            entrypoint, cmd, variables = [], [], {}
        elif instruction in ("ARG", "ENV"):
            _assignments(args, variables)
        elif instruction == "WORKDIR":
            image.workdir = posixpath.normpath(posixpath.join(image.workdir, args.strip('"')))
        elif instruction in ("COPY", "ADD"):
            words = [w for w in _words(args) if not w.startswith("--")]
            if len(words) >= 2 and "--from" not in args:
                last = words[-1]
                dest = posixpath.normpath(posixpath.join(image.workdir, last))
                is_dir = last.endswith("/") or last in (".", "..") or len(words) > 2
                dest += "/" if is_dir and dest != "/" else ""
                image.copies.extend((src, dest) for src in words[:-1])
        elif instruction == "ENTRYPOINT":
            entrypoint = _words(args)
        elif instruction == "CMD":
            cmd = _words(args)
    image.command = entrypoint + cmd
    return image


def _script(image: _Image) -> str | None:
    """The image path of the first `.py` argument of the command."""
    for word in image.command:
        for part in word.split():  # `sh -c "python -u /handler.py"` holds it inside one word
            if part.endswith(".py"):
                return posixpath.normpath(posixpath.join(image.workdir, part))
    return None


def _to_repo(directory: Path, inside: str, copies: list[tuple[str, str]]) -> Path | None:
    """The repository file that `COPY`/`ADD` placed at `inside` (the last copy wins)."""
    for src, dest in reversed(copies):
        source = (directory / src).resolve()
        if not source.exists() or not source.is_relative_to(directory.resolve()):
            continue
        dest_dir = dest.rstrip("/") or "/"
        if source.is_file():
            target = posixpath.join(dest_dir, source.name) if dest.endswith("/") else dest_dir
            if posixpath.normpath(target) == inside:
                return source
            continue
        rel = posixpath.relpath(inside, dest_dir)
        if not rel.startswith(".."):
            candidate = source / rel
            if candidate.is_file():
                return candidate
    return None


def handler_from_dockerfile(directory: Path) -> tuple[Path | None, str | None]:
    """(the repository file the image runs, or None; the path the Dockerfile names, or None)."""
    path = directory / DOCKERFILE
    if not path.is_file():
        return None, None
    image = _parse(path.read_text(encoding="utf-8", errors="replace"))
    inside = _script(image)
    if inside is None:
        return None, None
    found = _to_repo(directory, inside, image.copies)
    if found is None:  # not copied by a line we understand: the same path in the repository
        relative = directory / inside.lstrip("/")
        found = relative if relative.is_file() else None
    return found, inside
