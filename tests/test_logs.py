"""Secrets never reach a log line: callback tokens in paths, bearer tokens, tracebacks."""

from __future__ import annotations

import logging

import pytest

from runway_relay.logs import RedactingFilter, redact


def test_redact_paths_and_bearer_tokens() -> None:
    line = 'POST http://h/callbacks/AbC_d-9?x=1 "Authorization: Bearer tok.en-1"'
    cleaned = redact(line)
    assert "AbC_d-9" not in cleaned and "tok.en-1" not in cleaned
    assert "/callbacks/***" in cleaned


def test_filter_redacts_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("sent to %s", "https://relay.example/callbacks/SECRET1")
        try:
            raise ConnectionError("cannot reach https://relay.example/callbacks/SECRET2")
        except ConnectionError:
            logger.exception("delivery failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "SECRET1" not in text and "SECRET2" not in text
    assert text.count("/callbacks/***") >= 2
