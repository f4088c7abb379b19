"""Versions you can steer: traffic splits, rollbacks and the automatic canary rollback.

`VersionControl` is what the management routes and the control loop call. It owns the
gateway's `TrafficRouter` (splits in memory, reloaded by `refresh`) and the canary check's
`Outcomes` (fed by the scheduler's final-job listener), and writes every change through the
catalog, so two gateways on one database agree after their next refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coldbrew.clock import Clock
from coldbrew.control.canary import Outcomes, Rollback, check
from coldbrew.control.traffic import TrafficRouter, check_weights, pinned_version
from coldbrew.errors import Conflict, InvalidRequest
from coldbrew.spec import DeploymentSpec
from coldbrew.store.catalog import Catalog
from coldbrew.store.models import CanaryRule, Endpoint, TrafficSplit, Version

log = logging.getLogger("coldbrew.versions")

#: Sends a signed event (account, url, message id, payload): the webhook sender's `send_event`.
SendEvent = Callable[[str, str, str, dict[str, Any]], object]


@dataclass(frozen=True)
class RolledBack:
    """What `rollback` did: from which version to which."""

    endpoint: str
    from_version: Version
    to_version: Version


class VersionControl:
    """Splits, rollbacks and canary checks over the catalog.

    `on_change` runs after every change the check makes itself (the platform passes the
    scheduler's refresh, so admission caches and the live set follow at once).
    """

    def __init__(
        self,
        store: Catalog,
        clock: Clock,
        send_event: SendEvent | None = None,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.router = TrafficRouter()
        self.outcomes = Outcomes()
        self._send_event = send_event
        self._on_change = on_change
        #: version id → (account, endpoint, number), for per-version metric labels
        self.numbers: dict[int, tuple[str, str, int]] = {}
        #: endpoint id → its versions (for pins)
        self._versions: dict[int, list[Version]] = {}
        #: versions admission routed to other than the current one, with their specs
        self._routed: dict[int, tuple[Version, DeploymentSpec]] = {}

    async def refresh(self) -> None:
        """Reload every split, and the versions of every live endpoint."""
        self.router.load(await self.store.list_splits())
        self._routed = {}
        by_endpoint = {
            e.id: await self.store.list_versions(e.id)
            for e in await self.store.list_endpoints(None)
        }
        self._versions = by_endpoint
        self.numbers = {
            v.id: (v.account, v.endpoint, v.number) for vs in by_endpoint.values() for v in vs
        }

    async def live(self) -> set[int]:
        """Reload, then the versions with a share of some split (the scheduler adds each
        endpoint's current version): they scale on their own queues, none is retired."""
        await self.refresh()
        return self.router.live(())

    async def route(
        self,
        endpoint: Endpoint,
        current: Version,
        spec: DeploymentSpec,
        job_id: str,
        pin: int | None,
    ) -> tuple[Version, DeploymentSpec]:
        """Admission's one call: the version (and spec) a new job runs on, given the current
        one. Without a split or a pin it costs a dict lookup; another version is read once
        per refresh."""
        # no pin, the common case: the split's pick without another coroutine on the hot path
        if pin is None:
            chosen = self.router.choose(endpoint, job_id)
        else:
            chosen = await self.choose(endpoint, job_id, pin)
        if chosen == current.id:
            return current, spec
        hit = self._routed.get(chosen)
        if hit is None:
            version = await self.store.get_version(chosen)
            hit = self._routed[chosen] = (version, DeploymentSpec(**version.spec))
        return hit

    async def choose(self, endpoint: Endpoint, job_id: str, pin: int | None) -> int:
        """The version id a new job goes to: the pinned version number (404 naming the
        versions there are), else the split's pick for this job id, else the current one."""
        if pin is None:
            return self.router.choose(endpoint, job_id)
        versions = self._versions.get(endpoint.id, [])
        if not any(v.number == pin for v in versions):  # deployed since the last refresh?
            versions = self._versions[endpoint.id] = await self.store.list_versions(endpoint.id)
        return pinned_version(endpoint.name, pin, versions).id

    def number(self, version_id: int) -> int | None:
        """The version's number, if it belongs to a live endpoint."""
        found = self.numbers.get(version_id)
        return found[2] if found else None

    async def set_traffic(
        self, endpoint: Endpoint, weights_by_number: dict[int, int], rule: CanaryRule | None
    ) -> TrafficSplit | None:
        """Split new jobs by these shares (checked: 400 with the fix otherwise)."""
        versions = await self.store.list_versions(endpoint.id)
        weights = check_weights(endpoint.name, weights_by_number, versions)
        split = await self.store.set_split(endpoint.id, weights, rule, self.clock.time())
        await self.refresh()
        by_id = {v.id: v.number for v in versions}
        shares = ", ".join(f"v{by_id[v]}={pct}%" for v, pct in sorted(weights.items()))
        log.info("traffic %s/%s: %s", endpoint.account, endpoint.name, shares)
        return split

    async def rollback(self, endpoint: Endpoint, to_number: int | None) -> RolledBack:
        """Make version `to_number` current (default: the one numbered below the current
        one), dropping any split; the version that was current is marked rolled back."""
        versions = await self.store.list_versions(endpoint.id)
        current = next(v for v in versions if v.id == endpoint.current_version_id)
        if to_number is None:
            earlier = [v for v in versions if v.number < current.number]
            if not earlier:
                raise InvalidRequest(
                    f"{endpoint.name} is at version {current.number}, and there is no earlier one",
                    hint="`coldbrew versions NAME` lists its versions; deploy to add one",
                )
            target = max(earlier, key=lambda v: v.number)
        else:
            target = pinned_version(endpoint.name, to_number, versions)
        if target.id == current.id and await self.store.get_split(endpoint.id) is None:
            raise Conflict(
                f"{endpoint.name} is already at version {target.number}",
                hint="give another version with --to N",
            )
        reason = f"rolled back to version {target.number} by request"
        back = await self.store.rollback(endpoint.id, target.id, reason, self.clock.time())
        await self.refresh()
        log.warning(
            "rollback %s/%s: version %d -> %d",
            endpoint.account,
            endpoint.name,
            current.number,
            back.number,
        )
        return RolledBack(endpoint.name, current, back)

    async def check_canaries(self) -> list[Rollback]:
        """Take every failing canary back to 0%, record why, log it and post the event."""
        splits = self.router.splits()
        if not any(s.rule is not None for s in splits):
            return []
        now = self.clock.time()
        current = {e.id: e.current_version_id for e in await self.store.list_endpoints(None)}
        done = []
        for found in check(splits, current, self.outcomes, now):
            if await self.store.end_canary(found.endpoint_id, found.version_id, found.reason, now):
                done.append(found)
                await self._announce(found, splits)
        if done:
            await self.refresh()
            if self._on_change is not None:
                await self._on_change()
        return done

    async def _announce(self, found: Rollback, splits: list[TrafficSplit]) -> None:
        version = await self.store.get_version(found.version_id)
        log.warning(
            "canary rolled back: %s/%s version %d taken to 0%%: %s",
            version.account,
            version.endpoint,
            version.number,
            found.reason,
            extra={"endpoint": version.endpoint},
        )
        rule = next(s.rule for s in splits if s.endpoint_id == found.endpoint_id)
        if rule is None or not rule.webhook_url or self._send_event is None:
            return
        self._send_event(
            version.account,
            rule.webhook_url,
            f"canary_{version.id}_{int(self.clock.time())}",
            {
                "type": "version.rolled_back",
                "endpoint": version.endpoint,
                "version": version.number,
                "reason": found.reason,
            },
        )
