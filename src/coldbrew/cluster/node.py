"""This gateway's place in a cluster: its leases, the endpoints it owns, the hop to the owner of
the others, and the catalog news it sends and hears.

With a database URL the leases live in PostgreSQL (shared with every gateway on it) and deploys
are announced by NOTIFY; without one (the embedded default) they live in this process and this
one gateway owns every endpoint: the same code runs, nothing is forwarded and nothing is heard.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx
import orjson

from coldbrew.clock import Clock
from coldbrew.cluster.leases import LocalLeases, gateway_of
from coldbrew.cluster.ownership import Ownership
from coldbrew.config import Settings
from coldbrew.control.routing import (
    CALLER_AUTHORIZATION,
    FORWARDED_HEADER,
    HOP_TOKEN_HEADER,
    Router,
    job_from_wire,
    job_to_wire,
)
from coldbrew.control.scheduler import Scheduler
from coldbrew.crypto import Sealer
from coldbrew.errors import SecretUnreadable
from coldbrew.store.catalog import Catalog
from coldbrew.store.models import Job

if TYPE_CHECKING:
    from coldbrew.cluster.bus import CatalogBus

log = logging.getLogger("coldbrew.cluster")

#: The owner's route for a forwarded waiting job (`api/cluster.py`).
FORWARD_PATH = "/v1/cluster/jobs"
#: ... and for a cancel of a job that a worker of that gateway runs.
CANCEL_PATH = "/v1/cluster/cancel"
#: Beyond the job's own wait, how long the hop may take (connect, write, answer).
FORWARD_SLACK_S = 10.0
#: A hop token is good this long after it was made (machines' clocks may differ by this much).
HOP_TOKEN_TTL_S = 60.0
_HOP_CONTEXT = "gateway hop"


class Cluster(Router):
    """Ownership by lease, forwarding to owners, and catalog news, for one gateway."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        catalog: Catalog,
        database_url: str | None,
        sealer: Sealer,
    ) -> None:
        self.settings = settings
        self.sealer = sealer  # the cluster's shared secrets key: signs the hop between gateways
        self.clock = clock
        self.database_url = database_url
        self.gateway_id = settings.gateway_id
        self.ownership = Ownership(
            LocalLeases(clock),
            catalog,
            clock,
            settings.gateway_id,
            settings.gateway_url,
            settings.lease_ttl_s,
            fenced=False,
        )
        self.bus: CatalogBus | None = None
        self._reload: Callable[[], Awaitable[None]] | None = None
        self.forwarded = 0  # waiting jobs sent to their owner, for tests and metrics
        self.cancels_sent = 0  # cancels sent to the gateway running the job
        self._client: httpx.AsyncClient | None = None

    # Router
    def owns(self, endpoint_id: int) -> bool:
        return self.ownership.owns(endpoint_id)

    async def forward(self, job: Job, wait_s: float) -> Job | None:
        url = self.ownership.owner_url(job.endpoint_id)
        auth = CALLER_AUTHORIZATION.get()
        if url is None or auth is None or self._client is None:
            return None
        body = orjson.dumps({"job": job_to_wire(job), "wait_s": wait_s})
        headers = {
            "authorization": auth,
            "content-type": "application/json",
            FORWARDED_HEADER: self.gateway_id,
            HOP_TOKEN_HEADER: self.hop_token(body),
        }
        try:
            response = await self._client.post(
                url + FORWARD_PATH, content=body, headers=headers, timeout=wait_s + FORWARD_SLACK_S
            )
        except httpx.HTTPError as exc:
            log.warning("job %s: owner %s unreachable (%s); queued here", job.id, url, exc)
            return None
        if response.status_code != 200:
            log.warning(
                "job %s: owner %s answered %d; queued here", job.id, url, response.status_code
            )
            return None
        self.forwarded += 1
        return job_from_wire(response.json()["job"])

    def hop_token(self, body: bytes) -> str:
        """Proof that a gateway of this cluster (one holding its secrets key) sent `body`
        now: the body's hash and the time, sealed with the key."""
        digest = hashlib.sha256(body).hexdigest()
        return self.sealer.seal(f"{digest} {self.clock.time()}", _HOP_CONTEXT)

    def hop_ok(self, body: bytes, token: str | None) -> bool:
        """Whether `token` is a fresh `hop_token` for exactly this `body`."""
        if not token:
            return False
        try:
            digest, made_at = self.sealer.open(token, _HOP_CONTEXT).split()
        except (SecretUnreadable, ValueError):
            return False
        fresh = abs(self.clock.time() - float(made_at)) <= HOP_TOKEN_TTL_S
        return fresh and digest == hashlib.sha256(body).hexdigest()

    async def cancel_elsewhere(self, job: Job) -> Job | None:
        gateway = gateway_of(job.worker_id)
        url = None if gateway == self.gateway_id else self.ownership.peers.get(gateway or "")
        auth = CALLER_AUTHORIZATION.get()
        if url is None or auth is None or self._client is None:
            return None
        try:
            response = await self._client.post(
                f"{url}{CANCEL_PATH}/{job.id}",
                headers={"authorization": auth, FORWARDED_HEADER: self.gateway_id},
                timeout=FORWARD_SLACK_S,
            )
        except httpx.HTTPError as exc:
            log.warning("job %s: cancel on %s failed (%s); cancelled here", job.id, url, exc)
            return None
        if response.status_code != 200:
            return None
        self.cancels_sent += 1
        return job_from_wire(response.json()["job"])

    def stream_owner(self, job: Job) -> str | None:
        """Where a job's chunks are, when not here: its endpoint's owner ran it and knows which
        chunks a poll already returned (also once it is final)."""
        if self._client is None or self.owns(job.endpoint_id):
            return None
        return self.ownership.owner_url(job.endpoint_id)

    async def open_stream(self, url: str, headers: dict[str, str]) -> httpx.Response | None:
        """`GET url` on the owner, streamed (server-sent events pass through as they come);
        None when the owner cannot be reached (then this gateway answers from the store)."""
        if self._client is None:
            return None
        request = self._client.build_request(
            "GET",
            url,
            headers={**headers, FORWARDED_HEADER: self.gateway_id},
            timeout=httpx.Timeout(FORWARD_SLACK_S, read=None),
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("stream from owner %s failed (%s); answered here", url, exc)
            return None

    # lifecycle
    def attach(self, scheduler: Scheduler) -> None:
        """Hand the scheduler its predicates before it starts: until this gateway's first
        round it owns nothing, so its start-up recovery touches no other gateway's jobs."""
        ownership = self.ownership
        ownership.on_change = lambda: scheduler.refresh_endpoints(announce=False)
        ownership.on_orphan = scheduler.recover_orphan
        ownership.in_progress = scheduler.store.in_progress
        scheduler.owns = ownership.owns
        scheduler.orphaned = ownership.orphaned
        scheduler.leads = ownership.leads
        scheduler.on_catalog_change = self._changed_here

    async def start(self, reload_catalog: Callable[[], Awaitable[None]]) -> None:
        """Open the shared leases (with a database URL), take this gateway's leases (the
        first round requeues what gateways gone left running), and listen for catalog news."""
        ownership = self.ownership
        self._reload = reload_catalog
        if self.database_url is not None:
            from coldbrew.cluster.bus import CatalogBus  # asyncpg only when clustered
            from coldbrew.cluster.pg_leases import PgLeases

            ownership.leases = await PgLeases.connect(self.database_url)
            ownership.fenced = True
            self.bus = CatalogBus(self.database_url, self.gateway_id, self.clock, self._heard)
            verify: str | bool = str(self.settings.tls_cert) if self.settings.tls_cert else True
            self._client = httpx.AsyncClient(verify=verify)
        await ownership.start()
        if self.bus is not None:
            await self.bus.start()
        log.log(
            logging.INFO if self.database_url else logging.DEBUG,  # alone: nothing to tell
            "gateway %s at %s: %s leases, owns %d endpoints%s",
            self.gateway_id,
            self.settings.gateway_url,
            "PostgreSQL" if self.database_url else "in-process",
            len(ownership.epochs),
            ", leader" if ownership.leader else "",
        )

    async def stop(self) -> None:
        """Leave the cluster: the other gateways take this one's endpoints at once."""
        if self.bus is not None:
            await self.bus.stop()
        await self.ownership.stop()
        await self.ownership.leases.close()
        if self._client is not None:
            await self._client.aclose()

    async def _changed_here(self) -> None:
        """A deploy, delete, split or secret change on this gateway: a new endpoint needs an
        owner now, and every other gateway must reload."""
        try:  # owned (or left to its owner) before the deploy is answered
            await self.ownership.round()
        except Exception:
            log.warning("lease round after a catalog change failed; retried", exc_info=True)
            self.ownership.kick()
        if self.bus is not None:
            await self.bus.publish()

    async def _heard(self) -> None:
        """Another gateway changed the catalog (or the backstop came due): reload it, and
        look at once whether a new endpoint is this gateway's to own."""
        if self._reload is not None:
            await self._reload()
        await self.ownership.round()

    def status(self) -> dict[str, object]:
        """What `GET /v1/cluster` shows: this gateway, its peers, what it owns and leads."""
        ownership = self.ownership
        return {
            "gateway": self.gateway_id,
            "url": self.settings.gateway_url,
            "shared": self.database_url is not None,
            "leader": ownership.leads(),
            "owned": sorted(e for e in ownership.epochs if ownership.owns(e)),
            "epochs": {str(e): n for e, n in sorted(ownership.epochs.items())},
            "peers": dict(sorted(ownership.peers.items())),
            "leases": sorted(n for n in ownership.names if ownership.holds(n)),
            "leasesAcquired": ownership.acquired,
            "forwarded": self.forwarded,
            "cancelsSent": self.cancels_sent,
            "catalogNoticesHeard": 0 if self.bus is None else self.bus.heard,
        }
