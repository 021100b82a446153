"""The pure capacity bookkeeping and start plan of the scheduler (``relay/capacity.py``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runway_relay.capacity import UNKNOWN_ACCOUNT_CAPACITY, Candidate, Capacity

A, B, C = "a@x.com", "b@x.com", "c@x.com"


def configured(**limits: int) -> Capacity:
    capacity = Capacity(raise_after=3)
    capacity.configure({f"{k}@x.com": v for k, v in limits.items()})
    return capacity


# -- accounts and learned capacity --------------------------------------------------------------


def test_configure_starts_at_max_jobs_and_keeps_a_lower_learned_capacity() -> None:
    capacity = configured(a=3, b=1)
    assert capacity.known() == [A, B]
    assert capacity.account(A).capacity == 3 and capacity.account(B).capacity == 1
    capacity.on_throttled(A, now=0, wait=10)
    capacity.configure({A: 3, C: 2})  # a re-discovery does not forget what Runway taught us
    assert capacity.account(A).capacity == 2 and capacity.account(A).max_jobs == 3
    assert capacity.known() == [A, B, C]
    capacity.configure({A: 1})
    assert capacity.account(A).capacity == 1


def test_runway_429_lowers_to_one_at_least_and_finishes_raise_it_slowly_to_max_jobs() -> None:
    capacity = configured(a=3)
    for _ in range(5):
        capacity.on_throttled(A, now=0, wait=10)
    assert capacity.account(A).capacity == 1
    seen = []
    for _ in range(9):
        capacity.on_finished(A)
        seen.append(capacity.account(A).capacity)
    assert seen == [1, 1, 2, 2, 2, 3, 3, 3, 3]  # one step per 3 ended jobs, never above maxJobs


def test_a_new_429_restarts_the_count_towards_raising() -> None:
    capacity = configured(a=2)
    capacity.on_throttled(A, now=0, wait=10)
    capacity.on_finished(A)
    capacity.on_finished(A)
    capacity.on_throttled(A, now=0, wait=10)
    capacity.on_finished(A)
    capacity.on_finished(A)
    assert capacity.account(A).capacity == 1
    capacity.on_finished(A)
    assert capacity.account(A).capacity == 2


def test_a_raise_refused_at_once_doubles_the_wait_before_the_next_one() -> None:
    capacity = configured(a=3)
    capacity.on_throttled(A, now=0, wait=10)

    def finish_until_raised() -> int:
        for count in range(1, 100):
            capacity.on_finished(A)
            if capacity.account(A).capacity == 3:
                return count
        raise AssertionError("never raised")

    waits = []
    for _ in range(5):
        waits.append(finish_until_raised())
        capacity.on_throttled(A, now=0, wait=10)  # Runway refuses the probe straight away
    assert waits == [3, 6, 12, 24, 48]
    assert finish_until_raised() == 48  # capped
    for _ in range(3):
        capacity.on_finished(A)  # this time the raise holds for 3 ended jobs: back to the base wait
    capacity.on_throttled(A, now=0, wait=10)
    assert finish_until_raised() == 3


def test_busy_rests_without_lowering_and_an_ended_job_ends_the_rest() -> None:
    capacity = configured(a=2)
    capacity.on_busy(A, now=100, wait=20)
    assert capacity.account(A).capacity == 2
    assert capacity.free_slots(A, running=0, now=110) == 0
    assert capacity.free_slots(A, running=0, now=120) == 2  # the rest is over after 20 s
    assert capacity.next_change(110) == 120 and capacity.next_change(120) is None
    capacity.on_throttled(A, now=200, wait=30)
    assert capacity.free_slots(A, running=0, now=201) == 0
    capacity.on_finished(A)  # or as soon as one of its jobs ends
    assert capacity.free_slots(A, running=0, now=201) == 1
    capacity.on_busy(A, now=300, wait=10)
    capacity.on_busy(A, now=301, wait=1)  # a shorter rest never cuts a longer one short
    assert capacity.next_change(301) == 310


def test_free_slots_never_negative() -> None:
    capacity = configured(a=2)
    assert [capacity.free_slots(A, n, 0) for n in range(4)] == [2, 1, 0, 0]


def test_pick_prefers_the_least_loaded_allowed_account_with_room() -> None:
    capacity = configured(a=2, b=4, c=1)
    assert capacity.pick({A: 1, B: 1, C: 0}, 0) == (C,)
    assert capacity.pick({A: 1, B: 1, C: 1}, 0) == (B,)  # 1/4 beats 1/2
    assert capacity.pick({A: 2, B: 4, C: 1}, 0) is None
    assert capacity.pick({A: 0, B: 0}, 0, allowed=[B]) == (B,)
    capacity.on_busy(C, now=0, wait=30)
    assert capacity.pick({A: 2, B: 4}, 10) is None  # c rests


def test_unknown_accounts_share_one_pool() -> None:
    capacity = Capacity()
    assert not capacity.has_accounts and capacity.known() == [None]
    assert capacity.count([A, B, None]) == {None: 3}
    jobs = [Candidate(str(i), pinned=A if i % 2 else None) for i in range(5)]
    plan = capacity.plan(jobs, {}, set(), 0)
    assert plan == [("0", None), ("1", None)]
    assert UNKNOWN_ACCOUNT_CAPACITY == 2
    capacity.on_throttled(A, now=0, wait=10)  # counts against the pool too
    assert capacity.account(None).capacity == 1


def test_plan_fifo_pins_and_explore() -> None:
    capacity = configured(a=2, b=2)
    jobs = [
        Candidate("1", pinned=A),
        Candidate("2", explore=True),
        Candidate("3", explore=True),
        Candidate("4", pinned=A),
        Candidate("5", pinned=A),
        Candidate("6", pinned="z@x.com"),  # an account no listing named: its own default pool
        Candidate("7"),
    ]
    plan = capacity.plan(jobs, {B: 1}, explore_busy={B}, now=0)
    assert plan == [("1", A), ("2", A), ("6", "z@x.com"), ("7", B)]


# -- properties of the plan ----------------------------------------------------------------------

EMAILS = [A, B, C]


@st.composite
def situations(draw: st.DrawFn) -> tuple[Capacity, list[Candidate], dict, set, float]:
    limits = draw(st.dictionaries(st.sampled_from(EMAILS), st.integers(1, 3), min_size=1))
    capacity = Capacity()
    capacity.configure(limits)
    for email in limits:
        if draw(st.booleans()):
            capacity.on_throttled(email, now=0, wait=draw(st.sampled_from([0.0, 5.0, 20.0])))
    pins = st.sampled_from([None, None, *EMAILS, "z@x.com"])
    jobs = [Candidate(f"{i:03d}", draw(pins), draw(st.booleans())) for i in range(draw(st.integers(0, 12)))]
    running = {e: draw(st.integers(0, 3)) for e in draw(st.sets(st.sampled_from(EMAILS)))}
    explore_busy = draw(st.sets(st.sampled_from(EMAILS)))
    return capacity, jobs, running, explore_busy, 10.0


@settings(max_examples=400, deadline=None)
@given(situations())
def test_plan_never_exceeds_capacity_and_keeps_order(
    situation: tuple[Capacity, list[Candidate], dict, set, float],
) -> None:
    capacity, jobs, running, explore_busy, now = situation
    plan = capacity.plan(jobs, running, explore_busy, now)
    where = dict(plan)
    counts = dict(running)
    explore = set(explore_busy)
    order = {job.job_id: n for n, job in enumerate(jobs)}
    assert [order[j] for j, _ in plan] == sorted(order[j] for j, _ in plan)  # oldest first
    for job in jobs:
        if job.job_id not in where:
            continue
        email = where[job.job_id]
        assert email in capacity.allowed(job)  # pinned jobs only on their account
        assert not (job.explore and email in explore)  # one explore job per account
        counts[email] = counts.get(email, 0) + 1
        explore |= {email} if job.explore else set()
    for email, count in counts.items():
        if count > running.get(email, 0):  # an account that got work: capacity, rest respected
            assert count <= capacity.account(email).capacity
            assert capacity.account(email).resting_until <= now
    for job in jobs:  # work-conserving: a job left waiting had nowhere to go
        if job.job_id in where:
            continue
        for email in capacity.allowed(job):
            room = capacity.free_slots(email, counts.get(email, 0), now) > 0
            assert not room or (job.explore and email in explore)


@settings(max_examples=200, deadline=None)
@given(situations())
def test_a_waiting_job_is_never_overtaken_on_an_account_it_could_use(
    situation: tuple[Capacity, list[Candidate], dict, set, float],
) -> None:
    capacity, jobs, running, explore_busy, now = situation
    where = dict(capacity.plan(jobs, running, explore_busy, now))
    explore = set(explore_busy)
    for n, job in enumerate(jobs):
        if job.job_id in where:
            explore |= {where[job.job_id]} if job.explore else set()
            continue
        for later in jobs[n + 1 :]:
            email = where.get(later.job_id)
            if email is not None and email in capacity.allowed(job):
                # only an explore job may be passed over, by a non-explore job, on an explore-busy account
                assert job.explore and email in explore
