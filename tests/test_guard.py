"""The account guards (``relay/guard.py``): every decision, as a pure function of stored facts and ``now``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runway_relay.capacity import Candidate, Capacity
from runway_relay.guard import (
    SESSION_STRIKES,
    AccountState,
    Credits,
    CreditsRule,
    Gate,
    ModerationRule,
    RuleError,
    counted,
    credits_low,
    format_duration,
    low_crossing,
    moderation_pause,
    out_of_rotation,
    parse_credits_low,
    parse_duration,
    parse_moderation,
)

HOUR = 3600.0
RULE = ModerationRule(limit=3, window=HOUR, pause=HOUR)


# -- reading the settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1.5h", 5400), (" 2 H ", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "0", "0m", "1w", "1h30m", "nan", "1e400"])
def test_bad_durations_say_what_a_good_one_is(text: str) -> None:
    with pytest.raises(RuleError, match=r"duration|longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h"), (5400, "1h 30m"), (45, "45s"), (90061, "1d 1h"), (0, "0s")]
)
def test_durations_are_written_back_plainly(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**7))
def test_a_written_duration_reads_back_to_within_its_coarsest_units(seconds: int) -> None:
    text = format_duration(seconds)
    total = sum(parse_duration(part) for part in text.split())
    assert total <= seconds and (seconds - total < 3600 or " " in text)


def test_moderation_rule_forms() -> None:
    assert parse_moderation("3/1h") == ModerationRule(3, 3600, 3600)
    assert parse_moderation("5/30m", "6h") == ModerationRule(5, 1800, 21600)
    assert str(parse_moderation("3/1h")) == "3/1h"
    for off in (None, "", "off", "0", "none", "OFF"):
        assert parse_moderation(off) is None


@pytest.mark.parametrize("text", ["3", "3/", "/1h", "x/1h", "0/1h", "-1/1h", "3/1y", "3/0s"])
def test_bad_moderation_rules_are_refused(text: str) -> None:
    with pytest.raises(RuleError):
        parse_moderation(text)


def test_credits_low_forms() -> None:
    assert parse_credits_low("200") == CreditsRule(200)
    assert parse_credits_low("10%") == CreditsRule(10, percent=True)
    assert parse_credits_low(" 12.5 % ") == CreditsRule(12.5, percent=True)
    for off in (None, "", "off", "0", "0%"):
        assert parse_credits_low(off) is None
    for bad in ("lots", "-5", "101%", "inf", "%"):
        with pytest.raises(RuleError):
            parse_credits_low(bad)


# -- the moderation guard ---------------------------------------------------------------------------


def test_below_the_limit_nothing_happens() -> None:
    assert moderation_pause(RULE, [100.0, 200.0], 300.0) is None


def test_at_the_limit_the_account_is_paused_from_now_for_the_pause() -> None:
    pause = moderation_pause(RULE, [100.0, 200.0, 300.0], 300.0)
    assert pause is not None and pause.until == 300.0 + HOUR and pause.failures == 3
    assert "3 moderation failures within 1h" in pause.reason and "RELAY_MODERATION_PAUSE=3/1h" in pause.reason


def test_failures_older_than_the_window_do_not_count() -> None:
    now = 10 * HOUR
    assert moderation_pause(RULE, [now - HOUR - 1, now - 10, now], now) is None
    assert moderation_pause(RULE, [now - HOUR + 1, now - 10, now], now) is not None
    assert moderation_pause(RULE, [now - HOUR, now - 10, now], now) is None  # exactly a window ago: out


def test_failures_before_the_last_pause_or_resume_never_count_again() -> None:
    failures = [100.0, 200.0, 300.0]
    assert moderation_pause(RULE, failures, 400.0, since=300.0) is None
    assert moderation_pause(RULE, [*failures, 350.0, 360.0, 370.0], 400.0, since=300.0) is not None


def test_an_account_already_paused_is_not_paused_again() -> None:
    failures = [100.0, 200.0, 300.0, 310.0]
    assert moderation_pause(RULE, failures, 310.0, paused_until=300.0 + HOUR) is None
    assert moderation_pause(RULE, failures, 310.0, paused_until=305.0) is not None  # that pause ended


def test_the_guard_off_never_pauses() -> None:
    assert moderation_pause(None, [1.0] * 100, 2.0) is None


def test_a_failure_stamped_by_a_clock_ahead_counts() -> None:
    assert counted(RULE, [500.0], 400.0) == 1


def test_a_separate_pause_length() -> None:
    rule = ModerationRule(2, 600, 7200)
    pause = moderation_pause(rule, [10.0, 20.0], 20.0)
    assert pause is not None and pause.until == 7220.0 and "paused 2h" in pause.reason


@given(
    st.lists(st.floats(min_value=0, max_value=20_000), max_size=12),
    st.floats(min_value=0, max_value=20_000),
    st.floats(min_value=0, max_value=20_000),
    st.floats(min_value=0, max_value=30_000),
    st.integers(min_value=1, max_value=5),
)
def test_the_guard_pauses_exactly_when_enough_recent_failures_and_not_already_paused(
    failures: list[float], now: float, since: float, paused_until: float, limit: int
) -> None:
    rule = ModerationRule(limit, HOUR, 2 * HOUR)
    pause = moderation_pause(rule, failures, now, since=since, paused_until=paused_until)
    recent = [t for t in failures if t > max(since, now - HOUR)]
    if paused_until > now or len(recent) < limit:
        assert pause is None
    else:
        assert pause is not None and pause.until == now + 2 * HOUR and pause.failures == len(recent)


# -- credits ----------------------------------------------------------------------------------------


def test_credits_left_and_out() -> None:
    assert Credits(2250, 1315).left == 935 and not Credits(2250, 1315).out
    assert Credits(100, 100).out and Credits(100, 150).left == 0 and Credits(0, 0).out
    assert Credits().left is None and not Credits().out and not Credits(100, None).known


def test_low_absolute_and_percent() -> None:
    assert credits_low(CreditsRule(200), Credits(2250, 2100))
    assert not credits_low(CreditsRule(200), Credits(2250, 2000))  # 250 left
    assert credits_low(CreditsRule(10, percent=True), Credits(2000, 1801))  # 199 < 200
    assert not credits_low(CreditsRule(10, percent=True), Credits(2000, 1800))  # exactly 10 %: not below
    assert credits_low(None, Credits(100, 100))  # out is low, even with no warning set
    assert not credits_low(None, Credits(100, 99)) and not credits_low(CreditsRule(5), Credits())


def test_the_low_signal_fires_once_per_crossing() -> None:
    rule = CreditsRule(100)
    assert low_crossing(rule, False, Credits(1000, 950)) == (True, True)  # crossed: fire
    assert low_crossing(rule, True, Credits(1000, 960)) == (True, False)  # still low: quiet
    assert low_crossing(rule, True, Credits(1000, 100)) == (False, False)  # topped up: re-armed
    assert low_crossing(rule, False, Credits(1000, 990)) == (True, True)  # crossed again: fire again
    assert low_crossing(rule, True, Credits()) == (True, False)  # a failed read changes nothing
    assert low_crossing(rule, False, Credits()) == (False, False)
    assert low_crossing(None, False, Credits(10, 9)) == (False, False)  # no warning set: only when out
    assert low_crossing(None, False, Credits(10, 10)) == (True, True)


@given(
    st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=20),
    st.floats(min_value=1, max_value=500),
)
def test_along_any_history_the_signal_fires_once_per_downward_crossing(
    used: list[float], amount: float
) -> None:
    rule, low, fired = CreditsRule(amount), False, 0
    crossings = 0
    for value in used:
        credits = Credits(1000, value)
        now_low = credits_low(rule, credits)
        crossings += int(now_low and not low)
        low, fire = low_crossing(rule, low, credits)
        fired += int(fire)
    assert fired == crossings


# -- sessions ---------------------------------------------------------------------------------------


def test_repeated_failed_sessions_take_the_account_out() -> None:
    assert [out_of_rotation(n) for n in range(SESSION_STRIKES + 2)] == [False] * SESSION_STRIKES + [True] * 2
    assert not out_of_rotation(100, limit=0)  # 0 turns it off


# -- who may take a create --------------------------------------------------------------------------


def _gate(*states: AccountState, now: float = 1000.0) -> Gate:
    return Gate({s.email: s for s in states}, now)


def test_the_gate_says_who_may_take_a_create() -> None:
    gate = _gate(
        AccountState("paused@x", paused_until=2000.0, paused_reason="3 moderation failures"),
        AccountState("ended@x", paused_until=500.0),
        AccountState("out@x", out_of_rotation="3 failed sessions"),
        AccountState("broke@x", credits=Credits(100, 100)),
        AccountState("rich@x", credits=Credits(100, 10)),
    )
    assert not gate.admits("paused@x", True) and not gate.admits("paused@x", False)
    assert gate.admits("ended@x", True)
    assert not gate.admits("out@x", False)
    assert not gate.admits("broke@x", True) and gate.admits("broke@x", False)  # explore still may
    assert gate.admits("rich@x", True) and gate.admits("unknown@x", True) and gate.admits(None, True)
    assert gate.next_change() == 2000.0


def test_hope_and_its_absence() -> None:
    gate = _gate(
        AccountState("paused@x", paused_until=2000.0),
        AccountState("out@x", out_of_rotation="Unauthorized, 3 times"),
        AccountState("broke@x", credits=Credits(100, 100)),
    )
    assert gate.hopeless(["paused@x"], (), True) is None  # a pause ends by itself
    assert gate.hopeless(["broke@x"], (), False) is None  # explore runs without credits
    assert gate.hopeless(["unknown@x"], (), True) is None
    assert gate.hopeless([None], (), True) is None
    why = gate.hopeless(["out@x", "broke@x"], (), True)
    assert why is not None and why.startswith("No Runway account can take this job")
    assert "out@x is out of rotation (Unauthorized, 3 times)" in why
    assert "broke@x has no credits left (100 of 100 used)" in why
    assert "Top up" in why and "accounts resume" in why
    refused = gate.hopeless(["paused@x"], ["paused@x"], True)
    assert refused is not None and "paused@x refused it (not enough credits)" in refused


def _plan(capacity: Capacity, jobs: list[Candidate], gate: Gate | None) -> list[tuple[str, str | None]]:
    return capacity.plan(jobs, {}, set(), 1000.0, gate)


def test_the_planner_sends_unpinned_jobs_past_a_paused_account_and_holds_pinned_ones() -> None:
    capacity = Capacity()
    capacity.configure({"a@x": 2, "b@x": 2})
    gate = _gate(AccountState("a@x", paused_until=2000.0))
    jobs = [Candidate("1"), Candidate("2", pinned="a@x"), Candidate("3")]
    assert _plan(capacity, jobs, gate) == [("1", "b@x"), ("3", "b@x")]
    assert _plan(capacity, jobs, _gate(AccountState("a@x", paused_until=900.0))) == [
        ("1", "a@x"),
        ("2", "a@x"),
        ("3", "b@x"),
    ]


def test_the_planner_keeps_credit_spending_jobs_off_an_account_without_credits() -> None:
    capacity = Capacity()
    capacity.configure({"a@x": 2, "b@x": 1})
    gate = _gate(AccountState("a@x", credits=Credits(50, 50)))
    jobs = [Candidate("1"), Candidate("2"), Candidate("3", explore=True)]
    assert _plan(capacity, jobs, gate) == [("1", "b@x"), ("3", "a@x")]


def test_the_planner_skips_accounts_that_refused_the_job() -> None:
    capacity = Capacity()
    capacity.configure({"a@x": 2, "b@x": 2})
    assert _plan(capacity, [Candidate("1", avoid=frozenset({"a@x", "b@x"}))], None) == []
    assert _plan(capacity, [Candidate("1", avoid=frozenset({"a@x"}))], None) == [("1", "b@x")]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a@x", "b@x", "c@x"]),
            st.booleans(),  # paused
            st.booleans(),  # out of rotation
            st.booleans(),  # out of credits
        ),
        unique_by=lambda t: t[0],
    ),
    st.lists(
        st.tuples(st.sampled_from([None, "a@x", "b@x", "c@x"]), st.booleans()),
        max_size=8,
    ),
)
def test_the_planner_never_starts_a_job_where_the_gate_says_no(
    states: list[tuple[str, bool, bool, bool]], jobs: list[tuple[str | None, bool]]
) -> None:
    capacity = Capacity()
    capacity.configure({"a@x": 3, "b@x": 3, "c@x": 3})
    gate = _gate(
        *(
            AccountState(
                email,
                paused_until=2000.0 if paused else 0.0,
                out_of_rotation="broken" if out else None,
                credits=Credits(10, 10) if broke else Credits(10, 0),
            )
            for email, paused, out, broke in states
        )
    )
    candidates = [Candidate(str(n), pinned, explore) for n, (pinned, explore) in enumerate(jobs)]
    by_id = {c.job_id: c for c in candidates}
    for job_id, email in _plan(capacity, candidates, gate):
        job = by_id[job_id]
        assert gate.admits(email, job.spends)
        assert job.pinned in (None, email)
