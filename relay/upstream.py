"""The useapi.net client: one shared ``httpx.AsyncClient``, explicit timeouts, no secrets in logs.

:func:`classify_create` is pure: it turns a create answer into what the scheduler should do.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from .errors import UpstreamError
from .guard import Credits
from .logs import redact
from .metrics import Metrics
from .taskparse import account_of, parse_number

PREFIX = "/v1/runwayml"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_NO_CREDITS = "not have enough credits"
_BUSY = re.compile(r"^Account (?P<email>\S+) is busy executing", re.IGNORECASE)
_SECRET_KEYS = frozenset({"password", "jwt", "token", "cookie", "cookies", "authorization"})
STORED_BODY_MAX = 4000


class CreateKind(StrEnum):
    """What a create answer means for the job."""

    ACCEPTED = "accepted"  # 200 with a task
    BUSY = "busy"  # 429: useapi.net's queue for the account is full
    THROTTLED = "throttled"  # 429: Runway itself refused (too many tasks)
    REJECTED = "rejected"  # 400 / 401 / 402 / out of credits: do not retry
    TRANSIENT = "transient"  # 5xx, network error, timeout: retry, but check it was not accepted


@dataclass(frozen=True)
class CreateResult:
    """A classified create answer."""

    kind: CreateKind
    status: int | None
    message: str
    body: Any = None
    task: dict[str, Any] | None = None

    @property
    def no_credits(self) -> bool:
        """The account has not enough credits for this create (402, or the seed page's message)."""
        return self.kind is CreateKind.REJECTED and (
            self.status == 402 or _NO_CREDITS in self.message.lower()
        )

    @property
    def session_failed(self) -> bool:
        """useapi.net refused with 401: a broken session of the account (or a wrong token)."""
        return self.kind is CreateKind.REJECTED and self.status == 401

    @property
    def account(self) -> str | None:
        """The account named in the task id (accepted) or the busy account (429)."""
        if self.task:
            return account_of(self.task.get("taskId"))
        if isinstance(self.body, dict) and isinstance(self.body.get("runningTasks"), dict):
            return next(iter(self.body["runningTasks"]), None)
        match = _BUSY.match(self.message) if self.kind is CreateKind.BUSY else None
        return match["email"] if match else None


@dataclass(frozen=True)
class Upload:
    """A file to send upstream in pieces: ``pieces`` yields its bytes, ``size`` of them in all."""

    pieces: AsyncIterable[bytes]
    size: int


def _message(body: Any, default: str) -> str:
    """The error text of an upstream answer, as it may be stored and logged (redacted, then cut)."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return redact(body["error"][:8000])[:1000]
    if isinstance(body, str) and body.strip():
        return redact(body.strip()[:8000])[:1000]
    return default


def classify_create(status: int, body: Any) -> CreateResult:
    """Map an HTTP answer of ``POST videos/create`` to a :class:`CreateResult`."""
    message = _message(body, f"HTTP {status}")
    if 200 <= status < 300:
        task = body.get("task") if isinstance(body, dict) else None
        task = task if isinstance(task, dict) else body if isinstance(body, dict) else None
        if task and isinstance(task.get("taskId"), str):
            return CreateResult(CreateKind.ACCEPTED, status, "accepted", body, task)
        return CreateResult(CreateKind.TRANSIENT, status, "accepted without a taskId", body)
    if status == 429:
        busy = (isinstance(body, dict) and "runningTasks" in body) or bool(_BUSY.match(message))
        return CreateResult(CreateKind.BUSY if busy else CreateKind.THROTTLED, status, message, body)
    if status in (400, 401, 402, 403, 422) or _NO_CREDITS in message.lower():
        return CreateResult(CreateKind.REJECTED, status, message, body)
    return CreateResult(CreateKind.TRANSIENT, status, message, body)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if str(k).lower() in _SECRET_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def stored_body(body: Any) -> str | None:
    """An upstream answer as it may be kept in a job's history: secrets out, at most 4000 characters.

    Callback tokens inside ``replyUrl`` s (a 429 lists other jobs' ``runningTasks``) and fields named
    like credentials are masked, so the database never holds what could forge a callback or log in.
    """
    if body is None:
        return None
    text = body if isinstance(body, str) else json.dumps(_scrub(body), default=str)
    return redact(text)[:STORED_BODY_MAX]


def _max_jobs(info: Any) -> int | None:
    """``maxJobs`` of one ``GET accounts/`` entry, clamped to 1–10 (2 when it is missing or odd)."""
    if not isinstance(info, dict):
        return None
    raw = info.get("maxJobs")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 2
    return max(1, min(10, int(value))) if math.isfinite(value) else 2


def parse_features(body: Any) -> Credits:
    """The plan credits of a ``GET features/`` answer: ``permitted.numPlanCredits`` and
    ``used.numPlanCredits`` (numbers or numeric strings). Nothing else of the answer is kept."""

    def number(section: str) -> float | None:
        part = body.get(section) if isinstance(body, dict) else None
        value = parse_number(part.get("numPlanCredits")) if isinstance(part, dict) else None
        return None if value is None or value < 0 else value

    return Credits(number("permitted"), number("used"))


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:2000]


class Upstream:
    """Calls under ``{root}/v1/runwayml/`` with the bearer token."""

    def __init__(
        self, client: httpx.AsyncClient, root: str, token: str | None, metrics: Metrics | None = None
    ) -> None:
        self._client = client
        self._root = root.rstrip("/") + PREFIX
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._metrics = metrics or Metrics()
        # Why the last call got no usable answer (no connection, a timeout, a 5xx), or None once one
        # did: what /readyz says of the upstream, without calling it per probe.
        self.unreachable: str | None = None

    def _url(self, path: str) -> str:
        return f"{self._root}/{path}"

    async def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        headers_extra: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call; ``endpoint`` is the path template it is counted under in the metrics."""
        headers = {**self._headers, **(headers_extra or {})}
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method, self._url(path), headers=headers, timeout=TIMEOUT, **kwargs
            )
        except httpx.HTTPError as exc:
            answer = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
            self._metrics.upstream_call(endpoint, answer, time.perf_counter() - started)
            self.unreachable = f"the last call to useapi.net failed ({type(exc).__name__})"
            raise UpstreamError(f"{method} {path.split('/')[0]}: {type(exc).__name__}") from exc
        self._metrics.upstream_call(endpoint, str(response.status_code), time.perf_counter() - started)
        status = response.status_code
        self.unreachable = f"useapi.net answered the last call {status}" if status >= 500 else None
        return response

    async def create(self, body: dict[str, Any]) -> CreateResult:
        """``POST videos/create``; network errors become a ``TRANSIENT`` result, never an exception."""
        try:
            response = await self._request("POST", "videos/create", "videos/create", json=body)
        except UpstreamError as exc:
            return CreateResult(CreateKind.TRANSIENT, None, exc.message)
        return classify_create(response.status_code, _decode(response))

    async def _json(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, endpoint, **kwargs)
        body = _decode(response)
        if response.status_code >= 400:
            raise UpstreamError(_message(body, f"HTTP {response.status_code}"), response.status_code, body)
        return body

    async def get_task(self, task_id: str) -> Any:
        """``GET tasks/{taskId}``: the task Model."""
        return await self._json("GET", f"tasks/{task_id}", "tasks/{taskId}")

    async def scheduler(self) -> list[dict[str, Any]]:
        """``GET scheduler/``: what useapi.net runs for us now."""
        body = await self._json("GET", "scheduler/", "scheduler/")
        return [t for t in body if isinstance(t, dict)] if isinstance(body, list) else []

    async def recent_tasks(self, email: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """``GET tasks/``: the most recent tasks, newest first (``email`` picks the account)."""
        params: dict[str, Any] = {"limit": limit, **({"email": email} if email else {})}
        body = await self._json("GET", "tasks/", "tasks/", params=params)
        if isinstance(body, dict):
            body = body.get("tasks")
        return [t for t in body if isinstance(t, dict)] if isinstance(body, list) else []

    async def cancel(self, task_id: str) -> Any:
        """``DELETE scheduler/{taskId}``: stop tracking the task and free its slot."""
        return await self._json("DELETE", f"scheduler/{task_id}", "scheduler/{taskId}")

    async def accounts(self) -> dict[str, int]:
        """``GET accounts/``: email → maxJobs. The password and session token are dropped here."""
        body = await self._json("GET", "accounts/", "accounts/")
        found: dict[str, int] = {}
        if isinstance(body, dict):
            for email, info in body.items():
                max_jobs = _max_jobs(info)
                if max_jobs is not None:
                    found[str(email)] = max_jobs
        return found

    async def features(self, email: str | None = None) -> Credits:
        """``GET features/?email=``: the account's plan credits (the rest of the answer is dropped)."""
        params = {"email": email} if email else None
        return parse_features(await self._json("GET", "features/", "features/", params=params))

    async def upload_asset(
        self, name: str, content: bytes | Upload, content_type: str, email: str | None = None
    ) -> Any:
        """``POST assets/?name=``: the raw file as the body; the answer carries its ``assetId``.

        An :class:`Upload` is sent piece by piece with its ``Content-Length``, never whole in memory.
        """
        params = {"name": name, **({"email": email} if email else {})}
        headers = {"Content-Type": content_type}
        body: bytes | AsyncIterable[bytes] = content if isinstance(content, bytes) else content.pieces
        if isinstance(content, Upload):
            headers["Content-Length"] = str(content.size)
        return await self._json(
            "POST", "assets/", "assets/", params=params, content=body, headers_extra=headers
        )
