"""The JSON API under ``/api`` plus ``/healthz`` and ``/metrics`` (contract §5)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import rules
from ..errors import ValidationError
from ..groups import submit_group
from ..live import END
from ..readiness import readiness
from ..service import Relay
from ..states import TERMINAL, Status
from ..timeline import timeline
from ..usage import MAX_DAYS, summarize, window
from .auth import authenticated
from .bodies import read_json
from .openapi import document

CURSOR = re.compile(r"[0-9a-f]{12}-[0-9a-f]{8}")  # a job id (storage.records.new_job_id)
MAX_CLIENT_REF = 200
MAX_QUERY = 200
KEEP_ALIVE = 15.0


def _relay(request: Request) -> Relay:
    return request.app.state.relay


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ValidationError("limit must be a whole number from 1 to 500", "limit")
    return int(raw)


def _client_ref(body: Any) -> str | None:
    """Take the optional idempotency key out of a create body."""
    if not isinstance(body, dict) or "client_ref" not in body:
        return None
    ref = body.pop("client_ref")
    if ref is None:
        return None
    if not isinstance(ref, str) or not 1 <= len(ref) <= MAX_CLIENT_REF or not ref.isprintable():
        message = f"client_ref must be printable text of 1 to {MAX_CLIENT_REF} characters"
        raise ValidationError(message, "client_ref")
    return ref


async def create_job(request: Request) -> JSONResponse:
    """``POST /api/jobs[?dry_run=1]``: validate, store ``queued``, answer 201 with the job.

    With ``client_ref`` (an idempotency key) already stored, the answer is that job with 200, and
    nothing new is stored. ``dry_run=1`` only validates: 200 with the normalized fields.
    """
    relay = _relay(request)
    body = await read_json(request)
    ref = _client_ref(body)
    if request.query_params.get("dry_run") in ("1", "true"):
        params, _ = relay.check(body)
        return JSONResponse({"ok": True, "params": params})
    known = ref is not None and await relay.store.job_by_client_ref(ref) is not None
    job = await relay.submit(body, client_ref=ref)  # a known ref: that job (409 if it asked otherwise)
    return JSONResponse(job, status_code=200 if known else 201)


async def list_jobs(request: Request) -> JSONResponse:
    """``GET /api/jobs?status=&model=&account=&q=&limit=&cursor=``: newest first.

    ``q`` finds jobs by a word of their prompt (any case) or the beginning of their id.
    """
    query = request.query_params
    status = query.get("status")
    if status and status not in {s.value for s in Status}:
        raise ValidationError(
            f"unknown status {status!r}; use one of {', '.join(s.value for s in Status)}", "status"
        )
    q = query.get("q")
    if q is not None and len(q) > MAX_QUERY:
        raise ValidationError(f"q is {len(q)} characters; search with at most {MAX_QUERY}", "q")
    after = query.get("cursor")
    if after is not None and not CURSOR.fullmatch(after):
        raise ValidationError("cursor must be the next_cursor of the previous page (a job id)", "cursor")
    jobs, cursor = await _relay(request).store.find_jobs(
        status=status,
        model=query.get("model"),
        account=query.get("account"),
        q=q,
        limit=_limit(query.get("limit")),
        cursor=after,
    )
    return JSONResponse({"jobs": jobs, "next_cursor": cursor})


async def get_job(request: Request) -> JSONResponse:
    """``GET /api/jobs/{id}``: the job with its events, transitions, handler runs, the history of
    every handler try (``handler_attempts``) and its ``timeline`` (phases with time spent in each)."""
    store = _relay(request).store
    job = await store.get_job(request.path_params["id"], events=True)
    job["handler_attempts"] = await store.handler_history(job["id"])
    job["timeline"] = timeline(job)
    return JSONResponse(job)


async def create_group(request: Request) -> JSONResponse:
    """``POST /api/groups``: one request sent to several models (``models: [...]``) as a group."""
    answer = await submit_group(_relay(request), await read_json(request))
    return JSONResponse(answer, status_code=201)


async def get_group(request: Request) -> JSONResponse:
    """``GET /api/groups/{id}``: the group's jobs, in the order they were sent."""
    group_id = request.path_params["id"]
    return JSONResponse({"group_id": group_id, "jobs": await _relay(request).store.group_jobs(group_id)})


