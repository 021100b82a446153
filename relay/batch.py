"""``runway-relay batch FILE.jsonl``: one job per line, checked as a whole before anything is sent, and
resumable.

- Every line is read and validated first (JSON, an object, the model rules of :mod:`.rules`; the
  server then dry-runs the lines not sent yet, which also checks handler names). Every bad line is
  reported by number, and nothing is sent while any is bad.
- Each line gets a ``client_ref`` (its own, or one derived from the file and the line's content), which
  the relay stores with the job: the same ref twice is the same job. A state file beside the input
  (``FILE.jsonl.sent``) records each line as it is sent, so a rerun after an interruption sends only
  what was not sent, and the relay's ref check covers a line sent just before the interruption.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from . import rules
from .client import EXIT_FAILED, Client, error_text, fail

RESERVED = ("replyUrl", "replyRef")


@dataclass(frozen=True)
class Line:
    """One job of the file: its line number, the request body and its idempotency key."""

    number: int
    body: dict[str, Any]
    client_ref: str


def state_path(path: Path) -> Path:
    """Where a batch file's sending is recorded: ``FILE.jsonl.sent`` beside it."""
    return path.with_name(path.name + ".sent")


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read(path: Path) -> tuple[list[Line], list[str]]:
    """The file's jobs and the problems found reading it (``line N: …``); blank lines are skipped.

    A line without its own ``client_ref`` gets ``batch-<file>-<content>-<k>``: the k-th line with that
    content in that file, so inserting or reordering lines does not change the others' refs.
    """
    file_key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    lines: list[Line] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"line {number}: not UTF-8 text (is {path.name} a JSONL file?)")
                continue
            if not text.strip():
                continue
            try:
                body = json.loads(text)
            except ValueError as exc:
                problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(body, dict):
                problems.append(f"line {number}: each line must be a JSON object of videos/create fields")
                continue
            ref = body.pop("client_ref", None)
            if ref is None:
                content = hashlib.sha256(_canonical(body)).hexdigest()[:16]
                seen[content] = seen.get(content, 0) + 1
                ref = f"batch-{file_key}-{content}-{seen[content]}"
            elif not isinstance(ref, str) or not ref.strip():
                problems.append(f"line {number}: client_ref must be a non-empty string")
                continue
            lines.append(Line(number, body, ref))
    return lines, problems


def check(line: Line) -> list[str]:
    """The line's problems by the model rules (``line N: field: message``), ``[]`` when it is fine."""
    body = {k: v for k, v in line.body.items() if k != "handlers"}
    found = [
        f"line {line.number}: {name} is set by the relay; leave it out" for name in RESERVED if name in body
    ]
    handlers = line.body.get("handlers")
    if handlers is not None and not (
        isinstance(handlers, list) and all(isinstance(h, str) for h in handlers)
    ):
        found.append(f"line {line.number}: handlers must be a list of handler names")
    body = {k: v for k, v in body.items() if k not in RESERVED}
    found += [f"line {line.number}: {p.message}" for p in rules.problems(body)]
    return found


@dataclass
class State:
    """What was sent from one batch file: ``client_ref`` → job id, appended as each line is sent."""

    path: Path
    sent: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> State:
        """The state beside ``path`` (empty when there is none); a torn last line is ignored."""
        state = cls(state_path(path))
        if state.path.exists():
            for text in state.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(text)
                    state.sent[str(entry["client_ref"])] = str(entry["id"])
                except (ValueError, KeyError, TypeError):
                    continue
        return state

    def record(self, line: Line, job_id: str) -> None:
        """Append one sent line, flushed to disk before the next is sent."""
        entry = {"line": line.number, "client_ref": line.client_ref, "id": job_id}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.sent[line.client_ref] = job_id

    def forget(self) -> None:
        """Start over: the next run sends every line (the relay still knows the refs it stored)."""
        self.path.unlink(missing_ok=True)
        self.sent.clear()


def dry_run(client: Client, lines: list[Line]) -> list[str]:
    """The relay's own check of each line (handler names included), without storing anything."""
    problems = []
    for line in lines:
        status, body = client.request("POST", "/api/jobs", params={"dry_run": "1"}, json=line.body)
        if status >= 400:
            problems.append(f"line {line.number}: {error_text(body)}")
    return problems


def send(client: Client, state: State, lines: list[Line]) -> list[Line]:
    """Queue each line with its client_ref, recording it as it goes; returns the lines refused."""
    refused = []
    for line in lines:
        status, job = client.request("POST", "/api/jobs", json={**line.body, "client_ref": line.client_ref})
        if status >= 500 or status in (401, 403):
            fail(f"line {line.number}: error ({status}): {error_text(job)}; rerun to continue", EXIT_FAILED)
        if status >= 400:
            click.echo(f"line {line.number}: refused ({status}): {error_text(job)}", err=True)
            refused.append(line)
            continue
        state.record(line, job["id"])
        note = "  (sent before the interruption)" if status == 200 else ""
        click.echo(f"{job['id']}  line {line.number}{note}")
    return refused
