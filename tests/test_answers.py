"""One classifier of HTTP answers for every handler: done, wait, retry or give up."""

from __future__ import annotations

import httpx
import pytest

from runway_relay.handlers import PermanentError, RetryAfter
from runway_relay.handlers.answers import Verdict, check_answer, verdict
from runway_relay.handlers.fetch import _raise_for_status


def answer(status: int, text: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(status, text=text, headers=headers, request=httpx.Request("POST", "http://x/"))


def test_every_status_has_one_meaning() -> None:
    assert {verdict(s) for s in (200, 201, 204, 299)} == {Verdict.DONE}
    assert verdict(429) is Verdict.WAIT
    assert {verdict(s) for s in (408, 425, 500, 502, 503, 504, 300, 302, 100)} == {Verdict.RETRY}
    gives_up = (400, 401, 402, 403, 404, 405, 409, 410, 413, 415, 422, 451)
    assert {verdict(s) for s in gives_up} == {Verdict.GIVE_UP}


def test_webhooks_and_downloads_read_answers_alike() -> None:
    # They used to disagree: a webhook retried a 409 or a 415 forever, a download gave up on a 425.
    for status, raised in ((409, PermanentError), (415, PermanentError), (425, RuntimeError)):
        with pytest.raises(raised):
            check_answer(answer(status), "Slack webhook")
        with pytest.raises(raised):
            _raise_for_status(answer(status))
    with pytest.raises(RetryAfter) as waited:
        check_answer(answer(429, **{"retry-after": "7"}), "Discord webhook")
    assert waited.value.seconds == 7.0
    with pytest.raises(RuntimeError, match="HTTP 429"):  # no Retry-After: back off as usual
        _raise_for_status(answer(429))
    _raise_for_status(answer(206))
    with pytest.raises(RuntimeError):  # a download needs the body: 204 is no success there
        _raise_for_status(answer(204))


def test_the_error_quotes_the_start_of_the_answer() -> None:
    with pytest.raises(PermanentError, match=r"^forward URL answered HTTP 400: no such hook$"):
        check_answer(answer(400, "  no such hook \n"), "forward URL")
    with pytest.raises(PermanentError) as long:
        check_answer(answer(400, "y" * 5000), "forward URL")
    assert len(str(long.value)) < 400