async def usage(request: Request) -> JSONResponse:
    """``GET /api/usage?days=7``: per model, account and day; slots in use now."""
    raw = request.query_params.get("days", "7")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ValidationError(f"days must be a whole number from 1 to {MAX_DAYS}", "days")
    days = int(raw)
    store = _relay(request).store
    start, _ = window(days)
    facts = await store.usage_facts(start.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return JSONResponse(summarize(facts, days, await store.slots_in_use()))


async def cancel_job(request: Request) -> JSONResponse:
    """``POST /api/jobs/{id}/cancel``."""
    return JSONResponse(await _relay(request).cancel(request.path_params["id"]))


async def replay_job(request: Request) -> JSONResponse:
    """``POST /api/jobs/{id}/replay[?handler=name]``."""
    relay = _relay(request)
    runs = await relay.replay(request.path_params["id"], request.query_params.get("handler"))
    return JSONResponse(
        {"replayed": [{"id": r["id"], "name": r["handler"], "signal": r["signal"]} for r in runs]},
        status_code=202,
    )


async def list_accounts(request: Request) -> JSONResponse:
    """``GET /api/accounts``: each Runway account's slots, pause, rotation, credits and jobs today."""
    relay = _relay(request)
    policy = relay.store.policy
    return JSONResponse(
        {
            "accounts": await relay.account_list(),
            "moderation_pause": str(policy.moderation) if policy.moderation else None,
            "credits_low": str(policy.credits_low) if policy.credits_low else None,
        }
    )


async def resume_account(request: Request) -> JSONResponse:
    """``POST /api/accounts/{email}/resume``: lift the pause, bring the account back into rotation."""
    return JSONResponse(await _relay(request).resume_account(request.path_params["email"]))


async def prune(request: Request) -> JSONResponse:
    """``POST /api/prune``: remove old finished jobs' history through this relay (``runway-relay prune``)."""
    return JSONResponse(await _relay(request).prune(await read_json(request)))


async def models(request: Request) -> JSONResponse:
    """``GET /api/models``: the model rules, for forms and scripts."""
    return JSONResponse({"models": rules.rules_table()})


async def healthz(request: Request) -> JSONResponse:
    """``GET /healthz``: liveness, open to all; job counts and handler names only with the key.

    The anonymous answer reads nothing from the database, so a probe never waits on it.
    """
    relay = _relay(request)
    if authenticated(request.scope):
        return JSONResponse(await relay.health())
    return JSONResponse({"status": "degraded" if relay.scheduler.degraded else "ok"})


async def readyz(request: Request) -> JSONResponse:
    """``GET /readyz``: readiness — 200 when the database takes writes, the loops run and the upstream
    answers (or is simulated); 503 with the reasons otherwise (see :mod:`runway_relay.readiness`).
    Needs the key when one is set, like everything but ``/healthz``."""
    answer = await readiness(_relay(request))
    return JSONResponse(answer, status_code=200 if answer["status"] == "ready" else 503)


async def openapi(request: Request) -> JSONResponse:
    """``GET /openapi.json``: the OpenAPI 3.1 description of this HTTP API (needs the key when set)."""
    return JSONResponse(document())


def _sse(data: dict[str, Any], event: str = "job") -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _settled(job: dict[str, Any]) -> bool:
    """Ended, and no handler run of it still to run (the download has arrived, or given up)."""
    busy = any(run["status"] in ("pending", "running") for run in job["handlers"])
    return job["status"] in TERMINAL and not busy


async def _stream(request: Request, job_id: str | None) -> AsyncIterator[str]:
    relay = _relay(request)
    async with relay.live.listen() as queue:
        if job_id is None:
            while True:
                try:
                    job = await asyncio.wait_for(queue.get(), timeout=KEEP_ALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if job is END:  # the relay is stopping; the browser reconnects to the next one
                    return
                yield _sse(job)
        async for text in _job_stream(relay, job_id, queue):
            yield text


async def _job_stream(
    relay: Relay, job_id: str, queue: asyncio.Queue[dict[str, Any] | None]
) -> AsyncIterator[str]:
    """One job's updates until it has ended and its handlers have settled.

    Handler runs finish without a job transition, so once the job has ended its state is read again
    every ``poll`` seconds (growing to 2 s) until the runs settle; a resubmit that queues the job
    again is followed like any other update.
    """
    job = await relay.store.get_job(job_id)
    yield _sse(job)
    poll, quiet_since = 0.1, time.monotonic()
    while not _settled(job):
        wait = poll if job["status"] in TERMINAL else KEEP_ALIVE
        try:
            update = await asyncio.wait_for(queue.get(), timeout=wait)
        except TimeoutError:
            update = None
        else:
            if update is END:
                return
        if update is None and job["status"] in TERMINAL:
            update, poll = await relay.store.get_job(job_id), min(2.0, poll * 1.5)
        if update is not None and update["id"] == job_id and update != job:
            job, quiet_since = update, time.monotonic()
            yield _sse(job)
        elif time.monotonic() - quiet_since >= KEEP_ALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"


async def job_events(request: Request) -> Response:
    """``GET /api/jobs/{id}/events``: Server-Sent Events until the job ends (503 past RELAY_SSE_MAX)."""
    await _relay(request).store.get_job(request.path_params["id"])  # 404 before streaming
    return request.app.state.streams.response(_stream(request, request.path_params["id"]))


async def all_events(request: Request) -> Response:
    """``GET /api/events``: Server-Sent Events for every job (503 past RELAY_SSE_MAX)."""
    return request.app.state.streams.response(_stream(request, None))


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus exposition of the ``relay_*`` series (see ``relay/metrics.py``).

    Counters and histograms are kept in memory as things happen; only the per-status job counts are
    read from the database, once per scrape.
    """
    relay = _relay(request)
    relay.metrics.know_handlers(relay.handlers)
    relay.metrics.set_job_counts(await relay.store.job_counts())
    body, content_type = relay.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
