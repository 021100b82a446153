"""The OpenAPI paths of the console's routes: compare groups and usage.

Part of the description served at ``GET /openapi.json`` (assembled in :mod:`.openapi`).
"""

from __future__ import annotations

from ..usage import MAX_DAYS
from .openapi_schemas import Schema, ref

JSON = "application/json"
_ERROR = {"description": "", "content": {JSON: {"schema": ref("Error")}}}


def _error(description: str) -> Schema:
    return {**_ERROR, "description": description}


def console_paths() -> dict[str, Schema]:
    """``/api/groups``, ``/api/groups/{id}`` and ``/api/usage``."""
    group = {
        "type": "object",
        "required": ["group_id", "jobs"],
        "properties": {"group_id": {"type": "string"}, "jobs": {"type": "array", "items": ref("Job")}},
    }
    tally = {"type": "object", "description": "Jobs, seconds of video, rates, p50/p95 times, 429 rests."}
    usage = {
        "type": "object",
        "required": ["days", "total", "by_day", "by_model", "by_account", "rows", "accounts"],
        "properties": {
            "days": {"type": "integer"},
            "since": {"type": "string"},
            "total": tally,
            "by_day": {"type": "array", "items": tally},
            "by_model": {"type": "array", "items": tally},
            "by_account": {"type": "array", "items": tally},
            "rows": {"type": "array", "items": tally, "description": "Per day, model and account."},
            "accounts": {"type": "array", "items": {"type": "object"}, "description": "Slots in use now."},
        },
    }
    unauthorized = _error("Missing or wrong API key (`RELAY_API_KEY`).")
    return {
        "/api/groups": {
            "post": {
                "summary": "One request sent to several models at once (`models: [...]`): a group.",
                "description": "Every model is checked first; nothing is stored if one breaks a rule.",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["models"],
                                "properties": {"models": {"type": "array", "items": {"type": "string"}}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": {"description": "Stored, queued.", "content": {JSON: {"schema": group}}},
                    "400": _error("The body is not a JSON object."),
                    "401": unauthorized,
                    "413": _error("The body is over the limit."),
                    "415": _error("The body's Content-Type is not JSON."),
                    "422": _error("A model breaks a rule; `field` says where, `problems` lists them all."),
                    "503": _error("The database cannot take writes right now."),
                },
            }
        },
        "/api/groups/{id}": {
            "get": {
                "summary": "A compare group's jobs, in the order they were sent.",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The group.", "content": {JSON: {"schema": group}}},
                    "401": unauthorized,
                    "404": _error("No such group."),
                },
            }
        },
        "/api/usage": {
            "get": {
                "summary": "Usage per model, account and day, and each account's slots in use now.",
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
                    }
                ],
                "responses": {
                    "200": {"description": "The usage.", "content": {JSON: {"schema": usage}}},
                    "401": unauthorized,
                    "422": _error("`days` is not a whole number in range."),
                },
            }
        },
    }
