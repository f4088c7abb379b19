"""Deploys: store an uploaded artifact, inspect its models in a throwaway process, add versions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import orjson

from coldbrew.backends.envs import SERVER, Environments, Interpreter, Report
from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control import naming
from coldbrew.control.graph import Graph
from coldbrew.control.graph import parse as parse_graph
from coldbrew.control.requirements import (
    COG_FILE,
    check_resolved_torch,
    normalized_name,
    read_requirements,
)
from coldbrew.control.unpack import UnpackLimits, unpack
from coldbrew.errors import InvalidRequest, NotFound, SpecError
from coldbrew.runtime.adapters.settings import DIRECTORY_NAME_ENV
from coldbrew.runtime.sandbox.host import BoxSpec, Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode
from coldbrew.spec import DeploymentSpec
from coldbrew.store.catalog import Catalog
from coldbrew.store.pipelines import PipelineStore

INSPECT_TIMEOUT_S = 600.0
#: The inspection process's memory limit (the spec, with its own limit, is not known yet).
INSPECT_MEMORY_MB = 4096
_MARKER = "@@COLDBREW@@"
log = logging.getLogger("coldbrew.deploy")


def _log_progress(line: str) -> None:
    log.info("deploy: %s", line)


class DeployStore(Catalog, PipelineStore, Protocol):
    """What a deploy writes: versions, and the pipelines a directory declares."""


class Deployer:
    """Turns uploaded directories into endpoint versions (and the pipelines they declare)."""

    def __init__(
        self,
        store: DeployStore,
        clock: Clock,
        settings: Settings,
        sandbox: Sandbox | None = None,
        environments: Environments | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.sandbox = sandbox or Sandbox(SandboxMode.OFF, settings.home)
        self.environments = environments or Environments(settings.home / "envs")

    def artifact_dir(self, account: str, sha: str) -> Path:
        return self.settings.artifact_dir(account, sha)

    def has_artifact(self, account: str, sha: str) -> bool:
        return self.artifact_dir(account, sha).is_dir()

    async def store_artifact(self, account: str, sha: str, chunks: AsyncIterator[bytes]) -> None:
        """Save an uploaded tar, check it hashes to `sha`, and unpack it atomically."""
        target = self.artifact_dir(account, sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            tar_path = Path(tmp) / "upload.tar"
            with open(tar_path, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha:
                raise InvalidRequest(
                    f"the upload hashes to {digest.hexdigest()}, not {sha}",
                    hint="upload the bytes whose sha256 is in the URL (coldbrew deploy does this)",
                )
            unpacked = Path(tmp) / "tree"
            limits = UnpackLimits.from_settings(self.settings)
            await asyncio.to_thread(unpack, tar_path, unpacked, limits)  # off the event loop
            if not target.exists():
                os.rename(unpacked, target)

    async def deploy(
        self,
        account: str,
        sha: str,
        directory_name: str | None = None,
        name: str | None = None,
        replace: bool = False,
        report: Report | None = None,
    ) -> list[dict[str, Any]]:
        """Create a version of each model in the artifact; unchanged models keep theirs.

        A directory with requirements gets its environment first (`_environment`), reported
        line by line through `report`; a build that fails raises before any version is added,
        so the endpoint keeps serving its current version.

        `directory_name` (what the client deployed) names endpoints that declare no name, such
        as a RunPod handler directory. `name` renames the directory's one endpoint. An endpoint
        that came from another kind of directory or another directory is not replaced unless
        `replace` (`naming.check_replacement`).
        """
        directory = self.artifact_dir(account, sha)
        if not directory.is_dir():
            raise NotFound(f"no uploaded artifact {sha}", hint="PUT /v1/artifacts/{sha} first")
        try:
            key = await self._environment(account, sha, directory, report or _log_progress)
            held = self.environments.holding(key) if key else contextlib.nullcontext()
            with held:
                return await self._deploy(
                    account, sha, directory, directory_name, name, replace, key
                )
        finally:
            try:
                await self.collect_environments()  # what a failed deploy built goes too
            except Exception:  # never hides the deploy's own answer
                log.exception("removing unused environments failed")

    async def _deploy(
        self,
        account: str,
        sha: str,
        directory: Path,
        directory_name: str | None,
        name: str | None,
        replace: bool,
        key: str | None,
    ) -> list[dict[str, Any]]:
        python = self.environments.interpreter(key)
        inspected, pipelines = await self._inspect(directory, directory_name, account, python)
        models = naming.rename(inspected, name)
        sources = [naming.source_of(m, directory, directory_name) for m in models]
        if key:
            wanted = list(read_requirements(directory).lines)  # every file's, not only one
            for source in sources:
                source.update(environment=key, requirements=wanted)
        if not replace:
            for model, source in zip(models, sources, strict=True):
                existing = await self.store.get_endpoint(account, model["name"])
                if existing is not None:
                    current = await self.store.get_version(existing.current_version_id)
                    naming.check_replacement(current, source)
        deployed = {e.name for e in await self.store.list_endpoints(account)}
        known = deployed | {m["name"] for m in models}
        graphs = [_pipeline_graph(d, known) for d in pipelines]  # before any version is added
        results = []
        for model in models:
            spec = DeploymentSpec(**model["spec"])
            if self.settings.hardware_slots.get(spec.hardware, 0) < 1:
                raise SpecError(
                    f"endpoint {model['name']!r} asks for hardware {spec.hardware!r}, "
                    f"but this node has no {spec.hardware} slots "
                    f"(it has {self.settings.hardware_slots})",
                    hint="pick a hardware class the node has, or add slots with "
                    "COLDBREW_HARDWARE_SLOTS",
                )
        for model, source in zip(models, sources, strict=True):
            version, created = await self.store.add_version(
                account,
                model["name"],
                sha,
                model["module"],
                model["class"],
                model["spec"],
                model["input_schema"],
                self.clock.time(),
                source,
            )
            results.append(
                {
                    "name": model["name"],
                    "version": version.number,
                    "versionId": version.id,  # for the caller's wait on its template; not shown
                    "created": created,
                    "spec": model["spec"],
                    "source": source,
                    "notes": naming.notes(source),
                }
            )
        for graph in graphs:
            results.append(await self._pipeline(account, graph))
        return results

    async def _pipeline(self, account: str, graph: Graph) -> dict[str, Any]:
        """Store a pipeline the directory declares (`app.pipeline`)."""
        definition = graph.definition
        found, changed = await self.store.put_pipeline(
            account, graph.name, definition, self.clock.time()
        )
        return {
            "name": graph.name,
            "pipeline": True,
            "version": found.revision,
            "versionId": None,  # no template to wait for: a pipeline runs no worker of its own
            "created": changed,
            "notes": [f"pipeline: {graph.summary()}"],
        }

    async def _environment(
        self, account: str, sha: str, directory: Path, report: Report
    ) -> str | None:
        """The key of the environment this artifact's requirements need: built now unless this
        artifact, or another with exactly the same requirement lines, already has one (a
        code-only redeploy then costs no resolve); None when it asks for nothing."""
        wanted = read_requirements(directory)  # refuses an unpinned torch
        if not wanted:
            return None
        lines = wanted.lines
        if (directory / COG_FILE).is_file() and "cog" not in map(normalized_name, lines):
            lines += (_cog_requirement(),)  # a Cog predictor imports cog
        existing = self.environments.for_artifact(account, sha)
        if existing is None:
            existing = self.environments.for_requirements(lines)
        if existing is not None:
            report(f"environment {existing}: already built for these requirements")
            self.environments.link_artifact(account, sha, existing)
            return existing
        if "torch" in map(normalized_name, lines):
            where = ", ".join(self.environments.find_links) or "PyPI only"
            report(f"torch: pinned; wheels looked for in {where} before PyPI")
        report(f"environment: {len(wanted.lines)} requirements from {', '.join(wanted.files)}")
        pinned = await self.environments.resolve(lines, report)
        check_resolved_torch(pinned, lines)
        key = await self.environments.install(pinned, report)
        self.environments.link_artifact(account, sha, key)
        self.environments.remember(lines, key)
        return key

    async def collect_environments(self) -> list[str]:
        """Remove the environments no version of a live endpoint uses (after a deploy, a
        delete, and at start); rolled-back-to versions keep theirs."""
        in_use: set[str] = set()
        for endpoint in await self.store.list_endpoints(None):
            for version in await self.store.list_versions(endpoint.id):
                key = version.source.get("environment")
                if isinstance(key, str):
                    in_use.add(key)
        removed = await asyncio.to_thread(self.environments.collect, in_use)
        for key in removed:
            log.info("removed environment %s: no version uses it", key)
        return removed

    async def _inspect(
        self,
        directory: Path,
        directory_name: str | None,
        account: str,
        python: Interpreter = SERVER,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Run the inspection in the account's sandbox: module-level code is tenant code.
        (models, pipeline definitions)."""
        name = f"inspect-{secrets.token_hex(6)}"
        box = self.sandbox.box(BoxSpec(name, account, directory.resolve(), INSPECT_MEMORY_MB))
        try:
            env = box.env(dict(python.env), {})
            out, code = await self._run_inspection(
                env, box.workdir, box.cwd, directory_name, box.pass_fds, python
            )
        finally:
            box.close()  # what module-level code left running dies here
        text = out.decode(errors="replace")
        if _MARKER not in text:
            raise SpecError(
                f"inspecting the models failed (exit {code}): {text[-2000:]}",
                hint="run the model module locally with python to see the error",
            )
        result: dict[str, Any] = orjson.loads(text.rsplit(_MARKER, 1)[1])
        if "error" in result:
            err = result["error"]
            raise SpecError(
                err["message"], hint=err.get("hint", ""), traceback=err.get("traceback", "")
            )
        models: list[dict[str, Any]] = result["models"]
        return models, list(result.get("pipelines", []))

    async def _run_inspection(
        self,
        env: dict[str, str],
        workdir: Path,
        cwd: Path,
        directory_name: str | None,
        pass_fds: tuple[int, ...],
        python: Interpreter = SERVER,
    ) -> tuple[bytes, int | None]:
        env.pop(DIRECTORY_NAME_ENV, None)
        if directory_name:
            env[DIRECTORY_NAME_ENV] = directory_name
        process = await asyncio.create_subprocess_exec(
            *python.module("coldbrew.runtime.inspect", str(workdir)),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            pass_fds=pass_fds,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), INSPECT_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            raise SpecError(
                f"importing the model code took longer than {INSPECT_TIMEOUT_S:g} s",
                hint="move slow work from module level into setup()",
            ) from None
        return out, process.returncode


def _pipeline_graph(definition: dict[str, Any], endpoints: set[str]) -> Graph:
    """A declared pipeline, checked against the account's endpoints and the directory's own."""
    graph = parse_graph(definition, endpoints.__contains__)
    if graph.name in endpoints:
        raise SpecError(
            f"pipeline {graph.name!r} has the name of an endpoint",
            hint="/v2/NAME calls either; give the pipeline another name",
        )
    return graph


def _cog_requirement() -> str:
    """cog at the server's own version (the adapter is tested with it), else any."""
    try:
        return f"cog=={metadata.version('cog')}"
    except metadata.PackageNotFoundError:
        return "cog"
