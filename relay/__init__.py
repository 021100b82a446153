"""runway-relay: submit useapi.net Runway video jobs and relay their progress to your handlers."""

from .errors import (
    BadRequest,
    Busy,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RelayError,
    StorageUnavailable,
    Unauthorized,
    UpstreamError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Busy",
    "Conflict",
    "NotFound",
    "PayloadTooLarge",
    "RelayError",
    "StorageUnavailable",
    "Unauthorized",
    "UpstreamError",
    "ValidationError",
    "__version__",
]
