"""One reading of an HTTP answer for every handler that calls out (webhooks, forward, downloads).

:func:`verdict` is pure: 2xx is done; 429 waits (as long as the receiver asks, else with backoff);
408 and 425 are worth trying again, as are 5xx and anything else; every other 4xx says the request
itself is wrong, so sending it again cannot help and the run gives up. :func:`check_answer` turns a
response into that decision: it returns, or raises :class:`RetryAfter`, :class:`PermanentError` or
``RuntimeError`` (retried with backoff by the dispatcher).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from enum import StrEnum

import httpx

from ..logs import redact
from .base import PermanentError, RetryAfter, parse_retry_after

RETRYABLE_4XX = frozenset({408, 425, 429})  # timeout, too early, rate limited
SUCCESS = range(200, 300)
DETAIL_MAX = 300  # characters of the receiver's answer kept in the error (after redaction)


class Verdict(StrEnum):
    """What an HTTP status means for the handler run that got it."""

    DONE = "done"
    WAIT = "wait"
    RETRY = "retry"
    GIVE_UP = "give up"


def verdict(status: int) -> Verdict:
    """The decision for ``status``; see the module docstring."""
    if 200 <= status < 300:
        return Verdict.DONE
    if status == 429:
        return Verdict.WAIT
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Verdict.GIVE_UP
    return Verdict.RETRY


def header_retry_after(response: httpx.Response) -> float | None:
    """Seconds from the ``Retry-After`` header."""
    return parse_retry_after(response.headers.get("retry-after"))


def check_answer(
    response: httpx.Response,
    what: str,
    *,
    ok: Container[int] = SUCCESS,
    retry_after: Callable[[httpx.Response], float | None] = header_retry_after,
    detail: bool = True,
) -> None:
    """Return if ``response`` is one of ``ok``; otherwise raise as its :func:`verdict` says.

    The error says ``{what} answered HTTP {status}``, with the start of the body when ``detail``
    (redacted before it is shortened, so a receiver echoing a webhook URL leaks no part of it).
    """
    status = response.status_code
    if status in ok:
        return
    message = f"{what} answered HTTP {status}"
    if detail:
        text = redact(response.text[: DETAIL_MAX * 8])[:DETAIL_MAX].strip()
        message += f": {text}" if text else ""
    decision = verdict(status)
    if decision is Verdict.WAIT:
        wait = retry_after(response)
        if wait is not None:
            raise RetryAfter(wait, message)
    if decision is Verdict.GIVE_UP:
        raise PermanentError(message)
    raise RuntimeError(message)
