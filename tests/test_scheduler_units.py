"""The scheduler and poller driven directly, in this process: a real store (SQLite and PostgreSQL), a real
simulator on a loopback port, and no relay server, so each step (reconcile, fill, poll) can be called and
inspected."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from test_scheduler_support import upstream

from runway_relay.poller import LOST_AFTER, Poller
from runway_relay.scheduler import Scheduler
from runway_relay.simulator import Simulator
from runway_relay.storage import SCHEDULER_LEASE, Moved, Store, open_store
from runway_relay.taskparse import parse_task
from runway_relay.upstream import Upstream

from conftest import execute, free_port

pytestmark = pytest.mark.anyio
ACCOUNT = "unit@sim.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, str]]:
    with upstream(accounts={ACCOUNT: 1}, step_seconds=3600, create_delay=0.3) as running:
        yield running


HOLDER = "unit-relay"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = open_store(db_url, origin=HOLDER)
    await s.open()
    await s.lead(SCHEDULER_LEASE, HOLDER, 600)
    yield s
    await s.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def scheduler(
    store: Store, http: httpx.AsyncClient, url: str, token: str = "unit-token", **options: Any
) -> Scheduler:
    async def announced(moved: Moved) -> None:
        pass

    configured = options.pop("configured", {ACCOUNT: 1})
    upstream_ = Upstream(http, url, token)
    return Scheduler(store, upstream_, "http://127.0.0.1:9", announced, HOLDER, configured, **options)


async def new_job(store: Store, prompt: str = "x") -> dict[str, Any]:
    return (await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": prompt}, None)).row


async def test_a_job_cancelled_while_its_create_is_in_flight_keeps_its_slot_until_the_answer(
    store: Store, http: httpx.AsyncClient, sim: tuple[Simulator, str]
) -> None:
    simulator, url = sim
    relay = scheduler(store, http, url)
    await relay.discover_accounts()
    first, second = await new_job(store), await new_job(store)
    assert await relay.fill() == 1  # one slot
    await store.cancel(first["id"])  # the create is still waiting for its answer (0.3 s)
    assert await relay.fill() == 0  # the create in flight still holds the slot upstream
    await relay.drain()
    task = next(iter(simulator.tasks.values()))
    assert task.deleted and task.reply_ref == f"{first['id']}.1"  # the task it made was freed
    assert await relay.fill() == 1
    await relay.drain()
    assert (await store.get_job(second["id"]))["status"] == "submitted"


async def test_reconcile_waits_out_the_grace_before_calling_a_create_lost(
    store: Store, http: httpx.AsyncClient, sim: tuple[Simulator, str], db_url: str
) -> None:
    simulator, url = sim
    job = await new_job(store)
    assert await store.begin_submit(job["id"], ACCOUNT, HOLDER) is not None  # then the process "died"
    relay = scheduler(store, http, url, create_grace=3600)
    assert await relay.reconcile() == 1  # not upstream, but it might still land: keep it in flight
    assert (await store.queue_view(time.time()))[0] == []
    execute(db_url, "update jobs set submitting_since = submitting_since - 7200")  # as if long ago
    assert await relay.reconcile() == 0
    row = await store.job_row(job["id"])
    assert row["status"] == "queued" and row["submitting_since"] is None
    assert len(simulator.engine.create_log) == 0  # nothing sent yet: the loop's next fill will


async def test_reconcile_adopts_a_task_a_callback_named_without_asking_upstream(
    store: Store, http: httpx.AsyncClient
) -> None:
    job = await new_job(store)
    ticket = await store.begin_submit(job["id"], ACCOUNT, HOLDER)
    assert ticket is not None
    task_id = f"user:1-runwayml:{ACCOUNT}-task:0001"
    await store.ingest_callback(ticket.token, parse_task({"taskId": task_id, "status": "RUNNING"}), "{}")
    relay = scheduler(store, http, f"http://127.0.0.1:{free_port()}")  # upstream unreachable
    assert await relay.reconcile() == 0
    row = await store.job_row(job["id"])
    assert row["task_id"] == task_id and row["submitting_since"] is None and row["status"] == "running"


async def test_discovery_401_marks_the_relay_degraded(store: Store, http: httpx.AsyncClient) -> None:
    with upstream(token="right") as (_, url):
        relay = scheduler(store, http, url, token="wrong", configured={})
        assert not await relay.discover_accounts()
        assert relay.degraded is not None and "401" in relay.degraded


async def test_polls_are_recorded_even_when_nothing_changed_and_failures_back_off(
    store: Store, http: httpx.AsyncClient, sim: tuple[Simulator, str]
) -> None:
    _, url = sim
    relay = scheduler(store, http, url)
    await relay.discover_accounts()
    job = await new_job(store)
    await relay.fill()
    await relay.drain()
    seen: list[str] = []

    async def on_result(result: Any) -> None:
        seen.append(result.outcome)

    poller = Poller(store, Upstream(http, url, "unit-token"), poll_after=10.0, on_result=on_result)
    assert await poller.round(everything=True) == 1
    assert await poller.round(everything=True) == 1
    polls = [e for e in (await store.get_job(job["id"], events=True))["events"] if e["source"] == "poll"]
    assert [e["outcome"] for e in polls] == seen and seen[-1] == "duplicate"

    lost = await new_job(store, "gone")
    ticket = await store.begin_submit(lost["id"], ACCOUNT, HOLDER)
    assert ticket is not None
    await store.record_submitted(ticket, f"user:1-runwayml:{ACCOUNT}-task:unknown", ACCOUNT, None)
    waits = []
    for tries in range(LOST_AFTER - 1):
        before = time.time()
        await poller.poll(lost["id"], 1, f"user:1-runwayml:{ACCOUNT}-task:unknown", tries)
        waits.append(((await store.job_row(lost["id"]))["next_poll_at"] - before) / 10)
    # poll_after, doubled per failure, with the jitter of relay/backoff.py (50–100 % of each step)
    assert all(step / 2 - 0.05 <= wait <= step + 0.05 for wait, step in zip(waits, (1, 2), strict=True))
    # the last 404 in a row: the task is lost upstream, and the job fails (resubmit may send it again)
    await poller.poll(lost["id"], 1, f"user:1-runwayml:{ACCOUNT}-task:unknown", LOST_AFTER - 1)
    gone = await store.job_row(lost["id"])
    assert (gone["status"], gone["error_kind"]) == ("failed", "upstream") and gone["next_poll_at"] is None
    assert "no longer knows the task" in gone["error"]
