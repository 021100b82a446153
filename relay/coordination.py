"""Several relays, one database: which relay schedules, and keeping background loops alive.

Every relay takes callbacks, serves the API and runs handler runs. Scheduling (and polling, its
companion) must happen in one place, or accounts would be overfilled: the relay holding the
``scheduler`` lease runs those loops, renews the lease every quarter of its length, and stops them
the moment it fails to. A relay that dies stops renewing; another takes over once the lease ends. A
relay that stops cleanly resigns, so the next one takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping

from .backoff import exponential
from .storage import SCHEDULER_LEASE, Store

log = logging.getLogger("runway_relay")

Loop = Callable[[], Awaitable[None]]


def relay_id() -> str:
    """A name for this relay process, unique among those sharing a database: ``host-pid-random``."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


async def guard(name: str, run: Loop) -> None:
    """Keep a background loop alive: if it dies (a database fault, a bug) it restarts after a pause."""
    failures = 0
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            pause = exponential(failures, base=1.0, cap=60.0)
            log.exception("the %s loop stopped unexpectedly; restarting it in %.1f s", name, pause)
            await asyncio.sleep(pause)


class Leadership:
    """Runs ``loops`` while this relay holds the scheduler's lease."""

    def __init__(self, store: Store, holder: str, seconds: float, loops: Mapping[str, Loop]) -> None:
        self.store = store
        self.holder = holder
        self.seconds = seconds
        self.loops = dict(loops)
        self._tasks: list[asyncio.Task[None]] = []
        self.elected = asyncio.Event()
        self.checked_at: float | None = None  # loop clock of the last answer about the lease

    @property
    def leading(self) -> bool:
        """Whether this relay schedules now."""
        return bool(self._tasks)

    async def run(self) -> None:
        """Ask for (or renew) the lease every quarter of its length, forever."""
        try:
            while True:
                try:
                    held = await self.store.lead(SCHEDULER_LEASE, self.holder, self.seconds)
                    self.checked_at = asyncio.get_running_loop().time()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database is away: we cannot know, so we stop scheduling
                    log.warning("could not renew the scheduler lease: %s", exc)
                    held = False
                if held and not self.leading:
                    log.info("this relay schedules now (%s)", self.holder)
                    self._tasks = [
                        asyncio.create_task(guard(n, run), name=f"relay-{n}") for n, run in self.loops.items()
                    ]
                    self.elected.set()
                elif not held and self.leading:
                    log.warning("another relay schedules now; stopping the scheduler here")
                    await self._stop_loops()
                await asyncio.sleep(self.seconds / 4)
        finally:
            await self._stop_loops()

    def stalled(self) -> list[str]:
        """What is wrong with the loops, in words (``[]``: the lease is looked after, and while this
        relay schedules its loops all run) — for ``/readyz``."""
        reasons = []
        now = asyncio.get_running_loop().time()
        if self.checked_at is not None and now - self.checked_at > self.seconds:
            reasons.append(f"the scheduler lease has not been renewed for {now - self.checked_at:.0f} s")
        for task in self._tasks:
            if task.done():
                reasons.append(f"the {task.get_name().removeprefix('relay-')} loop has stopped")
        return reasons

    async def _stop_loops(self) -> None:
        tasks, self._tasks = self._tasks, []
        self.elected.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def resign(self) -> None:
        """Give the lease up (a clean stop), so another relay need not wait for it to run out."""
        with contextlib.suppress(Exception):
            await self.store.resign(SCHEDULER_LEASE, self.holder)
