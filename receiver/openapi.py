"""The OpenAPI 3.1 description of the relay's HTTP surface, served at ``GET /openapi.json``.

Kept by hand, next to the routes it describes; ``tests/test_openapi.py`` fails when a route of the app
is missing here (or described but gone), and a schemathesis run checks the answers against it.
The built-in simulator (mounted only without ``USEAPI_TOKEN``) is useapi.net's API, not the relay's,
and is left out, with the sample media served beside it (``/samples/…``).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..states import Status
from .openapi_console import console_paths
from .openapi_schemas import Schema, component_schemas, nullable, ref

JSON = "application/json"


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_ERRORS = {
    400: "The request is malformed (not JSON, not an object, not multipart).",
    401: "Missing or wrong API key (`RELAY_API_KEY`).",
    404: "No such job, account, token or file.",
    409: "The job's state does not allow it (it already ended), a `client_ref` already names a job "
    "with other parameters, or a prune is running already.",
    413: "The body is over the limit.",
    415: "The body's Content-Type is not one this route takes.",
    422: "A rule is broken; `field` names the parameter. Nothing was stored or sent upstream.",
    502: "useapi.net refused the request or could not be reached.",
    503: "The database cannot take writes right now; retry after `Retry-After` seconds.",
}


def _answers(ok: dict[int, Schema], *errors: int) -> dict[str, Schema]:
    answers = {str(status): answer for status, answer in ok.items()}
    answers.update({str(status): _json(ref("Error"), _ERRORS[status]) for status in errors})
    return answers


def _path_param(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_JOB_ID = _path_param("id", "The job id.")
_OPEN: list[Schema] = []  # no key needed
_HTML = {"text/html": {"schema": {"type": "string"}}}
_SEE_OTHER = {
    "description": "Redirect (to `/login` without a session, or to `/` after signing in).",
    "headers": {"Location": {"schema": {"type": "string"}}},
}


def _job_paths() -> dict[str, Schema]:
    job_answer = {200: _json(ref("Job"), "The job.")}
    events = {"text/event-stream": {"schema": {"type": "string"}}}
    return {
        "/api/jobs": {
            "post": {
                "summary": "Submit a job (validated against the model rules, stored queued).",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("JobRequest")}}},
                "parameters": [
                    {
                        "name": "dry_run",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["1", "true"]},
                        "description": "Only validate: 200 with the normalized fields, nothing stored.",
                    }
                ],
                "responses": _answers(
                    {
                        201: _json(ref("Job"), "Stored, queued."),
                        200: _json(
                            {"oneOf": [ref("Job"), {"type": "object", "required": ["ok", "params"]}]},
                            "The job already stored with this `client_ref`, or a dry run's answer.",
                        ),
                    },
                    400,
                    401,
                    409,
                    413,
                    415,
                    422,
                    503,
                ),
            },
            "get": {
                "summary": "List jobs, newest first.",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in Status]},
                    },
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {"name": "account", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "A word of the prompt (any case) or the beginning of a job id.",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "The `next_cursor` of the previous page.",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{12}-[0-9a-f]{8}$"},
                    },
                ],
                "responses": _answers({200: _json(ref("JobList"), "A page of jobs.")}, 401, 422),
            },
        },
        "/api/jobs/{id}": {
            "get": {
                "summary": "One job with its events, transitions and handler runs.",
                "parameters": [_JOB_ID],
                "responses": _answers({200: _json(ref("JobDetail"), "The job.")}, 401, 404),
            }
        },
        "/api/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel the job and free its slot upstream (DELETE scheduler).",
                "parameters": [_JOB_ID],
                "responses": _answers(job_answer, 401, 404, 409, 503),
            }
        },
        "/api/jobs/{id}/replay": {
            "post": {
                "summary": "Run the handlers of the job's last transition again.",
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "handler",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only this one.",
                    },
                ],
                "responses": _answers(
                    {
                        202: _json(
                            {
                                "type": "object",
                                "required": ["replayed"],
                                "properties": {"replayed": {"type": "array", "items": {"type": "object"}}},
                            },
                            "The runs queued again.",
                        )
                    },
                    401,
                    404,
                    409,
                    422,
                    503,
                ),
            }
        },
        "/api/jobs/{id}/events": {
            "get": {
                "summary": "Server-Sent Events with the job's JSON on every change, until it ends.",
                "parameters": [_JOB_ID],
                "responses": _answers(
                    {200: {"description": "An event stream.", "content": events}}, 401, 404
                ),
            }
        },
        "/api/events": {
            "get": {
                "summary": "Server-Sent Events for every job.",
                "responses": _answers({200: {"description": "An event stream.", "content": events}}, 401),
            }
        },
    }


def _other_paths() -> dict[str, Schema]:
    upload = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "An image or a video."},
            "email": {"type": "string", "description": "Upload to this Runway account."},
        },
    }
    asset = {
        "type": "object",
        "required": ["assetId"],
        "properties": {"assetId": {"type": "string"}, "account": nullable("string")},
    }
    callback_answer = {
        "type": "object",
        "required": ["ok", "outcome"],
        "properties": {"ok": {"type": "boolean"}, "outcome": {"type": "string"}},
    }
    return {
        "/callbacks/{token}": {
            "post": {
                "summary": "Where useapi.net posts a task's progress (replyUrl); the token is the secret.",
                "security": _OPEN,
                "parameters": [_path_param("token", "The per-attempt callback token.")],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": {"type": "object", "description": "The task, or {task: ...}."}}
                    },
                },
                "responses": _answers(
                    {200: _json(callback_answer, "Durably recorded: applied, duplicate, stale or ignored.")},
                    400,
                    404,
                    413,
                    503,
                ),
            }
        },
        "/api/assets": {
            "post": {
                "summary": "Upload an image or video upstream as an asset.",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                "responses": _answers({201: _json(asset, "Uploaded.")}, 400, 401, 413, 415, 422, 502, 503),
            }
        },
        "/api/models": {
            "get": {
                "summary": "The model rules, for forms and scripts.",
                "responses": _answers(
                    {
                        200: _json(
                            {
                                "type": "object",
                                "required": ["models"],
                                "properties": {"models": {"type": "array", "items": {"type": "object"}}},
                            },
                            "Every model and its rules.",
                        )
                    },
                    401,
                ),
            }
        },
        "/api/accounts": {
            "get": {
                "summary": "Each Runway account: slots and capacity, pause, rotation, credits, jobs today.",
                "responses": _answers({200: _json(ref("AccountList"), "The known accounts.")}, 401, 503),
            }
        },
        "/api/accounts/{email}/resume": {
            "post": {
                "summary": "Lift the account's moderation pause and bring it back into rotation.",
                "parameters": [_path_param("email", "The Runway account's email.")],
                "responses": _answers({200: _json(ref("Resumed"), "What was lifted.")}, 401, 404, 503),
            }
        },
        "/api/prune": {
            "post": {
                "summary": "Remove the history of old finished jobs through this relay "
                "(`runway-relay prune` sends this when the relay serves the SQLite file).",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("PruneRequest")}}},
                "responses": _answers(
                    {200: _json(ref("PruneReport"), "What was removed.")}, 400, 401, 409, 413, 415, 422, 503
                ),
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness; job counts and handler names only with the key.",
                "security": _OPEN,
                "responses": {"200": _json(ref("Health"), "Alive.")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database takes writes, the loops run, the upstream answers.",
                "responses": _answers(
                    {
                        200: _json(ref("Readiness"), "Ready."),
                        503: _json(ref("Readiness"), "Not ready; `reasons` says why."),
                    },
                    401,
                ),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition of the relay_* series.",
                "responses": _answers(
                    {
                        200: {
                            "description": "Text format (or OpenMetrics when the Accept header asks).",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    401,
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This description.",
                "responses": _answers({200: _json({"type": "object"}, "OpenAPI 3.1.")}, 401),
            }
        },
        **_page_paths(),
    }


def _page_paths() -> dict[str, Schema]:
    return {
        "/": {
            "get": {
                "summary": "The dashboard.",
                "responses": {"200": {"description": "The page.", "content": _HTML}, "303": _SEE_OTHER},
            }
        },
        "/files/{job}/{name}": {
            "get": {
                "summary": "A downloaded artifact, for the dashboard's player.",
                "parameters": [_path_param("job", "The job id."), _path_param("name", "The file name.")],
                "responses": _answers(
                    {200: {"description": "The file.", "content": {"*/*": {"schema": {"type": "string"}}}}},
                    401,
                    404,
                ),
            }
        },
        "/login": {
            "get": {
                "summary": "The dashboard's sign-in form.",
                "security": _OPEN,
                "responses": {"200": {"description": "The form.", "content": _HTML}, "303": _SEE_OTHER},
            },
            "post": {
                "summary": "Check the key and set the session cookie.",
                "security": _OPEN,
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "properties": {"key": {"type": "string"}}}
                        }
                    }
                },
                "responses": {
                    "303": _SEE_OTHER,
                    "400": _json(ref("Error"), "Not a form this page sent (too many fields)."),
                    "401": {"description": "Wrong key: the form again.", "content": _HTML},
                    "403": _json(ref("Error"), "Sent from another site (its Origin is not this relay's)."),
                    "429": _json(ref("Error"), "Too many wrong keys from this address: wait Retry-After."),
                },
            },
        },
        "/logout": {
            "post": {
                "summary": "End the dashboard session (clears the cookie) and go to the sign-in form.",
                "security": _OPEN,
                "responses": {
                    "303": _SEE_OTHER,
                    "403": _json(ref("Error"), "Sent from another site (its Origin is not this relay's)."),
                },
            },
        },
    }


_OPERATION_IDS = {
    ("/api/jobs", "post"): "createJob",
    ("/api/jobs", "get"): "listJobs",
    ("/api/jobs/{id}", "get"): "getJob",
    ("/api/jobs/{id}/cancel", "post"): "cancelJob",
    ("/api/jobs/{id}/replay", "post"): "replayJob",
    ("/api/jobs/{id}/events", "get"): "jobEvents",
    ("/api/events", "get"): "allEvents",
    ("/callbacks/{token}", "post"): "receiveCallback",
    ("/api/assets", "post"): "uploadAsset",
    ("/api/models", "get"): "listModels",
    ("/api/accounts", "get"): "listAccounts",
    ("/api/accounts/{email}/resume", "post"): "resumeAccount",
    ("/api/prune", "post"): "prune",
    ("/healthz", "get"): "health",
    ("/readyz", "get"): "readiness",
    ("/metrics", "get"): "metrics",
    ("/openapi.json", "get"): "openapi",
    ("/", "get"): "dashboard",
    ("/files/{job}/{name}", "get"): "artifactFile",
    ("/login", "get"): "loginForm",
    ("/login", "post"): "login",
    ("/logout", "post"): "logout",
    ("/api/groups", "post"): "createGroup",
    ("/api/groups/{id}", "get"): "getGroup",
    ("/api/usage", "get"): "usage",
}
# What a created job's id leads to (clients and schemathesis' stateful phase follow these).
_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"id": "$response.body#/id"}}
    for name, operation in (("GetJob", "getJob"), ("CancelJob", "cancelJob"), ("ReplayJob", "replayJob"))
}


def _paths() -> dict[str, Any]:
    paths = {**_job_paths(), **_other_paths(), **console_paths()}
    for (path, method), operation_id in _OPERATION_IDS.items():
        paths[path][method]["operationId"] = operation_id
    paths["/api/jobs"]["post"]["responses"]["201"]["links"] = _JOB_LINKS
    return paths


def _version() -> str:
    try:
        return version("runway-relay")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once; the routes and rules do not change while running)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runway-relay",
            "version": _version(),
            "description": "Submit useapi.net Runway video jobs, receive their callbacks, run handlers.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "`RELAY_API_KEY`."},
                "session": {"type": "apiKey", "in": "cookie", "name": "relay_session"},
            },
        },
    }
