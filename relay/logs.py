"""Logging set-up: one line per event, and no secret ever reaches a log line."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, urlsplit

_CALLBACK_PATH = re.compile(r"(/callbacks/)[^\s/?\"']+")
_FORMATTER = logging.Formatter()
_BEARER = re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE)
MASK = "***"
# Shorter values are not registered: masking every "abc" would garble logs and protect nothing.
MIN_SECRET = 6
_secrets: tuple[str, ...] = ()  # none contains another, so the order of masking does not matter


def _variants(value: str) -> set[str]:
    """The pieces of a secret to mask, so that however it is echoed none of it shows.

    A URL's secret is its token (the last path segment of a Slack or Discord webhook), query or
    password; when it has none of those long enough, the path, else the whole URL. ``whsec_`` keys
    are masked by their base64 part. Each piece also percent-encoded, when that differs.
    """
    pieces = [value.removeprefix("whsec_")]
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        secret = [p for p in (last, parts.query, parts.password or "") if len(p) >= MIN_SECRET]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        pieces = secret or ([path] if len(path) >= 8 else [value])
    found = {piece for piece in pieces if len(piece) >= MIN_SECRET}
    return found | {quote(piece, safe="") for piece in found}


def _minimal(values: set[str]) -> tuple[str, ...]:
    """Drop every value that contains another: masking the shorter one masks it too (fewer scans)."""
    kept = [v for v in values if not any(other != v and other in v for other in values)]
    return tuple(sorted(kept, key=len, reverse=True))


def register_secrets(*values: str | None) -> None:
    """Mask these values (and the forms they are echoed in) wherever :func:`redact` runs.

    Called once at start-up with every configured secret: webhook URLs, the forward URL and its
    signing secret, ``USEAPI_TOKEN``, ``RELAY_API_KEY``. Values under ``MIN_SECRET`` characters are
    ignored.
    """
    global _secrets
    found = set(_secrets)
    for value in values:
        if value and len(value) >= MIN_SECRET:
            found |= _variants(value)
    _secrets = _minimal(found)


def forget_secrets() -> None:
    """Unregister every secret (for tests that configure several relays in one process)."""
    global _secrets
    _secrets = ()


def redact(text: str) -> str:
    """Hide registered secrets, callback tokens in paths and bearer tokens.

    Redact before shortening a text: a cut through a secret leaves a piece no check recognises.
    """
    for secret in _secrets:  # a few substring scans; nothing at all when none is registered
        if secret in text:
            text = text.replace(secret, MASK)
    # The common case, cheaply: plain substring scans are ten times faster than a case-blind regex.
    if "/callbacks/" not in text and "bearer" not in text.lower():
        return text
    return _BEARER.sub(r"\1***", _CALLBACK_PATH.sub(r"\1***", text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact` (uvicorn's access log shows paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Tracebacks quote URLs too (an httpx error names the replyUrl it failed to reach).
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return True


def setup(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the root logger and make sure every handler redacts secrets.

    ``log_format="json"`` writes one JSON object per line (``relay/logformat.py``).
    """
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if log_format == "json":
        from .logformat import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    install_filter()


def install_filter() -> None:
    """Attach the redacting filter to all existing handlers and the uvicorn loggers."""
    redactor = RedactingFilter()
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error", "httpx")),
    ]
    for logger in loggers:
        logger.addFilter(redactor)
        for handler in logger.handlers:
            handler.addFilter(redactor)
    # httpx logs every request URL at INFO, and a replyUrl may be inside; keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
