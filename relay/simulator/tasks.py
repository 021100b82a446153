"""One simulated Runway task: its state, the task Model it reports, and Runway's time format. Pure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING, THROTTLED, RUNNING = "PENDING", "THROTTLED", "RUNNING"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
TERMINAL = frozenset({SUCCEEDED, FAILED})


def now_iso() -> str:
    """Current UTC time as Runway writes it: ``2026-03-05T10:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_ratio(value: float) -> str:
    """A progress ratio as the string Runway uses (``"0"``, ``"0.25"``, ``"1"``)."""
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


@dataclass
class SimTask:
    """One simulated Runway task."""

    task_id: str
    id: str
    email: str
    seq: int
    model: str
    options: dict[str, Any]
    reply_url: str | None
    reply_ref: str | None
    explore: bool
    seconds: int
    base_url: str
    running_steps: int
    fail_kind: str | None
    created_at: str
    updated_at: str
    status: str = PENDING
    progress: float = 0.0
    progress_text: str | None = None
    error: Any = None
    eta: int = 0
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    lost_answer: bool = False  # accepted, but the create is answered 500 ([accept500])
    held: bool = False  # stays RUNNING until released ([hold]), so tests never race the clock
    steps_done: int = 0
    history: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """SUCCEEDED or FAILED."""
        return self.status in TERMINAL

    @property
    def active(self) -> bool:
        """Holds an account slot: neither finished nor deleted from the scheduler."""
        return not self.deleted and not self.terminal

    def summary(self) -> dict[str, Any]:
        """The ``{taskId, replyUrl, replyRef}`` entry of ``GET scheduler/``."""
        return {"taskId": self.task_id, "replyUrl": self.reply_url, "replyRef": self.reply_ref}

    def model_json(self) -> dict[str, Any]:
        """The task Model of the seed page (progressRatio as a string, as Runway sends it)."""
        return {
            "id": self.id,
            "name": self.options["name"],
            "image": None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "taskType": self.model,
            "options": dict(self.options),
            "status": self.status,
            "error": self.error,
            "progressText": self.progress_text,
            "progressRatio": format_ratio(self.progress),
            "estimatedTimeToStartSeconds": self.eta,
            "artifacts": [dict(a) for a in self.artifacts],
            "sharedAsset": None,
            "sourceAssetId": None,
            "taskId": self.task_id,
            "replyUrl": self.reply_url,
            "replyRef": self.reply_ref,
            "code": 200,
        }

    def _set(self, status: str, progress: float, text: str | None) -> None:
        self.status, self.progress, self.progress_text = status, progress, text
        self.updated_at = now_iso()
        self.history.append((status, progress, time.monotonic()))
