"""Matching a create that may have landed upstream to the tasks ``GET tasks/`` lists (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from runway_relay.tasklookup import CLOCK_SKEW, Ambiguous, SentCreate, created_at, match_created

SENT_AT = 1_772_704_800.0  # 2026-03-05T10:00:00Z
SENT = SentCreate("j1", "j1.1", "gen4.5", "a red fox", "a@x.com", SENT_AT, seconds=5, seed=7)


def listed(n: int, *, after: float = 1.0, ref: str | None = None, **options: Any) -> dict[str, Any]:
    """The ``n``-th task of a listing, created ``after`` seconds past the send."""
    when = SENT_AT + after
    stamp = f"2026-03-05T10:{int(when - SENT_AT) // 60:02d}:{int(when - SENT_AT) % 60:02d}.000Z"
    task: dict[str, Any] = {
        "taskId": f"user:1-runwayml:a@x.com-task:{n}",
        "taskType": options.pop("model", "gen4.5"),
        "createdAt": stamp,
        "options": {"text_prompt": "a red fox", "seconds": 5, "seed": 7, **options},
    }
    if ref is not None:
        task["replyRef"] = ref
    return task


def test_created_at_reads_iso_times_and_refuses_the_rest() -> None:
    assert created_at({"createdAt": "2026-03-05T10:00:00.000Z"}) == SENT_AT
    assert created_at({"createdAt": "yesterday"}) is None
    assert created_at({}) is None


def test_the_task_carrying_the_reply_ref_wins_over_every_other() -> None:
    tasks = [listed(1), listed(2, ref="j1.1", model="veo-3.1")]
    assert match_created(tasks, SENT)["taskId"].endswith("task:2")


@pytest.mark.parametrize(
    "task",
    [
        listed(1, model="veo-3.1"),
        listed(1, text_prompt="a blue fox"),
        listed(1, seconds=10),
        listed(1, seed=8),
        listed(1, after=-CLOCK_SKEW - 5),  # created before the send (beyond clock skew)
        listed(1, ref="j2.1"),  # another job's create
        {**listed(1), "taskId": "user:1-runwayml:b@x.com-task:1"},  # another account
        {**listed(1), "createdAt": None},
    ],
)
def test_a_task_that_differs_in_anything_asked_is_not_ours(task: dict[str, Any]) -> None:
    assert match_created([task], SENT) is None


def test_one_matching_task_is_adopted_and_a_known_one_never() -> None:
    assert match_created([listed(1)], SENT)["taskId"].endswith("task:1")
    assert match_created([listed(1)], SENT, known={"user:1-runwayml:a@x.com-task:1"}) is None


def test_fields_the_listing_or_the_job_lacks_do_not_count_against_a_match() -> None:
    bare = SentCreate("j1", "j1.1", "gen4.5", "a red fox", None, SENT_AT)
    assert match_created([listed(1, seconds=10, seed=99)], bare) is not None
    task = listed(1)
    del task["options"]["seed"]
    assert match_created([task], SENT) is not None


def test_two_tasks_that_could_both_be_ours_are_ambiguous_and_name_the_earliest() -> None:
    with pytest.raises(Ambiguous) as raised:
        match_created([listed(2, after=9.0), listed(1, after=3.0)], SENT)
    assert raised.value.earliest["taskId"].endswith("task:1")
    # once the other job owns one of them, the rest is ours
    other = "user:1-runwayml:a@x.com-task:2"
    assert match_created([listed(2, after=9.0), listed(1, after=3.0)], SENT, {other})["taskId"].endswith(
        "task:1"
    )
