"""What the CLI prints: the job table, one job in full (prompt, parameters, timeline, handler messages)
and the usage report. Pure formatting, no I/O; the dashboard shows the same facts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .timeline import parse_time, timeline

TERMINAL = ("succeeded", "failed", "cancelled", "rejected")


def ago(iso: str, now: datetime | None = None) -> str:
    """``just now``, ``42 s ago``, ``3 min ago``, ``2 h ago``, ``5 days ago``."""
    seconds = ((now or datetime.now(UTC)) - parse_time(iso)).total_seconds()
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def span(seconds: float | None) -> str:
    """A length of time: ``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def prompt_of(job: Mapping[str, Any]) -> str:
    """The job's prompt (its shots' prompts joined), or ``(no prompt)``."""
    if job.get("prompt"):
        return str(job["prompt"])
    params = job.get("params") or {}
    texts = [params.get("text_prompt"), *(params.get(f"multishot_prompt_{n}") for n in range(1, 6))]
    return " / ".join(str(t) for t in texts if t) or "(no prompt)"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], width: int | None = None) -> str:
    """Columns padded to their widest cell; the last column is clipped to fit ``width``."""
    rows = [list(r) for r in rows]
    widths = [max([len(header[i]), *(len(r[i]) for r in rows)]) for i in range(len(header))]
    if width:
        fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
        widths[-1] = max(12, min(widths[-1], width - fixed))
    lines = []
    for row in [list(header), ["-" * w for w in widths], *rows]:
        cells = [*row[:-1], _clip(row[-1], widths[-1])]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _length(params: Mapping[str, Any]) -> int:
    shots = sum(int(params.get(f"multishot_duration_{n}") or 0) for n in range(1, 6))
    return int(params.get("duration") or shots)


def jobs_table(
    jobs: Sequence[Mapping[str, Any]], width: int | None = None, now: datetime | None = None
) -> str:
    """``runway-relay jobs``: id, status, model, length, progress, age and the prompt."""
    rows = []
    for job in jobs:
        length = _length(job.get("params") or {})
        rows.append(
            [
                job["id"],
                job["status"],
                job["model"],
                f"{length} s" if length else "auto",
                f"{(job['progress'] or 0) * 100:.0f}%",
                ago(job["created_at"], now),
                prompt_of(job),
            ]
        )
    return table(["ID", "STATUS", "MODEL", "LENGTH", "PROGRESS", "AGE", "PROMPT"], rows, width)


def _params(job: Mapping[str, Any]) -> list[str]:
    params = dict(job.get("params") or {})
    params.pop("model", None)
    params.pop("text_prompt", None)
    return [f"  {key}: {value}" for key, value in params.items()]


def _timeline(job: Mapping[str, Any], now: datetime | None) -> list[str]:
    lines = ["timeline:"]
    for entry in job.get("timeline") or timeline(job, now):
        when = parse_time(entry["at"]).astimezone().strftime("%H:%M:%S")
        detail = entry.get("detail")
        if entry["kind"] == "note":
            lines.append(f"  {when}  · {entry['label']}" + (f": {detail}" if detail else ""))
            continue
        spent = "" if entry["seconds"] is None else span(entry["seconds"])
        spent += " so far" if entry["ongoing"] else ""
        lines.append(f"  {when}  {entry['label']:<34} {spent}".rstrip())
        if detail:
            lines.append(f"            {detail}")
    return lines


def _handlers(job: Mapping[str, Any]) -> list[str]:
    tries: dict[int, list[Mapping[str, Any]]] = {}
    for attempt in job.get("handler_attempts") or []:
        tries.setdefault(attempt["run_id"], []).append(attempt)
    lines = []
    for run in job.get("handlers") or []:
        message = run.get("output") if run["status"] == "done" else run.get("last_error")
        head = f"handler {run['name']}: {run['status']} ({run['attempts']} attempt(s))"
        lines.append(head + (f" — {message}" if message else ""))
        for attempt in tries.get(run["id"], []):
            label = f"try {attempt['attempt']}"
            if attempt["round"]:
                label = f"replay {attempt['round']}, {label}"
            text = attempt.get("output") or attempt.get("error") or ""
            lines.append(f"    {label}: {attempt['outcome']}" + (f" — {text}" if text else ""))
    return lines


def job_details(job: Mapping[str, Any], now: datetime | None = None) -> str:
    """``runway-relay show``: the prompt, every parameter, the timeline and the handler messages."""
    progress = f"{(job['progress'] or 0) * 100:.0f}%"
    lines = [
        f"{job['id']}  {job['status']}  {job['model']}  {progress}  attempt {job['attempt']}",
        f"prompt: {prompt_of(job)}",
    ]
    if job.get("group_id"):
        lines.append(f"group: {job['group_id']}")
    lines += ["parameters:", *_params(job)]
    lines.append(f"account: {job.get('account') or '-'}   task: {job.get('task_id') or '-'}")
    if job.get("error"):
        kind = " (moderation)" if job.get("error_kind") == "moderation" else ""
        lines.append(f"error{kind}: {job['error']}")
    if job.get("transitions") is not None:
        lines += _timeline(job, now)
    for artifact in job.get("artifacts") or []:
        sha = f"  sha256={artifact['sha256']}" if artifact.get("sha256") else ""
        lines.append(f"artifact: {artifact.get('path') or artifact['url']}{sha}")
    return "\n".join(lines + _handlers(job))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


_STATS = ["JOBS", "VIDEO", "SUCCESS", "FAILURE", "MODERATION", "GEN P50", "GEN P95", "QUEUE P50", "429S"]


def _cells(r: Mapping[str, Any]) -> list[str]:
    return [
        str(r["jobs"]),
        f"{r['video_seconds']} s",
        _rate(r["success_rate"]),
        _rate(r["failure_rate"]),
        _rate(r["moderation_rate"]),
        span(r["generation_p50"]),
        span(r["generation_p95"]),
        span(r["queue_wait_p50"]),
        str(r["throttles"]),
    ]


def usage_report(usage: Mapping[str, Any], label: Any = str) -> str:
    """``runway-relay usage``: totals, per model and per day, per day × model × account, and slots."""
    t = usage["total"]
    summary = (
        f"last {usage['days']} day(s) since {usage['since'][:10]} (UTC): {t['jobs']} jobs, "
        f"{t['video_seconds']} s of video, success {_rate(t['success_rate'])}, "
        f"failure {_rate(t['failure_rate'])}, moderation {_rate(t['moderation_rate'])}, "
        f"generation p50 {span(t['generation_p50'])} / p95 {span(t['generation_p95'])}, "
        f"queue wait p50 {span(t['queue_wait_p50'])}, 429 rests {t['throttles']}"
    )
    parts = [
        summary,
        table(["MODEL", *_STATS], [[label(m["model"]), *_cells(m)] for m in usage["by_model"]]),
        table(["DAY", *_STATS], [[d["day"], *_cells(d)] for d in usage["by_day"]]),
    ]
    if usage.get("rows"):
        rows = [[r["day"], label(r["model"]), r["account"], *_cells(r)] for r in usage["rows"]]
        parts.append(table(["DAY", "MODEL", "ACCOUNT", *_STATS], rows))
    slots = [[a["email"], str(a["in_use"]), str(a["max_jobs"] or "?")] for a in usage.get("accounts") or []]
    parts.append(table(["ACCOUNT", "IN USE", "SLOTS"], slots) if slots else "no accounts known yet")
    return "\n\n".join(parts)
