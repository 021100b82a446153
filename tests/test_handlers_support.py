"""Shared pieces of the handler tests (no tests here): a real store, a real HTTP client, a recording
receiver on a real uvicorn, and jobs that reached ``succeeded`` through the real state machine."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runway_relay.handlers import HandlerContext, HandlerEvent
from runway_relay.settings import Settings
from runway_relay.states import Signal, Status
from runway_relay.storage import Routing, Store, open_store
from runway_relay.taskparse import ArtifactRef, TaskUpdate

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings_for(tmp: Path, **changes: Any) -> Settings:
    """Settings for a test: files in ``tmp``, a real upstream (not the simulator) so nothing is trusted."""
    base = Settings(
        useapi_token="test-token",
        db_path=str(tmp / "relay.db"),
        download_dir=tmp / "downloads",
        handler_max_attempts=2,
    )
    return base.with_overrides(**changes)


@contextlib.asynccontextmanager
async def handler_context(
    tmp: Path,
    routes: tuple[str, ...] = (),
    after: dict[str, tuple[str, ...]] | None = None,
    **changes: Any,
) -> AsyncIterator[HandlerContext]:
    """A HandlerContext on a fresh SQLite file; ``routes`` are the handlers that get outbox rows.

    ``ctx.store`` is the whole store here (a handler sees it only as a ``JobView``), so tests can set
    jobs up through it."""
    settings = settings_for(tmp, **changes)

    async def resubmit(job_id: str, max_attempts: int) -> int | None:
        moved = await store.resubmit(job_id, max_attempts)
        return None if moved is None else int(moved.row["attempt"])

    routing = Routing({signal: routes for signal in Signal}, after or {})
    store = open_store(settings.db_path, routing, origin="test")
    await store.open()
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            yield HandlerContext(settings, store, http, dashboard_url="http://relay.test/", resubmit=resubmit)
        finally:
            await store.close()


async def succeeded_job(
    store: Store,
    artifacts: tuple[ArtifactRef, ...] = (),
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A job that went queued → succeeded through the real state machine (with its outbox rows)."""
    params = params or {"model": "gen4.5", "text_prompt": "A red fox <at> dawn & dusk", "duration": 5}
    job_id = (await store.create_job(params["model"], params, None)).job_id
    update = TaskUpdate("task-1", Status.SUCCEEDED, "SUCCEEDED", 1.0, None, None, False, None, artifacts)
    await store.ingest_poll(job_id, 1, update, "{}")
    return await store.get_job(job_id)


def event_for(job: dict[str, Any], signal: Signal = Signal.SUCCEEDED, attempt: int = 1) -> HandlerEvent:
    """The HandlerEvent of the job's first handler run (or a made-up one when it has none)."""
    runs = job["handlers"]
    run_id = runs[0]["id"] if runs else 1
    return HandlerEvent(signal, run_id, attempt, 1)


@dataclass
class Seen:
    """One request a receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A stand-in for Slack, Discord or a forward target: records requests, answers from a script."""

    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        """Queue the answer to the next request (afterwards: 200 ``ok``)."""
        with self.lock:
            self.script.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, body))

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
            status, headers, content = self.script.pop(0) if self.script else (200, {}, b"ok")
        return Response(content, status, headers=headers)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["GET", "POST"])])
