"""Plain records the storage layer hands out, and the job JSON shape of contract §5."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..states import ACTIVE, TERMINAL, AnySignal, Signal

# Statuses as SQL arguments (``status in (?, ?, …)``).
ACTIVE_STATUSES = tuple(sorted(s.value for s in ACTIVE))  # holding an upstream slot
ENDED_STATUSES = tuple(sorted(s.value for s in TERMINAL))


@dataclass(frozen=True)
class SubmitTicket:
    """What the scheduler needs to send one create: the secret token exists only here and upstream."""

    job_id: str
    attempt: int
    reply_ref: str
    token: str
    params: dict[str, Any]
    account: str | None
    # Whose create this is: the hash of its callback token, as on the attempt row (a relay that took
    # the job over writes a new one) and the relay that sent it (which must still hold the lease).
    owner_hash: str = ""
    holder: str = ""

    def __repr__(self) -> str:  # never print the token
        return f"SubmitTicket(job_id={self.job_id!r}, attempt={self.attempt})"


@dataclass(frozen=True)
class Moved:
    """What one committed write did to a job: its row as committed, and the transition it made.

    The relay announces exactly this once the commit is done (live views, the blinker signal, the
    scheduler); nothing is read again to find out what happened.
    """

    row: dict[str, Any]  # the job's stored row as committed (internal columns included)
    previous: str | None = None  # the status before the write (None: the job is new)
    signal: Signal | None = None
    transition_id: int | None = None

    @property
    def job_id(self) -> str:
        """The job's id."""
        return str(self.row["id"])

    @property
    def status_changed(self) -> bool:
        """Whether the job's status moved (not only its progress)."""
        return self.previous != self.row["status"]

    def brief(self) -> dict[str, Any]:
        """The few fields the scheduler and the other relays need (no secrets, small)."""
        row = self.row
        return {
            "id": row["id"],
            "status": row["status"],
            "account": row.get("account"),
            "task_id": row.get("task_id"),
            "attempt": row.get("attempt"),
            "signal": self.signal.value if self.signal else None,
            "transition_id": self.transition_id,
        }


@dataclass(frozen=True)
class IngestResult:
    """What one callback or poll did: its outcome, what moved, and the account notices it caused
    (a moderation failure that paused the account)."""

    job_id: str
    outcome: str
    moved: Moved | None = None
    notices: tuple[Any, ...] = ()  # storage.notices.Notice


@dataclass(frozen=True)
class Routing:
    """Which handlers run on which signal (in order), and which of them wait for which others.

    Given to the store when it is opened, so it can write a transition's outbox rows in the same
    transaction without asking anyone. A job's own ``handlers`` list narrows the choice.
    """

    wanted: Mapping[AnySignal, tuple[str, ...]] = field(default_factory=dict)  # account signals too
    after: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def names(self, chosen: str | None, signal: Signal) -> list[str]:
        """Handlers to run for ``signal`` on a job whose ``handlers`` column is ``chosen`` (JSON)."""
        wanted = self.wanted.get(signal, ())
        if not chosen:
            return list(wanted)
        picked = json.loads(chosen)
        return [name for name in wanted if name in picked]


def iso_now(at: float | None = None) -> str:
    """The current UTC time (or epoch seconds ``at``) as ISO 8601 with milliseconds, the way the
    store spells ``created_at`` and ``updated_at``."""
    moment = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_last_ms = 0
_id_lock = threading.Lock()


def new_job_id() -> str:
    """A sortable id: 12 hex digits of milliseconds, then 8 random ones (``019a6f2b3c4d-1f2e3d4c``).

    The millisecond part never repeats within a process, so ids sort in creation order.
    """
    global _last_ms
    with _id_lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        stamp = _last_ms
    return f"{stamp:012x}-{os.urandom(4).hex()}"


def new_token() -> str:
    """A per-attempt callback secret of 192 bits, URL-safe."""
    return secrets.token_urlsafe(24)


def _handler_view(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "name": run["handler"],
        "signal": run["signal"],
        "status": run["status"],
        "attempts": run["attempts"],
        "last_error": run["last_error"],
        "output": run.get("output"),
        "replays": run.get("replays") or 0,
        "updated_at": run["updated_at"],
    }


def _artifact_views(row: dict[str, Any], stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_url = {a["url"]: a for a in stored}
    views = []
    for ref in json.loads(row.get("upstream_artifacts") or "[]"):
        have = by_url.pop(ref["url"], None)
        views.append(
            {
                "url": ref["url"],
                "path": have and have["path"],
                "size": have["size"] if have else ref.get("size"),
                "sha256": have and have["sha256"],
                "preview_url": ref.get("preview_url"),
            }
        )
    views.extend(
        {"url": a["url"], "path": a["path"], "size": a["size"], "sha256": a["sha256"], "preview_url": None}
        for a in by_url.values()
    )
    return views


def job_json(
    row: dict[str, Any], runs: list[dict[str, Any]], artifacts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The public job JSON (contract §5). Internal columns and secrets stay out."""
    return {
        "id": row["id"],
        "status": row["status"],
        "model": row["model"],
        "params": json.loads(row["params"]),
        "account": row["account"],
        "task_id": row["task_id"],
        "progress": row["progress"] or 0.0,
        "progress_text": row["progress_text"],
        "attempt": row["attempt"],
        "error": row["error"],
        "error_kind": row["error_kind"],
        "artifacts": _artifact_views(row, artifacts),
        "handlers": [_handler_view(r) for r in runs],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "prompt": row.get("prompt"),
        "group_id": row.get("group_id"),
        "client_ref": row.get("client_ref"),
    }
