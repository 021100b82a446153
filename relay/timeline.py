"""A job's life as phases with times and time spent in each: pure, no I/O.

Built from what ``GET /api/jobs/{id}`` already holds: the job's ``transitions`` (every status move)
and its ``events`` (callbacks and upstream exchanges). A 429 answer to a create is an event
(``source=upstream, kind=create, outcome=deferred``) whose ``detail`` gives the reason and the rest;
it opens a *throttled* phase of its own, so the wait shows even though the job stays ``queued``.
The dashboard and ``runway-relay show`` both render this list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .states import TERMINAL, Status

LABELS = {
    "queued": "Queued, waiting for a slot",
    "submitted": "Sent to useapi.net",
    "pending": "Pending at Runway",
    "throttled": "Throttled by Runway",
    "running": "Generating",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "rejected": "Rejected by useapi.net",
}
REST_LABEL = "Throttled (429): waiting to retry"
# Events worth a line of their own (they do not change the status).
_NOTES = {
    ("api", "replay"): "Handlers replayed",
    ("upstream", "cancel"): "Slot freed upstream",
    ("upstream", "scheduler"): "Looked up upstream",
}
_TERMINAL = {s.value for s in TERMINAL}


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as the relay writes it (``…Z`` or with an offset), timezone-aware."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _phase(
    state: str, at: str, attempt: int, detail: str | None = None, rest: bool = False
) -> dict[str, Any]:
    return {
        "kind": "phase",
        "state": state,
        "label": REST_LABEL if rest else LABELS.get(state, state),
        "rest": rest,
        "at": at,
        "attempt": attempt,
        "detail": detail,
    }


def _items(job: Mapping[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """Transitions and the events that matter, as (time, order, item), in time order."""
    items: list[tuple[str, int, dict[str, Any]]] = []
    for t in job.get("transitions") or ():
        detail = job.get("error") if t["to_status"] in ("failed", "rejected") else None
        items.append((t["at"], 1, _phase(t["to_status"], t["at"], t["attempt"], detail)))
    for e in job.get("events") or ():
        source, kind, outcome = e["source"], e["kind"], e["outcome"]
        if (source, kind, outcome) == ("upstream", "create", "deferred"):
            items.append((e["at"], 0, _phase("throttled", e["at"], e["attempt"], e["detail"], rest=True)))
        elif (source, kind) in _NOTES or (source, kind, outcome) == ("upstream", "create", "transient"):
            label = _NOTES.get((source, kind), "Create failed; checking upstream before retrying")
            items.append((e["at"], 2, {"kind": "note", "label": label, "at": e["at"], "detail": e["detail"]}))
    items.sort(key=lambda item: (item[0], item[1]))
    return items


def timeline(job: Mapping[str, Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """The job's phases (and notes) in order.

    Each phase has ``state``, ``label``, ``at``, ``attempt``, ``detail``, ``until`` (when the next
    phase began; ``None`` for the current one), ``seconds`` spent in it (for the current, non-final
    phase: so far, with ``ongoing`` true; ``None`` for a final state) and ``rest`` (a 429 wait).
    """
    now = now or datetime.now(UTC)
    entries: list[dict[str, Any]] = [_phase("queued", job["created_at"], 1)]
    last = entries[0]
    for _, _, item in _items(job):
        if item["kind"] == "phase":
            same = (item["state"], item["attempt"]) == (last["state"], last["attempt"])
            if same and not item["rest"] and not last["rest"]:
                continue  # a progress step within the same phase (running 20% → 40%)
            last = item
        entries.append(item)
    phases = [e for e in entries if e["kind"] == "phase"]
    for here, after in zip(phases, [*phases[1:], None], strict=True):
        here["ongoing"] = False
        if after is not None:
            here["until"] = after["at"]
            here["seconds"] = _seconds(here["at"], after["at"])
        elif here["state"] in _TERMINAL:
            here["until"], here["seconds"] = None, None
        else:
            here["until"], here["ongoing"] = None, True
            here["seconds"] = max(0.0, (now - parse_time(here["at"])).total_seconds())
    return entries


def _seconds(start: str, end: str) -> float:
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


def total_seconds(job: Mapping[str, Any], now: datetime | None = None) -> float:
    """From creation to the end (or to ``now`` while the job is not finished)."""
    now = now or datetime.now(UTC)
    end = parse_time(job["updated_at"]) if job["status"] in _TERMINAL else now
    return max(0.0, (end - parse_time(job["created_at"])).total_seconds())


def spent(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per state over the whole life (429 waits under ``throttled``), for a summary bar."""
    totals: dict[str, float] = {}
    for entry in entries:
        if entry["kind"] == "phase" and entry.get("seconds"):
            totals[entry["state"]] = totals.get(entry["state"], 0.0) + float(entry["seconds"])
    return totals


def describe_status(status: str) -> str:
    """The words for a status (``Status`` values), e.g. for the CLI."""
    return LABELS.get(Status(status).value, status)
