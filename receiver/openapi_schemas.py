"""The component schemas of the OpenAPI description (``receiver/openapi.py``): jobs, errors, health."""

from __future__ import annotations

from typing import Any

from .. import rules
from ..states import Status

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **more: Any) -> Schema:
    """A JSON Schema type that may also be ``null``."""
    return {"type": [kind, "null"], **more}


def _job_schemas() -> dict[str, Schema]:
    artifact = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string"},
            "path": nullable("string", description="Where the download handler stored it."),
            "size": nullable("integer"),
            "sha256": nullable("string", description="Of the bytes on disk."),
            "preview_url": nullable("string"),
        },
    }
    handler_run = {
        "type": "object",
        "required": ["name", "status", "attempts"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "signal": {"type": "string"},
            "status": {"type": "string", "description": "pending, running, done or dead."},
            "attempts": {"type": "integer"},
            "last_error": nullable("string"),
            "output": nullable("string", description="What the handler said it did."),
            "replays": {"type": "integer", "description": "How often the run was replayed."},
            "updated_at": nullable("string"),
        },
    }
    job = {
        "type": "object",
        "required": ["id", "status", "model", "params", "progress", "attempt", "artifacts", "handlers"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "model": {"type": "string"},
            "params": {"type": "object", "description": "The videos/create fields, normalized."},
            "account": nullable("string"),
            "task_id": nullable("string"),
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "progress_text": nullable("string"),
            "attempt": {"type": "integer", "minimum": 1},
            "error": nullable("string"),
            "error_kind": nullable("string"),
            "artifacts": {"type": "array", "items": artifact},
            "handlers": {"type": "array", "items": handler_run},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "prompt": nullable("string", description="The text prompt (multishot: the shots' prompts)."),
            "group_id": nullable("string", description="The compare group it was sent in."),
            "client_ref": nullable("string", description="The client's idempotency key."),
        },
    }
    history = {"type": "array", "items": {"type": "object"}}
    detail = {
        "allOf": [
            ref("Job"),
            {
                "type": "object",
                "properties": {
                    "events": {**history, "description": "Callbacks, polls and upstream exchanges."},
                    "transitions": {**history, "description": "Every status move, with its signal."},
                    "timeline": {**history, "description": "Phases with the time spent in each."},
                    "handler_attempts": {**history, "description": "Every finished try of each handler."},
                },
            },
        ]
    }
    return {"Job": job, "JobDetail": detail}


def _request_schema() -> Schema:
    text, number = {"type": "string"}, {"type": "integer"}
    return {
        "type": "object",
        "required": ["model"],
        "description": "The videos/create fields (see `GET /api/models` for each model's rules), "
        "plus `handlers`. `multishot_prompt_N` / `multishot_duration_N` are accepted too.",
        "properties": {
            "model": {"type": "string", "enum": list(rules.MODELS)},
            "text_prompt": text,
            "duration": number,
            "aspect_ratio": text,
            "resolution": text,
            "audio": {"type": "boolean"},
            "seed": number,
            "imageAssetId1": text,
            "imageAssetId2": text,
            "videoAssetId": text,
            "exploreMode": {"type": "boolean"},
            "email": text,
            "handlers": {"type": "array", "items": text, "description": "Only these handlers for this job."},
        },
    }


def _account_schemas() -> dict[str, Schema]:
    when = nullable("string", description="ISO 8601, UTC.")
    number = nullable("number")
    account = {
        "type": "object",
        "required": ["email", "state", "slots_in_use", "paused", "in_rotation", "credits", "jobs_today"],
        "properties": {
            "email": {"type": "string"},
            "state": {"type": "string", "enum": ["ok", "resting", "paused", "no-credits", "out-of-rotation"]},
            "slots_in_use": {
                "type": "integer",
                "minimum": 0,
                "description": "Jobs running or being created.",
            },
            "capacity": nullable("integer", description="Jobs at once, as learned from Runway's 429s."),
            "max_jobs": nullable("integer", description="maxJobs as configured at useapi.net."),
            "resting_until": when,
            "paused": {"type": "boolean", "description": "A moderation pause: no new creates."},
            "paused_reason": nullable("string"),
            "paused_until": when,
            "paused_at": when,
            "in_rotation": {"type": "boolean", "description": "False after repeated failed sessions."},
            "out_of_rotation_reason": nullable("string"),
            "out_of_rotation_at": when,
            "credits": {
                "type": "object",
                "properties": {
                    "permitted": number,
                    "used": number,
                    "left": number,
                    "low": {"type": "boolean"},
                    "checked_at": when,
                },
            },
            "moderation": {
                "type": "object",
                "properties": {
                    "failures": {"type": "integer", "description": "Moderation failures counted now."},
                    "limit": nullable("integer"),
                    "window": nullable("string"),
                },
            },
            "last_error": nullable("string"),
            "last_error_at": when,
            "jobs_today": {"type": "integer", "minimum": 0, "description": "Created on it since 00:00 UTC."},
        },
    }
    listing = {
        "type": "object",
        "required": ["accounts"],
        "properties": {
            "accounts": {"type": "array", "items": ref("Account")},
            "moderation_pause": nullable("string", description="RELAY_MODERATION_PAUSE, e.g. 3/1h."),
            "credits_low": nullable("string", description="RELAY_CREDITS_LOW, e.g. 10%."),
        },
    }
    resumed = {
        "type": "object",
        "required": ["email", "lifted", "account"],
        "properties": {
            "email": {"type": "string"},
            "lifted": {"type": "array", "items": {"type": "string"}, "description": "Empty: nothing was."},
            "account": ref("Account"),
        },
    }
    return {"Account": account, "AccountList": listing, "Resumed": resumed}


def component_schemas() -> dict[str, Schema]:
    """Every named schema the paths refer to."""
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What was wrong and what to do."},
                "field": nullable("string"),
                "problems": {"type": "array", "items": {"type": "object"}},
            },
        },
        **_job_schemas(),
        **_account_schemas(),
        "JobRequest": _request_schema(),
        "JobList": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "next_cursor": nullable("string", description="Pass as `cursor` for the next page."),
            },
        },
        "PruneRequest": {
            "type": "object",
            "required": ["older_than"],
            "additionalProperties": False,
            "properties": {
                "older_than": {
                    "type": "string",
                    "description": "Finished jobs last updated longer ago than this: `30d`, `12h`, `0d`.",
                },
                "files": {"type": "boolean", "description": "Also delete their downloaded files."},
                "jobs": {"type": "boolean", "description": "Also delete the job rows (else kept, compact)."},
                "vacuum": {"type": "boolean", "description": "End with a full VACUUM (blocks writes)."},
            },
        },
        "PruneReport": {
            "type": "object",
            "required": ["removed", "skipped_files", "size_before", "size_after", "seconds"],
            "properties": {
                "removed": {"type": "object", "additionalProperties": {"type": "integer"}},
                "skipped_files": {"type": "integer"},
                "size_before": {"type": "integer", "description": "Database bytes before."},
                "size_after": {"type": "integer"},
                "seconds": {"type": "number"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "reason": nullable("string"),
                "upstream": {"type": "string"},
                "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
                "handlers": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "upstream": {"type": "string", "enum": ["simulator", "useapi.net"]},
            },
        },
    }
