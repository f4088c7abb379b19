"""Per-version Python environments, built with uv and shared by every version that resolves to
the same set of packages.

An environment lives in `$COLDBREW_HOME/envs/<key>/`, a venv without system site-packages, where
`key` is a hash of the Python version and the resolved, pinned package list (uv's
`pip compile` output): two versions asking for the same packages, however they wrote them, get
one environment. Packages are hard-linked from uv's cache (`envs/uv-cache`, on the same disk),
so a second environment with the same wheels costs links, not copies.

coldbrew's own runtime is not installed into it: processes run the environment's interpreter
with `-S` (no site-packages yet) and `PYTHONPATH` set to `envs/<key>/coldbrew-path`, which holds
only a symlink to the running coldbrew package. The runtime enters the sandbox first and only
then activates site-packages (`sandbox/enter.py`), so no `.pth` file of a user's package runs
outside the sandbox. What the runtime imports (orjson; pydantic for the deploy's inspection;
threadpoolctl) is resolved into the environment with the user's requirements, so it never
imports anything of the server's virtualenv.

Each deployed artifact records the environment it was built for (`envs/artifacts/<account>/
<sha>`), which is how a backend finds a launch's interpreter; versions record the key in their
`source`, which is how `collect` knows which environments are still used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import coldbrew
from coldbrew.errors import SpecError

#: What coldbrew's runtime imports from PyPI inside an environment (worker, template, inspection):
#: frames, the inspection's schema, BLAS threads, the spec's warm windows. Checked by
#: tests/unit/test_runtime_requirements.py.
RUNTIME_REQUIREMENTS = ("orjson>=3.9", "pydantic>=2.6", "threadpoolctl>=3.1", "cronsim>=2.6")
#: Marks a finished build; a directory without it is a build that died and is removed.
READY_FILE = ".coldbrew-ready"
PATH_DIR = "coldbrew-path"
_SPECIAL = ("uv-cache", "artifacts", "requested", "tmp")
_PHASES = {"Resolved": "resolve", "Prepared": "download", "Installed": "install"}


@dataclass(frozen=True)
class Interpreter:
    """How to start a Python process: the server's own, or an environment's (through
    `runtime/boot.py`, which enters the sandbox before site-packages are activated)."""

    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)  # added to the process's environment
    key: str | None = None  # the environment's key; None for the server's own interpreter

    def module(self, name: str, *args: str) -> list[str]:
        """The argv of `python -m NAME ARGS` under this interpreter."""
        if self.key is None:
            return [self.python, "-m", name, *args]
        return [self.python, "-S", "-m", "coldbrew.runtime.boot", name, *args]


SERVER = Interpreter()


def _package_dir() -> Path:
    """The running coldbrew package, which environments link to instead of installing it."""
    return Path(coldbrew.__file__).resolve().parent


def uv_binary() -> str:
    """uv's executable: the one installed with coldbrew (the `uv` package), else on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise SpecError(
                "building a model's environment needs uv, which is not installed",
                hint="pip install uv (coldbrew depends on it: reinstall coldbrew)",
            ) from None
        return found


def pip_find_links() -> tuple[str, ...]:
    """pip's `find-links` (PIP_FIND_LINKS): where this machine keeps wheels such as the CPU
    torch, which uv does not look at unless told."""
    return tuple(p for p in os.environ.get("PIP_FIND_LINKS", "").split() if os.path.isdir(p))


Report = Callable[[str], None]


def _readable_by_all() -> None:  # pragma: no cover - runs in uv's process before exec
    """The server runs with umask 077; an environment holds only public packages, which the
    sandbox's per-account uid must read."""
    os.umask(0o022)


