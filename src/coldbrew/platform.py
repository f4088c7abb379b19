"""Wires the parts of one coldbrew node together: store, scheduler, deployer, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coldbrew.backends.base import Backend, ColdPath
from coldbrew.backends.envs import Environments
from coldbrew.backends.local import LocalBackend
from coldbrew.backends.runpod import RunPodBackend
from coldbrew.backends.template import TemplateBackend
from coldbrew.backends.threads import worker_thread_env
from coldbrew.clock import Clock, SystemClock
from coldbrew.cluster.node import Cluster
from coldbrew.config import Settings
from coldbrew.control.cache import ResultCache, make_cache
from coldbrew.control.deploy import Deployer
from coldbrew.control.scheduler import Scheduler
from coldbrew.control.secrets import EndpointSecrets
from coldbrew.control.state import StateService
from coldbrew.control.versions import VersionControl
from coldbrew.crypto import Sealer
from coldbrew.home import secure_home
from coldbrew.integrations.webhooks import WebhookSender, new_secret
from coldbrew.metering.budgets import BudgetKeeper
from coldbrew.observe.metrics import Metrics
from coldbrew.observe.stats import WorkerSampler, WorkerSamples
from coldbrew.runtime.protocol import OUTPUT_MAX_ENV
from coldbrew.runtime.sandbox.host import Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode
from coldbrew.store.base import Store
from coldbrew.store.credentials import ApiKey
from coldbrew.store.factory import open_store
from coldbrew.store.shared import Shared, make_shared
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.state import Namespace, StateStore

DEFAULT_ACCOUNT = "default"
STATE_PURGE_EVERY_S = 60.0  # expired state entries stop counting toward the quota this often
#: Characters of a key after "cb_" kept in the clear, so `coldbrew keys list` can show which key
#: is which (4 of 43 random characters: 24 of 256 bits, not enough to guess the rest).
KEY_PREFIX_CHARS = 4


def new_sandbox(settings: Settings) -> Sandbox:
    """The sandbox for every tenant process (raises SandboxUnavailable in strict mode when a
    layer is missing)."""
    return Sandbox(
        SandboxMode(settings.sandbox),
        settings.home,
        scratch_mb=settings.sandbox_scratch_mb,
        pids_max=settings.sandbox_pids_max,
        open_files=settings.sandbox_open_files,
        gateway=(_loopback(settings.host), settings.port),
    )


_READY_LINES = {
    ColdPath.FORK: "ready: its template is loaded, cold starts fork",
    ColdPath.LOADING: "its template is still loading; the first requests wait for it",
    ColdPath.SPAWN: "cold starts spawn a new process (no template)",
}


def open_state(settings: Settings) -> StateStore:
    """`coldbrew.state`'s store: Redis when `state_url` (or else the shared `redis_url`) names
    one, else state.db in the home."""
    quota, value_max = settings.state_quota_mb << 20, settings.state_value_max_kb << 10
    url = settings.shared_state_url
    if url:
        from coldbrew.store.redis_state import RedisState

        return RedisState(url, quota, value_max)
    from coldbrew.store.sqlite_state import SQLiteState

    return SQLiteState(settings.home / "state.db", quota, value_max)


def _loopback(host: str) -> str:
    """The address the gateway answers on from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _sealer(settings: Settings) -> Sealer:
    """The key sealing secrets at rest (gateways sharing a database share the key file)."""
    sealed_in = settings.db_path if settings.database_url is None else None
    return Sealer.from_file(settings.secrets_key_file, sealed_in=sealed_in)


