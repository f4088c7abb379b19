"""Endpoint ownership: which gateway runs each endpoint's sync lane, batching, streams and
scaling, and who takes over when a gateway dies.

Every round (every `lease_ttl_s / 3` and at least once a second, and at once after a catalog
change) a gateway advertises itself, reads the live gateways, and asks for the lease of each
endpoint that rendezvous hashing over the live set gives it, plus the `leader` lease; it
renews what it holds and hands over what the hashing now gives a gateway that joined. A dead
gateway stops renewing: its heartbeat and leases run out together after the TTL, it leaves the
live set, and the hashing hands each of its endpoints to a survivor, which takes the lease
(epoch + 1) at its next round.

A gateway that acquires an endpoint (and any gateway, when another left the live set) requeues
the endpoint's IN_PROGRESS jobs whose worker belongs to a gateway that is no longer live. Worker
ids carry their gateway's id, so a gateway that restarts (with a new id) never touches the jobs
of gateways that are still running; the store's owner-matched requeue makes a repeated attempt
a no-op. The embedded default runs the same code on `LocalLeases`: the one gateway owns every
endpoint, and at start-up requeues what the previous process left running.

Other roles split their work the same way as *claimants*: each names the leases it has work for
(a trigger's `trigger:<id>`, a pipeline's `pipeline:<account>/<name>`), the round asks for the
names that rendezvous hashing over the live set gives this gateway, and tells each claimant,
every round, which of them it holds (with their epochs). A claimant runs the work of the leases
it holds and stops the rest; a lease handed to a gateway that joined is released only after
the claimants were told it is gone, so its work never runs on two gateways at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from coldbrew.clock import Clock
from coldbrew.cluster.leases import (
    LEADER,
    Leases,
    endpoint_lease,
    gateway_of,
    lease_endpoint,
    rendezvous_owner,
)
from coldbrew.store.catalog import Catalog
from coldbrew.store.models import Job

log = logging.getLogger("coldbrew.cluster")

#: Rounds per TTL: a lease is renewed this many times before it could run out, so one slow
#: round (a busy database) does not lose it.
RENEWALS_PER_TTL = 3
#: ...and at least one round a second, so a dead gateway's endpoints are taken within about a
#: second after its leases ran out (TTL + 1 s), not TTL/3 after.
ROUND_MAX_S = 1.0
#: How often the leader deletes gateways long gone from the directory.
FORGET_EVERY_S = 300.0


class Claimant(Protocol):
    """A role whose work is split among gateways by leases it names itself (triggers, runs)."""

    async def lease_names(self) -> set[str]:
        """The leases this role has work for now (every gateway computes the same set)."""

    async def owned(self, held: Mapping[str, int]) -> None:
        """Run the work of the leases held (name → epoch; every claimant's), stop the rest."""


class Ownership:
    """This gateway's leases: which endpoints it owns, whether it leads, and its peers' URLs."""

    def __init__(
        self,
        leases: Leases,
        catalog: Catalog,
        clock: Clock,
        gateway_id: str,
        url: str,
        ttl_s: float,
        *,
        fenced: bool,
    ) -> None:
        self.leases = leases
        self.catalog = catalog
        self.clock = clock
        self.gateway_id = gateway_id
        self.url = url
        self.ttl_s = ttl_s
        #: with leases shared by several machines, an owner that cannot renew stops acting as
        #: one once its last grant may have run out (it cannot know whether another took over)
        self.fenced = fenced
        #: called after the owned set changed (the scheduler rescales and re-dispatches)
        self.on_change: Callable[[], Awaitable[None]] | None = None
        #: called with each IN_PROGRESS job of an owned endpoint whose gateway is gone
        self.on_orphan: Callable[[Job], Awaitable[None]] | None = None
        #: the IN_PROGRESS jobs in the store (`JobQueue.in_progress`)
        self.in_progress: Callable[[], Awaitable[list[Job]]] | None = None
        self.epochs: dict[int, int] = {}  # owned endpoint -> the epoch it was granted at
        self.claimants: list[Claimant] = []
        self.names: dict[str, int] = {}  # claimants' leases held -> the epoch granted at
        self.peers: dict[str, str] = {}  # live gateway id -> advertised URL (self included)
        self.leader = False
        self.acquired = 0  # endpoint leases taken afresh or from another holder, for metrics
        self._valid_until = float("inf")
        self._forgot_at = float("-inf")
        self._kick = asyncio.Event()
        self._one_round = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # the predicates the scheduler and the job service are given
    def owns(self, endpoint_id: int) -> bool:
        """Whether this gateway runs the endpoint now (its lease is held and not run out)."""
        return endpoint_id in self.epochs and self.clock.monotonic() < self._valid_until

    def holds(self, name: str) -> bool:
        """Whether this gateway holds a claimant's lease now (granted and not run out)."""
        return name in self.names and self.clock.monotonic() < self._valid_until

    async def claim(self, name: str) -> bool:
        """Take `name` now if hashing gives it to this gateway (a run round), rather than at
        the next round; whether it is held. The caller's `lease_names` must include it."""
        if not self.holds(name) and rendezvous_owner(name, self.peers) == self.gateway_id:
            await self.round()
        return self.holds(name)

    def leads(self) -> bool:
        """Whether this gateway does the once-per-cluster work now."""
        return self.leader and self.clock.monotonic() < self._valid_until

    def orphaned(self, job: Job) -> bool:
        """An IN_PROGRESS job this gateway must requeue: of an endpoint it owns, run by a worker
        of a gateway that is not live (or of an earlier process of this machine)."""
        return self.owns(job.endpoint_id) and gateway_of(job.worker_id) not in self.peers

    def owner_url(self, endpoint_id: int) -> str | None:
        """Where the endpoint's owner answers, when it is another live gateway (else None)."""
        owner = rendezvous_owner(endpoint_id, self.peers)
        if owner is None or owner == self.gateway_id:
            return None
        return self.peers.get(owner)

    # lifecycle
    async def start(self) -> None:
        """Take this gateway's leases once (so it starts owning), then keep them."""
        await self.round()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop renewing and leave: every lease is free at once for the other gateways."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.leases.leave(self.gateway_id)
        except Exception:
            log.warning("could not release this gateway's leases; they run out in %g s", self.ttl_s)
        self.epochs.clear()
        self.names.clear()
        self.leader = False

    def kick(self) -> None:
        """Run a round soon (an endpoint was created or deleted)."""
        self._kick.set()

    async def _run(self) -> None:
        interval_s = min(self.ttl_s / RENEWALS_PER_TTL, ROUND_MAX_S)
        while True:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._kick.wait(), interval_s)
            self._kick.clear()
            try:
                await self.round()
            except Exception:
                log.exception("lease round failed; leases held run out in time")
                await self._lapse()

    async def _lapse(self) -> None:
        """After a failed round: once the last grant may have run out, own nothing."""
        if self.fenced and self.epochs and self.clock.monotonic() >= self._valid_until:
            log.warning(
                "leases could not be renewed for %g s: this gateway owns nothing now", self.ttl_s
            )
            self.epochs.clear()
            self.names.clear()
            self.leader = False
            await self._changed()
            await self._tell_claimants()

    # one round
    async def round(self) -> None:
        """Advertise, find the live gateways, take and renew this gateway's leases, hand over
        the others, and requeue what gateways that left were running (one round at a time:
        the timer's and a catalog change's)."""
        async with self._one_round:
            await self._round()

    async def _round(self) -> None:
        started = self.clock.monotonic()  # a grant runs out `ttl_s` after this, at the latest
        await self.leases.heartbeat(self.gateway_id, self.url, self.ttl_s)
        before = set(self.peers)
        self.peers = await self.leases.live_gateways()
        self.peers.setdefault(self.gateway_id, self.url)
        endpoints = [e.id for e in await self.catalog.list_endpoints(None)]
        wanted = {
            endpoint_lease(e)
            for e in endpoints
            if rendezvous_owner(e, self.peers) == self.gateway_id
        }
        held = {endpoint_lease(e) for e in self.epochs}
        handed = held - wanted
        named = await self._wanted_names()
        handed_names = set(self.names) - named
        if handed_names:  # their work stops before another gateway may take them
            self.names = {n: e for n, e in self.names.items() if n in named}
            await self._tell_claimants()
        if handed or handed_names:
            await self.leases.release(handed | handed_names, self.gateway_id)
        granted = await self.leases.acquire(wanted | named | {LEADER}, self.gateway_id, self.ttl_s)
        if self.fenced:
            self._valid_until = started + self.ttl_s
        self._note_leader(LEADER in granted)
        epochs = {
            e: epoch for name, epoch in granted.items() if (e := lease_endpoint(name)) is not None
        }
        acquired = [e for e, epoch in epochs.items() if self.epochs.get(e) != epoch]
        changed = set(epochs) != set(self.epochs)
        self.epochs = epochs
        self.names = {n: epoch for n, epoch in granted.items() if n in named}
        self.acquired += len(acquired)
        if acquired or handed:
            log.log(
                self._news_level(),
                "gateway %s owns %d endpoints (acquired %s, handed over %d)",
                self.gateway_id,
                len(epochs),
                sorted(acquired),
                len(handed),
            )
        if changed:
            await self._changed()
        await self._tell_claimants()
        if acquired or before - set(self.peers):
            await self._requeue_orphans()
        if self.leader and started - self._forgot_at >= FORGET_EVERY_S:
            self._forgot_at = started
            await self.leases.forget_gone()

    def _news_level(self) -> int:
        """Ownership news is for clusters: a gateway alone (the embedded default) owns all,
        and saying so after every deploy is noise."""
        return logging.INFO if len(self.peers) > 1 else logging.DEBUG  # peers include itself

    def _note_leader(self, leader: bool) -> None:
        if leader != self.leader:
            log.log(
                self._news_level(),
                "gateway %s %s the leader",
                self.gateway_id,
                "is" if leader else "is no longer",
            )
        self.leader = leader

    async def _wanted_names(self) -> set[str]:
        """The claimants' leases that hashing over the live set gives this gateway."""
        names: set[str] = set()
        for claimant in self.claimants:
            try:
                names |= await claimant.lease_names()
            except Exception:  # keep what it holds: its work goes on, the lease is renewed
                log.exception("%s could not name its leases", type(claimant).__name__)
                names |= set(self.names)
        return {n for n in names if rendezvous_owner(n, self.peers) == self.gateway_id}

    async def _tell_claimants(self) -> None:
        """Every claimant starts the work of the leases held and stops the rest."""
        held = {n: e for n, e in self.names.items() if self.holds(n)}
        for claimant in self.claimants:
            try:
                await claimant.owned(held)
            except Exception:
                log.exception("%s failed to follow its leases", type(claimant).__name__)

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    async def _requeue_orphans(self) -> None:
        """Give back to the queue each running job of an owned endpoint whose gateway is gone."""
        if self.in_progress is None or self.on_orphan is None:
            return
        for job in await self.in_progress():
            if self.orphaned(job):
                log.warning(
                    "job %s ran on %s of gateway %s, which is gone: requeued by %s",
                    job.id,
                    job.worker_id,
                    gateway_of(job.worker_id),
                    self.gateway_id,
                )
                await self.on_orphan(job)
