"""The state machine: exhaustive small cases and hypothesis over random callback sequences."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runway_relay.states import (
    TERMINAL,
    JobState,
    Outcome,
    Signal,
    Status,
    TransitionError,
    on_cancel,
    on_rejected,
    on_resubmit,
    on_submitted,
    on_update,
    rank,
)

UPSTREAM = [Status.PENDING, Status.THROTTLED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED]


def key(state: JobState) -> tuple[int, int, float]:
    return (state.attempt, rank(state.status), state.progress)


def test_normal_life_emits_one_signal_per_step() -> None:
    state = JobState(Status.QUEUED)
    decision = on_submitted(state)
    assert decision.signal is Signal.SUBMITTED
    state = decision.state
    steps = [(Status.PENDING, 0.0), (Status.RUNNING, 0.25), (Status.RUNNING, 0.5), (Status.SUCCEEDED, None)]
    signals = []
    for status, progress in steps:
        decision = on_update(state, 1, status, progress)
        assert decision.outcome is Outcome.APPLIED
        signals.append(decision.signal)
        state = decision.state
    assert signals == [Signal.PROGRESS, Signal.PROGRESS, Signal.PROGRESS, Signal.SUCCEEDED]
    assert state == JobState(Status.SUCCEEDED, 1, 1.0)


def test_callback_before_create_answer_counts_as_submitted() -> None:
    decision = on_update(JobState(Status.QUEUED), 1, Status.PENDING, 0)
    assert decision.signal is Signal.SUBMITTED
    assert on_submitted(decision.state).outcome is Outcome.DUPLICATE


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("incoming", UPSTREAM)
def test_terminal_states_are_final(terminal: Status, incoming: Status) -> None:
    state = JobState(terminal, 1, 1.0 if terminal is Status.SUCCEEDED else 0.5)
    decision = on_update(state, 1, incoming, 0.9)
    assert not decision.applied
    assert decision.state == state


def test_duplicate_and_stale_are_told_apart() -> None:
    state = JobState(Status.RUNNING, 1, 0.5)
    assert on_update(state, 1, Status.RUNNING, 0.5).outcome is Outcome.DUPLICATE
    assert on_update(state, 1, Status.RUNNING, None).outcome is Outcome.DUPLICATE
    assert on_update(state, 1, Status.RUNNING, 0.25).outcome is Outcome.STALE
    assert on_update(state, 1, Status.PENDING, 0.0).outcome is Outcome.STALE
    done = JobState(Status.SUCCEEDED, 1, 1.0)
    assert on_update(done, 1, Status.SUCCEEDED, 1.0).outcome is Outcome.DUPLICATE
    assert on_update(done, 1, Status.FAILED, None).outcome is Outcome.STALE


def test_other_attempts_are_stale() -> None:
    state = JobState(Status.RUNNING, 2, 0.1)
    assert on_update(state, 1, Status.SUCCEEDED).outcome is Outcome.STALE
    assert on_update(state, 3, Status.RUNNING, 0.9).outcome is Outcome.STALE


def test_progress_is_clamped_and_nan_ignored() -> None:
    state = JobState(Status.RUNNING, 1, 0.5)
    assert on_update(state, 1, Status.RUNNING, 7.0).state.progress == 1.0
    assert on_update(state, 1, Status.RUNNING, float("nan")).outcome is Outcome.DUPLICATE
    assert on_update(state, 1, Status.RUNNING, -3).outcome is Outcome.STALE


def test_relay_moves() -> None:
    queued = JobState(Status.QUEUED)
    assert on_rejected(queued).state.status is Status.REJECTED
    assert on_rejected(queued).signal is Signal.FAILED
    with pytest.raises(TransitionError):
        on_rejected(JobState(Status.RUNNING))
    for status in Status:
        state = JobState(status)
        if status in TERMINAL:
            with pytest.raises(TransitionError):
                on_cancel(state)
        else:
            assert on_cancel(state).state.status is Status.CANCELLED
    failed = JobState(Status.FAILED, 1, 0.4)
    assert on_resubmit(failed).state == JobState(Status.QUEUED, 2, 0.0)
    with pytest.raises(TransitionError):
        on_resubmit(JobState(Status.SUCCEEDED, 1, 1.0))


updates = st.tuples(
    st.integers(1, 2),
    st.sampled_from(UPSTREAM),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)


@given(st.lists(updates, max_size=40), st.sampled_from([Status.QUEUED, Status.SUBMITTED]))
def test_never_moves_backwards(sequence: list, start: Status) -> None:
    state = JobState(start, 1)
    for attempt, status, progress in sequence:
        decision = on_update(state, attempt, status, progress)
        assert key(decision.state) >= key(state)
        if state.terminal:
            assert decision.state == state
        if decision.applied:
            assert decision.signal is not None
            assert key(decision.state) > key(state)
        else:
            assert decision.state == state
        state = decision.state


steps = [(Status.PENDING, 0.0), (Status.RUNNING, 0.2), (Status.RUNNING, 0.6), (Status.RUNNING, 0.9)]


@given(st.permutations([*steps, (Status.SUCCEEDED, None)]), st.lists(st.integers(0, 4)))
def test_any_order_with_repeats_ends_in_the_same_state(order: list, repeats: list) -> None:
    sequence = list(order) + [order[i] for i in repeats]
    state = JobState(Status.SUBMITTED)
    applied = 0
    for status, progress in sequence:
        decision = on_update(state, 1, status, progress)
        applied += decision.applied
        state = decision.state
    assert state == JobState(Status.SUCCEEDED, 1, 1.0)
    assert applied <= len(steps) + 1


def test_every_pair_of_statuses() -> None:
    for current, incoming in itertools.product(Status, UPSTREAM):
        state = JobState(current, 1, 0.5)
        decision = on_update(state, 1, incoming, 0.5)
        if current in TERMINAL or rank(incoming) < rank(current):
            assert not decision.applied
        elif rank(incoming) > rank(current):
            assert decision.applied
