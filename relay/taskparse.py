"""Tolerant parsing of the task JSON useapi.net sends (callbacks and ``GET tasks/``): pure, no I/O.

Documented variants: the body may be wrapped in ``{"task": ...}`` or not; ``progressRatio`` may be a
string or a number; ``error`` may be null, a string or an object; ``fileSize`` may be a string. Unknown
fields are ignored; anything unusable becomes ``None`` rather than an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .states import UPSTREAM_STATUS, Status

MAX_TEXT = 4096
_MODERATION_WORDS = ("moderat", "safety", "flagged")


class TaskParseError(ValueError):
    """The body is not a task object at all."""


@dataclass(frozen=True)
class ArtifactRef:
    """One generated file the upstream reports."""

    url: str
    size: int | None = None
    asset_id: str | None = None
    preview_url: str | None = None


@dataclass(frozen=True)
class TaskUpdate:
    """What one callback or poll says about a task."""

    task_id: str | None
    status: Status | None
    raw_status: str | None
    progress: float | None
    progress_text: str | None
    error: str | None
    moderated: bool
    reply_ref: str | None
    artifacts: tuple[ArtifactRef, ...] = field(default_factory=tuple)


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)[:limit]
    return None


def parse_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string; ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            return None
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _size(value: Any) -> int | None:
    number = parse_number(value)
    if number is None or number < 0 or number != int(number) or number > 2**53:
        return None
    return int(number)


def _error(value: Any) -> tuple[str | None, bool]:
    """The error message and whether it is a moderation failure."""
    if value is None:
        return None, False
    if isinstance(value, dict):
        parts = [_text(value.get(key)) for key in ("message", "errorMessage", "reason")]
        message = " — ".join(p for p in parts if p) or None
        moderated = bool(value.get("moderation_category")) or any(
            word in (message or "").lower() for word in _MODERATION_WORDS
        )
        return (message or "unknown error"), moderated
    message = _text(value) or "unknown error"
    return message, any(word in message.lower() for word in _MODERATION_WORDS)


def _http_url(value: Any) -> str | None:
    url = _text(value, 2048)
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _artifacts(value: Any) -> tuple[ArtifactRef, ...]:
    if not isinstance(value, list):
        return ()
    found: list[ArtifactRef] = []
    for item in value[:32]:
        if not isinstance(item, dict):
            continue
        url = _http_url(item.get("url"))
        if url is None:
            continue
        previews = item.get("previewUrls")
        preview = _http_url(previews[0]) if isinstance(previews, list) and previews else None
        asset_id = _text(item.get("assetId") or item.get("id"), 512)
        found.append(ArtifactRef(url, _size(item.get("fileSize")), asset_id, preview))
    return tuple(found)


def unwrap(body: Any) -> dict[str, Any]:
    """The task object of a callback body, wrapped in ``task`` or not."""
    if not isinstance(body, dict):
        raise TaskParseError("the body must be a JSON object (the task)")
    inner = body.get("task")
    if isinstance(inner, dict):
        merged = dict(inner)
        for key in ("replyRef", "replyUrl"):
            if key not in merged and key in body:
                merged[key] = body[key]
        return merged
    return body


def parse_task(body: Any) -> TaskUpdate:
    """Read a task JSON (already decoded) into a :class:`TaskUpdate`."""
    task = unwrap(body)
    raw_status = _text(task.get("status"), 64)
    status = UPSTREAM_STATUS.get(raw_status.upper()) if raw_status else None
    progress = parse_number(task.get("progressRatio"))
    error, moderated = _error(task.get("error"))
    return TaskUpdate(
        task_id=_text(task.get("taskId"), 1024),
        status=status,
        raw_status=raw_status,
        progress=None if progress is None else min(1.0, max(0.0, progress)),
        progress_text=_text(task.get("progressText"), 512),
        error=error,
        moderated=moderated,
        reply_ref=_text(task.get("replyRef"), 1024),
        artifacts=_artifacts(task.get("artifacts")),
    )


def account_of(task_id: str | None) -> str | None:
    """The Runway account email named inside a useapi.net ``taskId`` or ``assetId``."""
    if not task_id or "-runwayml:" not in task_id:
        return None
    rest = task_id.split("-runwayml:", 1)[1]
    for marker in ("-task:", "-asset:"):
        if marker in rest:
            return rest.split(marker, 1)[0] or None
    return None
