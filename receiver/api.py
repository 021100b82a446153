"""The JSON API under ``/api`` plus ``/healthz`` and ``/metrics`` (contract §5)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import rules
from ..errors import ValidationError
from ..service import Relay
from ..states import TERMINAL, Status
from .auth import authenticated
from .bodies import read_json
from .openapi import document


def _relay(request: Request) -> Relay:
    return request.app.state.relay


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ValidationError("limit must be a whole number from 1 to 500", "limit")
    return int(raw)


async def create_job(request: Request) -> JSONResponse:
    """``POST /api/jobs``: validate, store ``queued``, answer 201 with the job."""
    job = await _relay(request).submit(await read_json(request))
    return JSONResponse(job, status_code=201)


async def list_jobs(request: Request) -> JSONResponse:
    """``GET /api/jobs?status=&model=&limit=&cursor=``: newest first."""
    query = request.query_params
    status = query.get("status")
    if status and status not in {s.value for s in Status}:
        raise ValidationError(
            f"unknown status {status!r}; use one of {', '.join(s.value for s in Status)}", "status"
        )
    jobs, cursor = await _relay(request).store.list_jobs(
        status=status, model=query.get("model"), limit=_limit(query.get("limit")), cursor=query.get("cursor")
    )
    return JSONResponse({"jobs": jobs, "next_cursor": cursor})


async def get_job(request: Request) -> JSONResponse:
    """``GET /api/jobs/{id}``: the job with its events, transitions and handler runs."""
    job = await _relay(request).store.get_job(request.path_params["id"], events=True)
    return JSONResponse(job)


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


async def openapi(request: Request) -> JSONResponse:
    """``GET /openapi.json``: the OpenAPI 3.1 description of this HTTP API (needs the key when set)."""
    return JSONResponse(document())


def _sse(data: dict[str, Any], event: str = "job") -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _stream(request: Request, job_id: str | None) -> AsyncIterator[str]:
    relay = _relay(request)
    async with relay.live.listen() as queue:
        if job_id is not None:
            job = await relay.store.get_job(job_id)
            yield _sse(job)
            if job["status"] in TERMINAL:
                return
        while True:
            try:
                job = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if job_id is None or job["id"] == job_id:
                yield _sse(job)
                if job_id is not None and job["status"] in TERMINAL:
                    return


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