class Environments:
    """Builds, finds and removes the environments under one root."""

    def __init__(self, root: Path, find_links: tuple[str, ...] | None = None) -> None:
        self.root = root
        self.cache = root / "uv-cache"
        self.find_links = pip_find_links() if find_links is None else find_links
        self.python = sys.executable
        self.python_tag = f"{sys.implementation.cache_tag}-{platform.python_version()}"
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: dict[str, int] = {}  # keys a deploy is using before its version exists

    def path(self, key: str) -> Path:
        return self.root / key

    def ready(self, key: str) -> bool:
        return (self.path(key) / READY_FILE).is_file()

    def interpreter(self, key: str | None) -> Interpreter:
        """The interpreter of environment `key` (the server's own when None)."""
        if not key:
            return SERVER
        env_dir = self.path(key)
        return Interpreter(
            str(env_dir / "bin" / "python"), {"PYTHONPATH": str(env_dir / PATH_DIR)}, key
        )

    def _link(self, account: str, sha: str) -> Path:
        return self.root / "artifacts" / (account or "_") / sha

    def _request(self, lines: tuple[str, ...]) -> Path:
        # the runtime's needs are part of the request: a coldbrew that adds one resolves anew
        text = "\n".join((self.python_tag, *self.find_links, *RUNTIME_REQUIREMENTS, "", *lines))
        return self.root / "requested" / "_" / hashlib.sha256(text.encode()).hexdigest()

    def _read_key(self, path: Path) -> str | None:
        try:
            key = path.read_text().strip()
        except OSError:
            return None
        return key if key and self.ready(key) else None

    @staticmethod
    def _write_key(path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)

    def for_artifact(self, account: str, sha: str) -> str | None:
        """The environment built for this artifact, if it still exists."""
        return self._read_key(self._link(account, sha))

    def for_launch(self, account: str, artifact_dir: Path) -> Interpreter:
        """The interpreter a launch of this artifact runs."""
        return self.interpreter(self.for_artifact(account, artifact_dir.name))

    def link_artifact(self, account: str, sha: str, key: str) -> None:
        self._write_key(self._link(account, sha), key)

    def for_requirements(self, lines: tuple[str, ...]) -> str | None:
        """The environment already built for exactly these requirement lines, if it exists: a
        redeploy that changes code but not requirements reuses it without resolving again (so
        a range is not moved to a newer release behind the user's back either)."""
        return self._read_key(self._request(lines))

    def remember(self, lines: tuple[str, ...], key: str) -> None:
        self._write_key(self._request(lines), key)

    @contextlib.contextmanager
    def holding(self, key: str) -> Generator[None]:
        """Keep `collect` away from `key` while a deploy that uses it is under way."""
        self._held[key] = self._held.get(key, 0) + 1
        try:
            yield
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]

    async def resolve(self, lines: tuple[str, ...], report: Report) -> str:
        """Pin `lines` plus the runtime's own needs with uv: the lock file's text."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root / "tmp") as tmp:
            wanted = Path(tmp) / "requirements.in"
            wanted.write_text("\n".join((*lines, *RUNTIME_REQUIREMENTS)) + "\n")
            lock = Path(tmp) / "requirements.lock"
            report("resolve: " + ", ".join(lines))
            args = ["pip", "compile", str(wanted), "-o", str(lock), *self._compile_args()]
            await self._uv(args, report)
            return lock.read_text()

    def key(self, pinned: str) -> str:
        """The environment's name: the Python version and the resolved set, hashed."""
        return hashlib.sha256(f"{self.python_tag}\n{pinned}".encode()).hexdigest()[:20]

    async def install(self, pinned: str, report: Report) -> str:
        """Build the environment of a resolved set unless it exists; returns its key."""
        key = self.key(pinned)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self.ready(key):
                report(f"environment {key}: already built, shared with the versions using it")
                return key
            await self._create(key, pinned, report)
        return key

    def _compile_args(self) -> list[str]:
        # --no-build: a source distribution's build backend would run as the server, unsandboxed
        args = ["--python", self.python, "--no-header", "--no-annotate", "--quiet", "--no-build"]
        for links in self.find_links:
            args += ["--find-links", links]
        return args

    async def _create(self, key: str, pinned: str, report: Report) -> None:
        target = self.path(key)
        shutil.rmtree(target, ignore_errors=True)  # a build that died half-way
        report(f"environment {key}: creating a venv")
        await self._uv(["venv", "--quiet", "--python", self.python, str(target)], report)
        lock = target / "coldbrew-requirements.lock"
        lock.write_text(pinned)
        args = ["pip", "sync", "--python", str(target / "bin" / "python"), str(lock)]
        args += ["--link-mode", "hardlink", "--no-build"]
        for links in self.find_links:
            args += ["--find-links", links]
        try:
            await self._uv(args, report)
            (target / PATH_DIR).mkdir(mode=0o755)
            (target / PATH_DIR).chmod(0o755)
            (target / PATH_DIR / "coldbrew").symlink_to(_package_dir())
            for directory in (self.root, target):
                directory.chmod(0o755)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / READY_FILE).write_text(self.python_tag + "\n")
        report(f"environment {key}: ready")

    @staticmethod
    def _relink(env_dir: Path) -> None:
        """Point an environment at the coldbrew package that runs now (it moved, e.g. with a
        reinstall into another virtualenv), so its versions keep starting."""
        link = env_dir / PATH_DIR / "coldbrew"
        if not (env_dir / READY_FILE).is_file() or not link.is_symlink():
            return
        if link.readlink() != _package_dir():
            fresh = link.with_name("coldbrew.new")
            fresh.unlink(missing_ok=True)
            fresh.symlink_to(_package_dir())
            os.replace(fresh, link)

    async def _uv(self, args: list[str], report: Report) -> None:
        """Run uv, passing its summary lines on as progress; its own text on failure."""
        env = {**os.environ, "UV_CACHE_DIR": str(self.cache), "UV_NO_CONFIG": "1"}
        env.pop("VIRTUAL_ENV", None)
        process = await asyncio.create_subprocess_exec(
            uv_binary(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            preexec_fn=_readable_by_all,
        )
        assert process.stdout is not None
        text: list[str] = []
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            text.append(line)
            word = line.split(" ", 1)[0]
            if word in _PHASES:
                report(f"{_PHASES[word]}: {line}")
        if await process.wait() != 0:
            message = "\n".join(text[-40:]).strip()
            raise SpecError(
                f"building the environment failed (uv {' '.join(args[:2])}):\n{message}",
                hint="fix the requirement uv names above (is the package and version on PyPI, "
                "as a wheel?); coldbrew's runtime adds " + ", ".join(RUNTIME_REQUIREMENTS),
            )

    def collect(self, in_use: set[str]) -> list[str]:
        """Remove every environment that no version uses (and no deploy holds); their keys.
        The ones kept are pointed at the running coldbrew package (`_relink`)."""
        if not self.root.is_dir():
            return []
        keep = in_use | set(self._held)
        removed = []
        for entry in sorted(self.root.iterdir()):
            if entry.name in _SPECIAL or entry.name in keep or not entry.is_dir():
                continue
            if entry.name in self._locks and self._locks[entry.name].locked():
                continue  # being built right now
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        for entry in self.root.iterdir():
            self._relink(entry)
        for kind in ("artifacts", "requested"):
            for link in (self.root / kind).glob("*/*"):
                with contextlib.suppress(OSError):
                    if not self.ready(link.read_text().strip()):
                        link.unlink()
        return removed
