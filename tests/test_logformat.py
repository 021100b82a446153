"""``RELAY_LOG_FORMAT=json``: one redacted JSON object per line, with the job's fields when known."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from runway_relay.logformat import JsonFormatter, fields_of
from runway_relay.settings import SettingsError, load_settings

from conftest import RelayProcess


def _record(msg: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ConnectionError("cannot reach https://relay.example/callbacks/SECRET-IN-TRACEBACK")
        except ConnectionError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("runway_relay.scheduler", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def _line(record: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_fields_come_from_the_message() -> None:
    line = _line(_record("submitted job=%s replyRef=%s account=%s %s", "j-1", "j-1.2", "a@x.com", ""))
    assert line["event"] == "submitted"
    assert (line["job_id"], line["reply_ref"], line["account"]) == ("j-1", "j-1.2", "a@x.com")
    assert line["level"] == "INFO" and line["logger"] == "runway_relay.scheduler"
    assert line["ts"].endswith("Z") and line["message"].startswith("submitted job=j-1 ")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("handler retry handler=exec job=j9 run=3 attempt=1", {"event": "handler retry", "job_id": "j9"}),
        (
            "callback job=j2 replyRef=j2.1 outcome=applied",
            {"event": "callback", "job_id": "j2", "reply_ref": "j2.1"},
        ),
        (
            "429 busy job=j3 replyRef=j3.1 account=None rest=12s",
            {"event": "429 busy", "job_id": "j3", "reply_ref": "j3.1"},
        ),
        ("poll failed job=j4 task=t: boom; next in 60s", {"event": "poll failed", "job_id": "j4"}),
        (
            "reconciled after a restart: queued again job=j5 replyRef=j5.1",
            {"job_id": "j5", "reply_ref": "j5.1"},
        ),
        ("accounts: a@x.com (maxJobs 2)", {}),
        ("job=j6 first", {"job_id": "j6"}),
        ("a subjob=j7 is not a job", {"event": "a"}),
    ],
)
def test_fields_of_messages_the_relay_writes(message: str, expected: dict[str, str]) -> None:
    assert fields_of(message) == expected


def test_extra_fields_win_and_everything_is_redacted() -> None:
    record = _record(
        "posted to %s job=%s",
        "https://relay.example/callbacks/SECRET-IN-ARGS",
        "from-message",
        exc=True,
        job_id="from-extra",
        event="delivery",
    )
    line = _line(record)
    assert line["job_id"] == "from-extra" and line["event"] == "delivery"
    text = json.dumps(line)
    assert "SECRET-IN-ARGS" not in text and "SECRET-IN-TRACEBACK" not in text
    assert "/callbacks/***" in line["message"] and "ConnectionError" in line["exc"]


def test_the_format_is_validated() -> None:
    assert load_settings({}).log_format == "text"
    assert load_settings({"RELAY_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="RELAY_LOG_FORMAT"):
        load_settings({"RELAY_LOG_FORMAT": "xml"})


def test_a_served_relay_logs_only_json(relay_factory: Any) -> None:
    relay: RelayProcess = relay_factory(RELAY_LOG_FORMAT="json")
    job_id = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a fox"}).json()["id"]
    relay.wait_for(job_id, lambda j: j["status"] == "succeeded" and j["handlers"][0]["status"] == "done")
    relay.stop()
    lines = [json.loads(text) for text in relay.log().splitlines() if text.strip()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    submitted = [line for line in lines if line.get("event") == "submitted"]
    assert len(submitted) == 1 and submitted[0]["job_id"] == job_id
    assert submitted[0]["reply_ref"] == f"{job_id}.1" and submitted[0]["account"]
    assert any(line.get("event") == "handler done" and line["job_id"] == job_id for line in lines)
    assert any("simulator" in line["message"] for line in lines if line["logger"] == "runway_relay")
