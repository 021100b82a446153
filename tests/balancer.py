"""Test helper: a small round-robin HTTP load balancer in front of several relays.

Each request goes to the next backend in turn; a backend that refuses the connection (it was killed)
is skipped and the request goes to the next one, as Caddy's ``lb_try_duration`` would. Responses are
read whole (no streams), which is all the API and the callbacks need.
"""

from __future__ import annotations

import collections
import itertools
import threading

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Balancer:
    """An ASGI app; set :attr:`backends` to the relays' base URLs."""

    def __init__(self, backends: list[str] | None = None) -> None:
        self.backends = list(backends or [])
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.served: collections.Counter[str] = collections.Counter()  # backend → requests answered

    def _order(self) -> list[str]:
        with self._lock:
            start = next(self._turn)
        n = len(self.backends)
        return [self.backends[(start + i) % n] for i in range(n)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = JSONResponse({"error": "no backend answered"}, status_code=502)
        async with httpx.AsyncClient(timeout=30) as client:
            for backend in self._order():
                try:
                    answer = await client.request(
                        request.method, backend + path, content=body, headers=headers
                    )
                except httpx.TransportError:
                    continue  # that relay is down: try the next one
                with self._lock:
                    self.served[backend] += 1
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
                response = Response(answer.content, answer.status_code, headers=kept)
                break
        await response(scope, receive, send)
