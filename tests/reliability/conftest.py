"""Shared parts of the reliability suite.

Every scenario runs the real relay (``python -m runway_relay serve``) as a subprocess, and the parts it
talks to as real HTTP servers on 127.0.0.1 in threads of the test process: the useapi.net simulator as
upstream (in-process, so a test can read the ``replyUrl`` it was sent and move its tasks), a CDN that
serves the sample MP4 and counts every GET, and a webhook sink for the ``forward`` handler.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runway_relay.simulator import SAMPLE_MP4, Chaos, Simulator

from conftest import query as shared_query
from servers import serve_in_thread

HOLD_LIMIT = 120.0  # seconds a held request waits at most (bounded, even if a test forgets to open)
TERMINAL = ("succeeded", "failed", "cancelled", "rejected")


def has_forward_handler() -> bool:
    """The ``forward`` handler is being written in parallel; scenarios use it once it exists."""
    return importlib.util.find_spec("runway_relay.handlers.forward") is not None


def forward_env(url: str) -> dict[str, str]:
    """Environment that turns the ``forward`` handler on (when it exists)."""
    if not has_forward_handler():
        return {}
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    return {"RELAY_FORWARD_URL": url, "RELAY_FORWARD_SECRET": secret}


class Gate:
    """Holds requests until opened; a held request whose client went away is dropped, not served."""

    def __init__(self, closed: bool = False) -> None:
        self._open = threading.Event()
        if not closed:
            self._open.set()

    def open(self) -> None:
        """Let held and future requests through."""
        self._open.set()

    async def passes(self, request: Request) -> bool:
        """Wait until open; False if the client disconnected meanwhile (e.g. it was killed)."""
        deadline = time.monotonic() + HOLD_LIMIT
        while not self._open.is_set() and time.monotonic() < deadline:
            if await request.is_disconnected():
                return False
            await asyncio.sleep(0.02)
        return not await request.is_disconnected()


@dataclass
class Cdn:
    """Stands in for Runway's CDN: ``/v/{name}`` serves the sample MP4 (with Range)."""

    url: str
    gate: Gate
    gets: list[str] = field(default_factory=list)
    completed: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: list[str] = field(default_factory=list)

    def artifact(self, name: str) -> dict[str, Any]:
        """An ``artifacts`` entry of a task Model pointing here."""
        return {"url": f"{self.url}/v/{name}", "fileSize": str(SAMPLE_MP4.stat().st_size)}


def _cdn_app(cdn: Cdn) -> Starlette:
    data = SAMPLE_MP4.read_bytes()

    async def video(request: Request) -> Response:
        path = request.url.path
        cdn.gets.append(path)
        if not await cdn.gate.passes(request):
            cdn.dropped.append(path)
            return Response(status_code=503)
        start = 0
        ranged = request.headers.get("range", "")
        if ranged.startswith("bytes=") and ranged[6:].split("-")[0].isdigit():
            start = int(ranged[6:].split("-")[0])
        if start >= len(data):
            return Response(status_code=416, headers={"content-range": f"bytes */{len(data)}"})

        async def body() -> Any:
            yield data[start:]
            cdn.completed[path] += 1  # the last byte was handed to the connection

        headers = {"content-length": str(len(data) - start), "accept-ranges": "bytes"}
        if start:
            headers["content-range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return StreamingResponse(body(), status_code=206 if start else 200, headers=headers)

    return Starlette(routes=[Route("/v/{name:path}", video, methods=["GET"])])


@pytest.fixture
def cdn() -> Iterator[Cdn]:
    """A counting CDN; ``cdn.gate`` starts open (close it with a fresh ``Gate(closed=True)``)."""
    box = Cdn(url="", gate=Gate())
    with serve_in_thread(_cdn_app(box)) as url:
        box.url = url
        yield box


@dataclass
class Sink:
    """Receives forwarded webhooks; ``acked`` counts the ones answered 200, by ``webhook-id``."""

    url: str
    gate: Gate
    received: list[str] = field(default_factory=list)
    acked: collections.Counter[str] = field(default_factory=collections.Counter)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A webhook receiver for the ``forward`` handler."""
    box = Sink(url="", gate=Gate())

    async def hook(request: Request) -> Response:
        msg_id = request.headers.get("webhook-id", "?")
        await request.body()
        box.received.append(msg_id)
        if not await box.gate.passes(request):
            return Response(status_code=503)
        box.acked[msg_id] += 1
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        box.url = url + "/hook"
        yield box


@dataclass
class Upstream:
    """The simulator serving as useapi.net, and how many GETs its artifact route answered."""

    sim: Simulator
    url: str
    artifact_gets: collections.Counter[str]

    def env(self, **extra: str) -> dict[str, str]:
        """Relay environment pointing at this upstream."""
        return {"USEAPI_TOKEN": "sim-token", "USEAPI_BASE_URL": self.url, **extra}

    def create_for(self, job_id: str) -> dict[str, Any]:
        """The create body the relay sent for ``job_id`` (with its replyUrl and replyRef)."""
        return next(c for c in self.sim.creates if str(c.get("replyRef", "")).startswith(job_id + "."))


def _counting(app: Any, counter: collections.Counter[str]) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/sim/artifacts/"):
            counter[scope["path"]] += 1
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def upstream_factory() -> Iterator[Callable[..., Upstream]]:
    """Start simulators as upstream in threads of this process (``Simulator`` keyword arguments)."""
    stack: list[Any] = []

    def make(**kwargs: Any) -> Upstream:
        kwargs.setdefault("token", "sim-token")
        sim = Simulator(**kwargs)
        counter: collections.Counter[str] = collections.Counter()
        server = serve_in_thread(_counting(sim.app, counter))
        url = server.__enter__()
        stack.append(server)
        return Upstream(sim, url, counter)

    yield make
    for server in reversed(stack):
        server.__exit__(None, None, None)


@pytest.fixture
def upstream(upstream_factory: Callable[..., Upstream]) -> Upstream:
    """A simulator whose tasks never move by themselves: the test plays useapi.net's part."""
    return upstream_factory(step_seconds=3600, accounts={f"acct{i}@example.com": 10 for i in range(6)})


def chaos(duplicate: float, drop: float) -> Chaos:
    """Callback misbehaviour: duplicates, shuffled order, drops (re-exported for the tests)."""
    return Chaos(duplicate=duplicate, shuffle=True, drop=drop)


def query(db: str | Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the relay's database (SQLite or PostgreSQL) from this process, as an operator would."""
    return shared_query(db, sql, args)


def wait_until(check: Callable[[], Any], timeout: float, what: str, log: Callable[[], str]) -> Any:
    """Poll ``check`` until it returns something truthy; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture
def helpers() -> Any:
    """The module-level helpers, for tests (so they need not import this conftest)."""
    return _Helpers()


class _Helpers:
    query = staticmethod(query)
    wait_until = staticmethod(wait_until)
    forward_env = staticmethod(forward_env)
    has_forward_handler = staticmethod(has_forward_handler)
    chaos = staticmethod(chaos)
    Gate = Gate
    TERMINAL = TERMINAL
