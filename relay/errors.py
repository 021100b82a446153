"""One exception hierarchy for the whole relay.

Callers can catch :class:`RelayError` broadly or a subclass precisely. Each subclass carries the HTTP
status it maps to, so the receiver turns any of them into a JSON answer in exactly one place.
"""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Base class of every error the relay raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON body the HTTP API answers with."""
        return {"error": self.message}


class ValidationError(RelayError):
    """A request breaks a rule (a model rule, a type, a limit). Nothing was stored or sent."""

    status_code = 422

    def __init__(
        self, message: str, field: str | None = None, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems or ([{"field": field, "error": message}] if field else [])

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "field": self.field}
        if len(self.problems) > 1:
            body["problems"] = self.problems
        return body


class BadRequest(RelayError):
    """The request itself is malformed (not JSON, not an object)."""

    status_code = 400


class NotFound(RelayError):
    """No such job, token or resource."""

    status_code = 404


class Conflict(RelayError):
    """The request is valid but the resource's state does not allow it (e.g. cancel a finished job)."""

    status_code = 409


class PayloadTooLarge(RelayError):
    """The request body is over the limit. ``drained``: the rest of the body was read and dropped,
    so the connection can stay open; otherwise the answer closes it."""

    status_code = 413

    def __init__(self, message: str, drained: bool = True) -> None:
        super().__init__(message)
        self.drained = drained


class Busy(RelayError):
    """A limit is reached (say, of open event streams); the sender should try again shortly."""

    status_code = 503


class Unauthorized(RelayError):
    """Missing or wrong API key."""

    status_code = 401


class StorageUnavailable(RelayError):
    """The database cannot take writes right now (read-only, disk full); the sender should retry."""

    status_code = 503


class UpstreamError(RelayError):
    """useapi.net answered with an error or could not be reached."""

    status_code = 502

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
