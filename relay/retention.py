"""Retention: ``runway-relay prune`` and ``RELAY_RETAIN_DAYS`` run the same :func:`prune`.

It walks the finished jobs older than the cutoff in small batches (one short transaction each, see
:mod:`runway_relay.storage.retention`), removes downloaded files after the commit that dropped their
rows (only files inside ``RELAY_DOWNLOAD_DIR``), then gives the space back to the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .storage import Store, iso_now

log = logging.getLogger("runway_relay")

BATCH = 100  # jobs per transaction (~10 ms on SQLite): a callback waits for one batch at most
# Between batches: a serving relay's writes (SQLite: a writer sleeping in its busy handler) get the
# database before the next batch takes it; without it a prune starves ingest for seconds.
PAUSE = 0.02
# Inside a serving relay the batches queue on its own writer with the callbacks (no lock to wait
# in, no busy handler sleeping), so they are small and barely paused: a callback arriving during one
# waits about a millisecond for it.
SERVED_BATCH = 10
SERVED_PAUSE = 0.005
RETAIN_EVERY = 3600.0  # seconds between two scheduled prunes (RELAY_RETAIN_DAYS)
RETAIN_FIRST = 60.0  # the first one, after the relay took the lead


@dataclass
class PruneReport:
    """What a prune removed, and the database's size around it."""

    removed: Counter[str] = field(default_factory=Counter)  # rows per table, and files
    skipped_files: int = 0  # artifact paths outside RELAY_DOWNLOAD_DIR, left alone
    size_before: int = 0
    size_after: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        """The report for ``POST /api/prune``."""
        return {
            "removed": dict(+self.removed),
            "skipped_files": self.skipped_files,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PruneReport:
        """A report as ``POST /api/prune`` answered it (for the CLI)."""
        return cls(
            Counter({str(k): int(v) for k, v in dict(data.get("removed") or {}).items()}),
            int(data.get("skipped_files") or 0),
            int(data.get("size_before") or 0),
            int(data.get("size_after") or 0),
            float(data.get("seconds") or 0.0),
        )

    def lines(self) -> list[str]:
        """The report as a few lines for people."""
        removed = ", ".join(f"{n} {what}" for what, n in sorted(self.removed.items()) if n) or "nothing"
        lines = [f"removed: {removed}"]
        if self.skipped_files:
            lines.append(f"left alone: {self.skipped_files} file(s) outside RELAY_DOWNLOAD_DIR")
        lines.append(
            f"database: {_mb(self.size_before)} before, {_mb(self.size_after)} after ({self.seconds:.1f} s)"
        )
        return lines


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"


async def prune(
    store: Store,
    older_than: float,
    download_dir: Path,
    *,
    files: bool = False,
    jobs: bool = False,
    vacuum: bool = False,
    batch: int = BATCH,
    pause: float = PAUSE,
) -> PruneReport:
    """Prune the finished jobs last updated more than ``older_than`` seconds ago (see module doc).

    ``pause``: seconds to wait between batches, so a busy relay's writes get the database in between.
    ``vacuum``: a full VACUUM at the end (SQLite: blocks writes while it runs).
    """
    started = time.monotonic()
    report = PruneReport(size_before=await store.size())
    cutoff = iso_now(time.time() - older_than)
    root = Path(os.path.realpath(download_dir))
    after = None
    while True:
        done = await store.prune_batch(cutoff, after=after, limit=batch, jobs=jobs, files=files)
        report.removed.update(done.removed)
        for path in done.files:
            removed = await asyncio.to_thread(remove_file, root, path)
            if removed is None:
                report.skipped_files += 1
            elif removed:
                report.removed["files"] += 1
        if done.after is None:
            break
        after = done.after
        if pause:
            await asyncio.sleep(pause)
    await store.reclaim(full=vacuum)
    report.size_after = await store.size()
    report.seconds = time.monotonic() - started
    return report


def remove_file(root: Path, path: str) -> bool | None:
    """Delete the downloaded file at ``path`` if it lies inside ``root`` (resolved, links followed),
    and its folder once empty. ``None``: it lies outside and was left alone; False: already gone."""
    real = Path(os.path.realpath(path))
    if real == root or not real.is_relative_to(root):
        log.warning("prune left %s alone: it is not inside RELAY_DOWNLOAD_DIR (%s)", path, root)
        return None
    try:
        real.unlink()
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return None
    folder = real.parent
    if folder != root and folder.is_relative_to(root):
        with contextlib.suppress(OSError):  # not empty yet
            folder.rmdir()  # the job's folder, once its last file is gone
    return True


class Retention:
    """The leader's scheduled prune (``RELAY_RETAIN_DAYS``): soon after it takes the lead, then hourly."""

    def __init__(
        self,
        store: Store,
        days: float,
        download_dir: Path,
        *,
        files: bool = False,
        every: float = RETAIN_EVERY,
        first: float = RETAIN_FIRST,
    ) -> None:
        self.store = store
        self.days = days
        self.download_dir = download_dir
        self.files = files
        self.every = every
        self.first = first

    async def run(self) -> None:
        """Forever: wait, prune, wait again (a loop of :class:`~.coordination.Leadership`)."""
        await asyncio.sleep(self.first)
        while True:
            await self.once()
            await asyncio.sleep(self.every)

    async def once(self) -> PruneReport:
        """One scheduled prune, logged."""
        report = await prune(
            self.store,
            self.days * 86400,
            self.download_dir,
            files=self.files,
            batch=SERVED_BATCH,
            pause=SERVED_PAUSE,
        )
        if report.removed:
            log.info("retention (RELAY_RETAIN_DAYS=%g): %s", self.days, "; ".join(report.lines()))
        return report
