"""Schema, versioned from day one: numbered migrations that each run once (sqlite-utils ``Migrations``).

Add a change as a new function at the bottom; never edit one that has shipped.
"""

from __future__ import annotations

import json

from sqlite_utils import Database, Migrations

migrations = Migrations("runway_relay")


@migrations()
def m001_initial(db: Database) -> None:
    """Jobs, their attempts, every event, every transition, the handler outbox and artifacts."""
    db["jobs"].create(
        {
            "id": str,
            "status": str,
            "model": str,
            "params": str,
            "handlers": str,
            "account": str,
            "task_id": str,
            "progress": float,
            "progress_text": str,
            "attempt": int,
            "error": str,
            "error_kind": str,
            "created_at": str,
            "updated_at": str,
            "last_update_at": float,
            "submitting_since": float,
            "next_submit_at": float,
            "submit_tries": int,
            "next_poll_at": float,
            "poll_tries": int,
            "upstream_artifacts": str,
        },
        pk="id",
        not_null={"status", "model", "params", "attempt", "created_at", "updated_at"},
        defaults={"progress": 0.0, "attempt": 1, "submit_tries": 0, "poll_tries": 0},
    )
    db["jobs"].create_index(["status", "id"])
    db["jobs"].create_index(["model", "id"])
    db["attempts"].create(
        {
            "job_id": str,
            "attempt": int,
            "reply_ref": str,
            "token_hash": str,
            "task_id": str,
            "account": str,
            "submitted_at": str,
        },
        pk=("job_id", "attempt"),
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["attempts"].create_index(["token_hash"], unique=True)
    db["attempts"].create_index(["reply_ref"])
    db["events"].create(
        {
            "id": int,
            "job_id": str,
            "attempt": int,
            "source": str,
            "kind": str,
            "outcome": str,
            "status": str,
            "progress": float,
            "detail": str,
            "body": str,
            "at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["events"].create_index(["job_id", "id"])
    db["transitions"].create(
        {
            "id": int,
            "job_id": str,
            "attempt": int,
            "from_status": str,
            "to_status": str,
            "progress": float,
            "signal": str,
            "at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["transitions"].create_index(["job_id", "id"])
    db["handler_runs"].create(
        {
            "id": int,
            "job_id": str,
            "transition_id": int,
            "handler": str,
            "signal": str,
            "status": str,
            "attempts": int,
            "next_at": float,
            "last_error": str,
            "output": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"job_id", "handler", "signal", "status"},
        defaults={"attempts": 0},
        foreign_keys=[("job_id", "jobs", "id"), ("transition_id", "transitions", "id")],
    )
    db["handler_runs"].create_index(["status", "next_at"])
    db["handler_runs"].create_index(["job_id"])
    db["handler_runs"].create_index(["transition_id", "handler"], unique=True)
    db["artifacts"].create(
        {
            "id": int,
            "job_id": str,
            "attempt": int,
            "url": str,
            "path": str,
            "size": int,
            "sha256": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["artifacts"].create_index(["job_id", "url"], unique=True)
    db["accounts"].create(
        {"email": str, "max_jobs": int, "capacity": int, "backoff_until": float, "updated_at": str},
        pk="email",
    )
    db["assets"].create(
        {"asset_id": str, "account": str, "name": str, "media_type": str, "created_at": str},
        pk="asset_id",
    )


@migrations()
def m002_jobs_submitting_index(db: Database) -> None:
    """The scheduler counts jobs whose create is in flight on every pass: index them."""
    db["jobs"].create_index(["submitting_since"], index_name="idx_jobs_submitting_since")


@migrations()
def m003_events_outcome_index(db: Database) -> None:
    """/metrics counts callbacks and upstream exchanges by outcome: let it read an index, not the table."""
    db["events"].create_index(["source", "outcome"], index_name="idx_events_source_outcome")


@migrations()
def m004_console(db: Database) -> None:
    """What the console lists, searches and groups by, and every finished try of a handler run.

    ``jobs`` gains ``prompt`` (the text prompt, or the shot prompts joined, for search and the list),
    ``duration`` (seconds of video asked for; the shots' sum with multishot, null when automatic),
    ``group_id`` (the compare group a job was sent in) and ``client_ref`` (a client's idempotency key,
    unique: the same key twice is the same job). ``handler_runs`` gains ``replays`` (how often the run
    was replayed) and ``handler_attempts`` keeps each finished try, so a replay no longer erases history.
    """
    from .insights import summary_columns  # here, not at the top: insights imports base, base imports us

    for name, kind in (("prompt", str), ("duration", int), ("group_id", str), ("client_ref", str)):
        db["jobs"].add_column(name, kind)
    db["handler_runs"].add_column("replays", int, not_null_default=0)
    for row in list(db.query("select id, params from jobs")):
        columns = summary_columns(json.loads(row["params"]))
        db.execute(
            "update jobs set prompt = ?, duration = ? where id = ?",
            [columns["prompt"], columns["duration"], row["id"]],
        )
    db["jobs"].create_index(["group_id"], index_name="idx_jobs_group_id")
    db["jobs"].create_index(["client_ref"], index_name="idx_jobs_client_ref", unique=True)
    db["jobs"].create_index(["account", "id"], index_name="idx_jobs_account_id")
    db["jobs"].create_index(["created_at"], index_name="idx_jobs_created_at")
    db["handler_attempts"].create(
        {
            "id": int,
            "run_id": int,
            "job_id": str,
            "handler": str,
            "round": int,  # 0 for the run's first round of tries, n after its n-th replay
            "attempt": int,  # 1-based within the round
            "outcome": str,  # done | failed (a retry follows) | dead
            "output": str,
            "error": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"run_id", "job_id", "handler", "outcome"},
        foreign_keys=[("run_id", "handler_runs", "id"), ("job_id", "jobs", "id")],
    )
    db["handler_attempts"].create_index(["job_id", "id"], index_name="idx_handler_attempts_job")
