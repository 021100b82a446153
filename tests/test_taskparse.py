"""Tolerant parsing of callback bodies: every documented variant, and garbage never raises."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runway_relay.states import Status
from runway_relay.taskparse import TaskParseError, account_of, parse_number, parse_task

TASK = {
    "taskId": "user:1-runwayml:a@b.c-task:42",
    "status": "RUNNING",
    "progressRatio": "0.5",
    "replyRef": "job.1",
}


def test_wrapped_and_bare_bodies_parse_alike() -> None:
    bare = parse_task(TASK)
    wrapped = parse_task({"task": TASK})
    assert bare == wrapped
    assert bare.status is Status.RUNNING and bare.progress == 0.5
    assert bare.reply_ref == "job.1"


def test_reply_ref_outside_the_wrapper_is_kept() -> None:
    task = {k: v for k, v in TASK.items() if k != "replyRef"}
    assert parse_task({"task": task, "replyRef": "job.1"}).reply_ref == "job.1"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0.25", 0.25),
        (0.25, 0.25),
        (1, 1.0),
        ("7", 1.0),
        ("nan", None),
        ("x", None),
        (None, None),
        (True, None),
        ("1e400", None),
        (-1, 0.0),
    ],
)
def test_progress_ratio_forms(value: object, expected: float | None) -> None:
    assert parse_task({**TASK, "progressRatio": value}).progress == expected


def test_error_forms_and_moderation() -> None:
    assert parse_task({**TASK, "error": None}).error is None
    text = parse_task({**TASK, "status": "FAILED", "error": "Internal error"})
    assert text.error == "Internal error" and not text.moderated
    obj = parse_task(
        {
            **TASK,
            "status": "FAILED",
            "error": {"message": "flagged", "reason": "SAFETY.INPUT.TEXT", "moderation_category": "X"},
        }
    )
    assert obj.moderated and "flagged" in (obj.error or "")


def test_artifacts_with_string_sizes_and_bad_urls() -> None:
    update = parse_task(
        {
            **TASK,
            "status": "SUCCEEDED",
            "artifacts": [
                {"url": "https://cdn.example/v.mp4", "fileSize": "123", "previewUrls": ["https://p/x.jpg"]},
                {"url": "file:///etc/passwd"},
                {"url": 5},
                "junk",
            ],
        }
    )
    assert len(update.artifacts) == 1
    assert update.artifacts[0].size == 123
    assert update.artifacts[0].preview_url == "https://p/x.jpg"


def test_unknown_status_is_none_and_not_an_object_is_refused() -> None:
    assert parse_task({**TASK, "status": "WEIRD"}).status is None
    for body in ([], "x", 3, None):
        with pytest.raises(TaskParseError):
            parse_task(body)


def test_account_of() -> None:
    assert account_of("user:1-runwayml:a@b.c-task:42") == "a@b.c"
    assert account_of("user:1-runwayml:a@b.c-asset:9") == "a@b.c"
    assert account_of("nonsense") is None
    assert account_of(None) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "taskId",
                "status",
                "progressRatio",
                "error",
                "artifacts",
                "replyRef",
                "task",
                "progressText",
                "x",
            ]
        ),
        json_values,
        max_size=9,
    )
)
def test_any_object_parses_without_raising(body: dict) -> None:
    parse_task(body)


@given(json_values)
def test_parse_number_never_raises(value: object) -> None:
    parse_number(value)
