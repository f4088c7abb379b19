"""The boxes of forked workers: made ahead for a template's spare child, else on a thread.

A forked worker gets its own cgroups. Making them costs about half a millisecond, and moving a
process in (cgroup v1) waits for an RCU grace period: tens of milliseconds, during which the
kernel holds back every fork, thread start and exit on the machine. For the template's spare
(`runtime/template.py`) both happen ahead of time, on a thread, as soon as the template reports
the spare's pid: the worker it becomes starts in its own groups, and its first job never waits
behind the move.
"""

from __future__ import annotations

import asyncio

from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.local import box_spec
from coldbrew.runtime.sandbox.host import Box, BoxSpec, Sandbox


def _make(sandbox: Sandbox, spec: BoxSpec, pid: int) -> Box:
    box = sandbox.fork_box(spec)
    box.adopt(pid)
    return box


def close_made(made: asyncio.Future[Box]) -> None:
    """A done callback: close the box once made (killing what is in it: a spare no worker
    became, a fork that failed)."""
    if not made.cancelled() and made.exception() is None:
        made.result().close()


class SpareBox:
    """The groups made (or being made) for one spare, by pid."""

    def __init__(self, sandbox: Sandbox, spec: BoxSpec, pid: int) -> None:
        self.pid = pid
        self.spec = spec
        self._made = asyncio.get_running_loop().run_in_executor(None, _make, sandbox, spec, pid)

    async def take(self, spec: BoxSpec) -> Box | None:
        """The box, made (waiting for it if need be: the move into it must be over before the
        worker moves anywhere else), when it has the limits `spec` asks for; else None, and the
        caller makes one as for any fork, then `discard_after` the move into that one."""
        try:
            box = await asyncio.shield(self._made)
        except Exception:
            return None
        return box if spec.memory_mb == self.spec.memory_mb else None

    def discard(self) -> None:
        """Remove the groups (once made), ending the spare if it is still in them."""
        self._made.add_done_callback(close_made)

    def discard_after(self, moved: asyncio.Future[None]) -> None:
        """Remove the groups once the worker the spare became has moved out of them."""
        moved.add_done_callback(lambda _: self.discard())


class ForkBoxes:
    """Makes forked workers' boxes, and spares' ahead of time."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._serial = 0

    def spare(self, launch: WorkerLaunch, pid: int) -> SpareBox | None:
        """Start making the groups of a template's new spare (None: a sandbox without cgroups
        has nothing to make)."""
        if not self.sandbox.makes_groups:
            return None
        self._serial += 1
        return SpareBox(self.sandbox, box_spec(launch, f"spare-{self._serial}"), pid)

    def fresh(self, launch: WorkerLaunch) -> asyncio.Future[Box]:
        """A box made now: on a thread when it has groups (made while the template forks;
        until the child is moved in, by `worker`, it is in its template's group, under the
        same limits), else at once."""
        loop = asyncio.get_running_loop()
        if self.sandbox.makes_groups:
            return loop.run_in_executor(None, self.sandbox.fork_box, box_spec(launch))
        made: asyncio.Future[Box] = loop.create_future()
        made.set_result(self.sandbox.fork_box(box_spec(launch)))
        return made

    async def worker(
        self,
        launch: WorkerLaunch,
        pid: int,
        spare: SpareBox | None,
        creating: asyncio.Future[Box] | None,
    ) -> tuple[Box, asyncio.Future[None]]:
        """The forked worker's box and its move into it (a future, on a thread: the gateway
        waits for it only when the worker is gone): its spare's box, made ahead, or one made
        now (the template forked anew, no spare being ready)."""
        loop = asyncio.get_running_loop()
        if spare is not None:
            box = await spare.take(box_spec(launch))
            if box is not None:
                moved: asyncio.Future[None] = loop.create_future()
                moved.set_result(None)
                return box, moved
        box = await (creating or self.fresh(launch))
        placing = loop.run_in_executor(None, box.adopt, pid)
        if spare is not None:
            spare.discard_after(placing)  # other limits: its groups go once it moved out
        return box, placing