def new_api_key() -> str:
    return "cb_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Keys are stored as their sha256; the key itself is shown once."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Platform:
    """Everything one `coldbrew serve` process runs."""

    settings: Settings
    store: Store
    scheduler: Scheduler
    deployer: Deployer
    webhooks: WebhookSender
    clock: Clock
    metrics: Metrics
    budgets: BudgetKeeper
    cache: ResultCache
    sealer: Sealer
    secrets: EndpointSecrets
    versions: VersionControl
    state: StateService
    shared: Shared
    runpod: RunPodBackend | None = None
    sandbox: Sandbox | None = None
    _budget_task: asyncio.Task[None] | None = None
    samples: WorkerSampler | None = None  # workers by state over time, for the dashboard
    _sample_task: asyncio.Task[None] | None = None
    _canary_task: asyncio.Task[None] | None = None
    _state_task: asyncio.Task[None] | None = None
    cluster: Cluster | None = None  # leases and ownership (one gateway: in-process)

    @classmethod
    async def open(
        cls, settings: Settings, clock: Clock | None = None, backend: Backend | None = None
    ) -> Platform:
        """`create` on the store the settings ask for (`database_url`: PostgreSQL), opened
        first: an unreachable database fails here, before anything starts."""
        secure_home(settings.home)
        store = await open_store(settings, _sealer(settings))
        try:
            platform = cls.create(settings, clock, backend, store=store)
            await platform.shared.ping()  # a Redis that does not answer fails here too
            return platform
        except BaseException:
            await store.close()
            raise

    @classmethod
    def create(
        cls,
        settings: Settings,
        clock: Clock | None = None,
        backend: Backend | None = None,
        *,
        store: Store | None = None,
    ) -> Platform:
        """Everything of one process, on `store` (default: the SQLite store in the home; a
        PostgreSQL one is opened by `open`)."""
        clock = clock or SystemClock()
        secure_home(settings.home)  # umask 077: what this process creates is 0600/0700
        sandbox = new_sandbox(settings)
        sealer = _sealer(settings)
        if store is None:
            store = SQLiteStore(settings.db_path, sealer)
        secrets = EndpointSecrets(store, clock)
        environments = Environments(settings.home / "envs")
        if backend is None and settings.ray_address:
            from coldbrew.backends.ray import ray_backend  # imports ray only once it connects

            backend = ray_backend(settings)
        if backend is None:
            spawn = LocalBackend(
                {
                    OUTPUT_MAX_ENV: str(int(settings.output_max_mb * (1 << 20))),
                    **worker_thread_env(settings, os.environ, os.cpu_count()),
                },
                sandbox=sandbox,
                environments=environments,
            )
            backend = (
                TemplateBackend(
                    settings.fork_ready_timeout_s,
                    spawn,
                    clock,
                    settings.template_backoff_s,
                    settings.template_backoff_max_s,
                    settings.template_load_wait_s,
                )
                if settings.fast_start
                else spawn
            )
        # RunPod handler files run as workers
        runpod = RunPodBackend(backend, settings, clock, sandbox, environments)
        shared = make_shared(settings, clock, settings.gateway_id)
        scheduler = Scheduler(store, runpod, clock, settings, endpoint_env=secrets.env)
        scheduler.dispatcher.slots = shared.slots  # the account cap, across gateways
        # a stored job made final here wakes whoever waits for it on any gateway
        scheduler.add_final_listener(shared.announce_final)
        shared.signals.on_final(scheduler.wake)
        webhooks = WebhookSender(store, clock, settings, shared.gateway_id)
        scheduler.add_final_listener(webhooks.submit)
        versions = VersionControl(
            store, clock, webhooks.send_event, on_change=scheduler.refresh_endpoints
        )
        scheduler.add_final_listener(versions.outcomes.record)
        scheduler.live_versions = versions.live  # a split's versions are live, none retired
        metrics = Metrics(scheduler, versions.number)
        scheduler.add_final_listener(metrics.observe)
        deployer = Deployer(store, clock, settings, sandbox, environments)
        budgets = BudgetKeeper(store, clock, settings, webhooks, shared.stops)
        cache = make_cache(settings.shared_cache_url, clock, settings.cache_max_mb << 20)
        cluster = Cluster(settings, clock, store, settings.database_url, sealer)
        cluster.attach(scheduler)  # before the scheduler starts: it owns nothing yet
        state = StateService(open_state(settings), clock, settings.state_value_max_kb << 10)
        scheduler.fleet.state_calls.on_state = lambda account, endpoint, request: state.call(
            Namespace(account, endpoint), request
        )
        return cls(
            settings,
            store,
            scheduler,
            deployer,
            webhooks,
            clock,
            metrics,
            budgets,
            cache,
            sealer,
            secrets,
            versions,
            state,
            shared,
            runpod,
            sandbox,
            cluster=cluster,
        )

    async def start(self) -> str | None:
        """Start serving; on an empty home, create the default account and return its admin key."""
        if self.sandbox is not None:
            self.sandbox.log_layers()
        await self.shared.start()  # subscribed before anything can be published
        admin_key = await self._bootstrap()
        await self.deployer.collect_environments()  # those left by endpoints deleted before
        await self.secrets.load()
        await self.versions.refresh()
        await self.scheduler.start()
        if self.cluster is not None:  # takes this gateway's leases: it starts owning endpoints
            await self.cluster.start(self.reload_catalog)
        if self.samples is None:
            every_s = self.settings.tick_interval_s  # as often as the scheduler reconciles
            self.samples = WorkerSampler(
                WorkerSamples(), self.scheduler.state_counts, self.clock, every_s
            )
        self.scheduler.samples = self.samples  # until the dashboard reads platform.samples
        self._sample_task = asyncio.create_task(self.samples.run())
        await self.webhooks.resume()
        await self.budgets.check()
        self._budget_task = asyncio.create_task(self._watch_budgets())
        self._canary_task = asyncio.create_task(self._watch_canaries())
        self._state_task = asyncio.create_task(self._purge_state())
        return admin_key

    async def reload_catalog(self) -> None:
        """Another gateway deployed, deleted, split or changed secrets: read it all again."""
        await self.secrets.load()
        await self.versions.refresh()
        await self.scheduler.refresh_endpoints(announce=False)

    def leads(self) -> bool:
        """Whether this gateway runs the once-per-cluster work (always, alone)."""
        return self.cluster is None or self.cluster.ownership.leads()

    async def _watch_canaries(self) -> None:
        """Judge canaries every `canary_check_s`: a failing one is taken back to 0% within
        about that long after its window shows it (the window itself is the rule's)."""
        while True:
            await self.clock.sleep(self.settings.canary_check_s)
            if not self.leads():
                continue  # the leader judges every canary, once for the cluster
            try:
                await self.versions.check_canaries()
            except Exception:
                logging.getLogger("coldbrew.versions").exception("canary check failed")

    async def _purge_state(self) -> None:
        """Drop expired `coldbrew.state` entries now and then (reads skip them at once)."""
        while True:
            await self.clock.sleep(STATE_PURGE_EVERY_S)
            try:
                await self.state.purge_expired()
            except Exception:
                logging.getLogger("coldbrew.state").exception("state purge failed")

    async def _watch_budgets(self) -> None:
        """Recompute budget spend every `budget_check_s`: alerts and hard stops follow usage.

        Every gateway runs it, not only the leader: each writes its own workers' seconds and
        needs the hard stops for its own admission, and an alert is sent only by the gateway
        whose `record_alert` wins, so once for the cluster."""
        while True:
            await self.clock.sleep(self.settings.budget_check_s)
            try:
                await self.scheduler.flush_usage()
                await self.budgets.check()
            except Exception:
                logging.getLogger("coldbrew.budgets").exception("budget check failed")

    async def stop(self) -> None:
        for task in (self._budget_task, self._sample_task, self._canary_task, self._state_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.scheduler.stop()
        if self.cluster is not None:  # after the workers stopped: their jobs are settled
            await self.cluster.stop()
        await self.webhooks.close()
        await self.shared.close()
        await self.cache.close()
        await self.state.store.close()
        await self.store.close()
        if self.sandbox is not None:
            self.sandbox.close()

    async def deploy(
        self,
        account: str,
        sha: str,
        directory: str | None,
        *,
        name: str | None = None,
        replace: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Deploy an uploaded artifact, then wait for the new versions' templates to load (up
        to `template_load_wait_s`), so the first request after a deploy pays a fork, not an
        import. Each result says how its next cold start will go (`coldStart`)."""
        results = await self.deployer.deploy(
            account, sha, directory, name=name, replace=replace, report=report
        )
        await self.scheduler.refresh_endpoints()
        live = self.scheduler.fleet.current  # a version deployed behind a split may not be
        ids = [r["versionId"] for r in results if r["versionId"] in live]
        started = self.clock.monotonic()
        paths = await self.scheduler.fleet.templates_ready(ids, self.settings.template_load_wait_s)
        waited_s = self.clock.monotonic() - started
        by_id = dict(zip(ids, paths, strict=True))
        for r in results:
            path = by_id.get(r.pop("versionId"))
            if path is None:
                continue
            r["coldStart"] = path.value
            if report is not None and r["created"]:  # an unchanged version's was ready before
                report(f"{r['name']} v{r['version']}: {_READY_LINES[path]} ({waited_s:.1f} s)")
        return results

    async def create_key(
        self, account: str, admin: bool, expires_at: float | None = None
    ) -> tuple[str, ApiKey]:
        """A new API key for `account` (created if new); only its hash is kept."""
        if await self.store.get_account(account) is None:
            await self.store.create_account(account, new_secret(), self.clock.time())
        key = new_api_key()
        record = await self.store.add_key(
            hash_key(key),
            account,
            admin,
            self.clock.time(),
            expires_at=expires_at,
            prefix=key[: len("cb_") + KEY_PREFIX_CHARS],
        )
        return key, record

    async def _bootstrap(self) -> str | None:
        if await self.store.count_accounts():
            return None
        key, _ = await self.create_key(DEFAULT_ACCOUNT, admin=True)
        path = self.settings.admin_key_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        os.chmod(path, 0o600)
        return key
