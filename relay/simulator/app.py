"""HTTP face of the simulated useapi.net Runway upstream: routes, lifecycle timers, callbacks.

Works standalone (:func:`create_app`) or mounted in a host app (``Mount("/", app=sim.app)`` or
``routes=[*sim.routes, ...]``): nothing depends on a lifespan having run. The host calls
:meth:`Simulator.aclose` on shutdown.
"""

# The media served as artifacts were generated once, with ffmpeg 5.1 (not needed at runtime),
# from relay/simulator/:
#
#     ffmpeg -y -f lavfi -i testsrc=size=320x180:rate=24:duration=2 \
#         -f lavfi -i sine=frequency=440:sample_rate=44100:duration=2 \
#         -c:v libx264 -profile:v baseline -preset veryslow -crf 35 -pix_fmt yuv420p \
#         -c:a aac -b:a 32k -ac 1 -shortest -movflags +faststart -map_metadata -1 \
#         -fflags +bitexact -flags:v +bitexact -flags:a +bitexact sample.mp4
#     ffmpeg -y -f lavfi -i testsrc=size=320x180:rate=1 -frames:v 1 -q:v 5 \
#         -fflags +bitexact -flags:v +bitexact preview.jpg

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .engine import PREVIEW_JPG, SAMPLE_MP4, Chaos, Engine
from .tasks import SimTask
from .validation import SimError, reply_url_under

log = logging.getLogger("runway_relay.simulator")

Handler = Callable[[Request], Awaitable[Response]]
_RETRY_DELAYS = (0.1, 0.3, 1.0)
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_VIDEO_EXT = (".mp4", ".mov", ".webm", ".m4v")


def _media_type(name: str, content_type: str | None) -> str | None:
    lowered, ctype = name.lower(), (content_type or "").lower()
    if ctype.startswith("image/") or lowered.endswith(_IMAGE_EXT):
        return "image"
    if ctype.startswith("video/") or lowered.endswith(_VIDEO_EXT):
        return "video"
    return None


class Simulator:
    """An in-memory stand-in for ``https://api.useapi.net/v1/runwayml/``."""

    def __init__(
        self,
        *,
        accounts: dict[str, int] | None = None,
        token: str | None = None,
        step_seconds: float = 1.0,
        base_url: str | None = None,
        runway_429_rate: float = 0.0,
        runway_capacity: int | None = None,
        create_delay: float = 0.0,
        chaos: Chaos | None = None,
        seed: int | None = None,
        reply_root: str | None = None,
        credits: dict[str, float] | None = None,
        broken: set[str] | None = None,
    ) -> None:
        """Configure the simulator; see the package docstring for the meaning of each option.

        ``reply_root``: refuse (400) a create whose ``replyUrl`` is not ``{reply_root}{token}``.
        ``credits``: the plan credits of some accounts (others get plenty); ``broken``: accounts whose
        session is broken from the start.
        """
        self.rng = random.Random(seed)
        self.engine = Engine(
            accounts or {"sim-1@example.com": 2},
            rng=self.rng,
            runway_429_rate=runway_429_rate,
            runway_capacity=runway_capacity,
            credits=credits,
            broken=broken,
        )
        self.token = token
        self.step_seconds = step_seconds
        self.create_delay = create_delay
        self.base_url = base_url.rstrip("/") if base_url else None
        self.reply_root = reply_root
        self.chaos = chaos or Chaos()
        self.deliveries: list[dict[str, Any]] = []
        self._client: httpx.AsyncClient | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._last_delivery: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        api = "/v1/runwayml"
        self.routes: list[BaseRoute] = [
            Route(f"{api}/videos/create", self._guard(self.create), methods=["POST"]),
            *self._both(f"{api}/tasks", self._guard(self.list_tasks), ["GET"]),
            Route(f"{api}/tasks/{{task_id:path}}", self._guard(self.get_task), methods=["GET"]),
            *self._both(f"{api}/scheduler", self._guard(self.scheduler), ["GET"]),
            Route(f"{api}/scheduler/{{task_id:path}}", self._guard(self.delete), methods=["DELETE"]),
            *self._both(f"{api}/accounts", self._guard(self.accounts), ["GET"]),
            *self._both(f"{api}/features", self._guard(self.features), ["GET"]),
            *self._both(f"{api}/assets", self._guard(self.list_assets), ["GET"]),
            *self._both(f"{api}/assets", self._guard(self.upload_asset), ["POST"]),
            Route("/sim/artifacts/{name}", self.artifact, methods=["GET", "HEAD"]),
            Route("/sim/stats", self.stats, methods=["GET"]),
            Route("/sim/release/{task_id:path}", self.release, methods=["POST"]),
            Route("/sim/accounts/{email}", self.update_account, methods=["POST"]),
        ]
        self.app = Starlette(routes=self.routes)

    # -- introspection ---------------------------------------------------------------------
    @property
    def tasks(self) -> dict[str, SimTask]:
        """Every task ever accepted, by taskId."""
        return self.engine.tasks

    @property
    def creates(self) -> list[dict[str, Any]]:
        """Every accepted create body, in order."""
        return self.engine.creates

    @property
    def create_attempts(self) -> int:
        """Number of ``videos/create`` requests that reached validation."""
        return self.engine.create_attempts

    @property
    def rejected_429(self) -> int:
        """Number of creates answered 429 (either form)."""
        return self.engine.rejected_429

    # -- plumbing --------------------------------------------------------------------------
    @staticmethod
    def _both(path: str, handler: Handler, methods: list[str]) -> list[Route]:
        return [Route(path, handler, methods=methods), Route(path + "/", handler, methods=methods)]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            expected = None if self.token is None else f"Bearer {self.token}"
            if expected is not None and request.headers.get("authorization") != expected:
                return JSONResponse({"error": "Unauthorized", "code": 401}, status_code=401)
            try:
                return await handler(request)
            except SimError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return guarded

    def _base(self, request: Request) -> str:
        return self.base_url or str(request.base_url).rstrip("/")

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        job: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    async def aclose(self) -> None:
        """Cancel every running lifecycle and delivery, then close the HTTP client."""
        self._closed = True
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- routes ----------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        """``POST videos/create`` (JSON or multipart/form-data)."""
        if request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")
        ):
            async with request.form() as form:
                body: Any = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            try:
                body = await request.json()
            except ValueError:
                raise SimError(400, {"error": "Request body is not valid JSON", "code": 400}) from None
        if not isinstance(body, dict):
            raise SimError(400, {"error": "Request body must be a JSON object", "code": 400})
        reply_url = body.get("replyUrl")
        if self.reply_root and reply_url and not reply_url_under(str(reply_url), self.reply_root):
            message = (
                f"Parameter replyUrl must be {self.reply_root}<token> (this simulator posts nowhere else)"
            )
            raise SimError(400, {"error": message, "code": 400})
        task = self.engine.create(body, self._base(request))
        answer = {"task": task.model_json()}
        self._spawn(self._lifecycle(task))
        if self.create_delay:  # accepted upstream, answer not yet back: the window a crash can hit
            await asyncio.sleep(self.create_delay)
        if task.lost_answer:
            return JSONResponse({"error": "Internal Server Error (simulated)", "code": 500}, status_code=500)
        return JSONResponse(answer)

    async def stats(self, request: Request) -> Response:
        """``GET /sim/stats``: accepted creates (their replyRefs), attempts, 429s and tasks."""
        return JSONResponse(self.engine.stats())

    async def list_tasks(self, request: Request) -> Response:
        """``GET tasks/?offset=&limit=&statuses=&email=``: recent tasks, newest first."""
        query = request.query_params
        try:
            offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 50)
        except ValueError:
            raise SimError(400, {"error": "offset and limit must be numbers", "code": 400}) from None
        if not (0 <= offset <= 1000 and 1 <= limit <= 1000):
            raise SimError(400, {"error": "offset must be 0-1000 and limit 1-1000", "code": 400})
        statuses = {s.strip() for s in (query.get("statuses") or "").split(",") if s.strip()} or None
        return JSONResponse(self.engine.recent(offset, limit, statuses, query.get("email") or None))

    async def release(self, request: Request) -> Response:
        """``POST /sim/release/{taskId}``: a ``[hold]`` task goes on to its end."""
        try:
            task = self.engine.release(request.path_params["task_id"])
        except SimError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return JSONResponse({**task.summary(), "status": task.status, "released": True})

    async def get_task(self, request: Request) -> Response:
        """``GET tasks/{taskId}``: the bare task Model."""
        task_id = request.path_params["task_id"]
        task = self.engine.tasks.get(task_id)
        if task is None:
            return JSONResponse({"error": f"Unable to locate task {task_id}", "code": 404}, status_code=404)
        return JSONResponse(task.model_json())

    async def scheduler(self, request: Request) -> Response:
        """``GET scheduler/``: ``[{taskId, replyUrl, replyRef}]`` of running tasks."""
        return JSONResponse(self.engine.scheduler())

    async def delete(self, request: Request) -> Response:
        """``DELETE scheduler/{taskId}``: stop tracking a task and free its slot."""
        task = self.engine.delete(request.path_params["task_id"])
        return JSONResponse({**task.summary(), "status": task.status, "deleted": True, "code": 200})

    async def accounts(self, request: Request) -> Response:
        """``GET accounts/``."""
        return JSONResponse(self.engine.accounts_json())

    async def features(self, request: Request) -> Response:
        """``GET features/?email=``: the account's plan and credits."""
        return JSONResponse(self.engine.features(request.query_params.get("email") or None))

    async def update_account(self, request: Request) -> Response:
        """``POST /sim/accounts/{email}`` with ``{"permitted", "used", "broken"}`` (any of them)."""
        email = request.path_params["email"]
        try:
            changes = await request.json()
            if email not in self.engine.accounts:
                raise SimError(404, {"error": f"Runway account {email} not found", "code": 404})
            if not isinstance(changes, dict):
                raise SimError(400, {"error": "the body must be a JSON object", "code": 400})
            return JSONResponse(self.engine.plans.update(email, changes))
        except ValueError:
            return JSONResponse({"error": "the body is not JSON", "code": 400}, status_code=400)
        except SimError as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    async def list_assets(self, request: Request) -> Response:
        """``GET assets/?mediaType=image|video``."""
        media_type = request.query_params.get("mediaType") or None
        if media_type not in (None, "image", "video"):
            raise SimError(400, {"error": "Parameter mediaType must be image or video", "code": 400})
        return JSONResponse({"assets": self.engine.list_assets(media_type), "code": 200})

    async def upload_asset(self, request: Request) -> Response:
        """``POST assets/``: a multipart file, or the raw body with ``?name=``."""
        name = request.query_params.get("name") or ""
        ctype = request.headers.get("content-type")
        if (ctype or "").startswith("multipart/form-data"):
            async with request.form() as form:
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
                if upload is None:
                    raise SimError(400, {"error": "No file in the multipart body", "code": 400})
                size = upload.size or 0
                name, ctype = upload.filename or name, upload.content_type
        else:  # counted as it streams in: a large upload is never held in memory
            size = 0
            async for piece in request.stream():
                size += len(piece)
        media_type = request.query_params.get("mediaType") or _media_type(name, ctype)
        if not size or media_type not in ("image", "video"):
            raise SimError(400, {"error": "Upload an image or a video file", "code": 400})
        email = request.query_params.get("email") or None
        asset = self.engine.add_asset(name or f"upload.{media_type}", media_type, size, email)
        return JSONResponse({**asset, "code": 200})

    async def artifact(self, request: Request) -> Response:
        """``GET /sim/artifacts/{uuid}.mp4|.jpg``: the sample media, with Range support."""
        stem, _, ext = str(request.path_params["name"]).rpartition(".")
        path = {"mp4": SAMPLE_MP4, "jpg": PREVIEW_JPG}.get(ext)
        if path is None or stem not in self.engine.artifact_ids:
            return JSONResponse({"error": "Not found", "code": 404}, status_code=404)
        media = "video/mp4" if ext == "mp4" else "image/jpeg"
        return FileResponse(path, media_type=media)

    # -- lifecycle and callbacks -----------------------------------------------------------
    async def _lifecycle(self, task: SimTask) -> None:
        try:
            self._emit(task)
            while not task.terminal:
                await asyncio.sleep(self.step_seconds)
                if self.engine.step(task) and not task.deleted:
                    self._emit(task)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one task take the simulator down
            log.exception("simulator lifecycle of %s crashed", task.task_id)

    def _emit(self, task: SimTask) -> None:
        """Queue a callback for the task's current state, applying chaos."""
        if not task.reply_url or self._closed:
            return
        chaos, rng = self.chaos, self.rng
        if not task.terminal and chaos.drop and rng.random() < chaos.drop:
            self.deliveries.append({"taskId": task.task_id, "status": task.status, "ok": None})
            return
        copies = 2 if chaos.duplicate and rng.random() < chaos.duplicate else 1
        for _ in range(copies):
            model = task.model_json()
            if rng.random() < 0.5:
                model["progressRatio"] = round(task.progress, 4)
            payload = {"task": model} if rng.random() < 0.5 else model
            delay_max = chaos.delay_max or (3 * self.step_seconds if chaos.shuffle else 0.0)
            delay = rng.uniform(0, delay_max) if delay_max else 0.0
            if chaos.shuffle:
                self._spawn(self._deliver(None, task, payload, delay))
            else:  # in order: each delivery waits for the previous one of the same task
                prev = self._last_delivery.get(task.task_id)
                job = self._spawn(self._deliver(prev, task, payload, delay))
                self._last_delivery[task.task_id] = job
                if task.terminal:
                    job.add_done_callback(lambda _j, k=task.task_id: self._forget(k, _j))

    def _forget(self, task_id: str, job: asyncio.Task[None]) -> None:
        if self._last_delivery.get(task_id) is job:
            del self._last_delivery[task_id]

    async def _deliver(
        self,
        prev: asyncio.Task[None] | None,
        task: SimTask,
        payload: dict[str, Any],
        delay: float,
    ) -> None:
        if prev is not None and not prev.done():
            await asyncio.wait([prev])
        if delay:
            await asyncio.sleep(delay)
        status = (payload.get("task") or payload)["status"]
        record: dict[str, Any] = {
            "taskId": task.task_id,
            "email": task.email,
            "status": status,
            "ok": False,
            "sent_at": time.monotonic(),
        }
        if task.deleted:  # DELETE scheduler/ stops the callbacks
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0, trust_env=False)
        for attempt in range(len(_RETRY_DELAYS) + 1):
            if task.deleted:
                break
            record["attempts"] = attempt + 1
            try:
                answer = await self._client.post(str(task.reply_url), json=payload)
                record["http_status"] = answer.status_code
                if answer.is_success:
                    record["ok"], record["done_at"] = True, time.monotonic()
                    break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, timeouts, bad URLs...
                record["http_status"] = None
                record["last_error"] = f"{type(exc).__name__}: {exc}"
            if attempt < len(_RETRY_DELAYS):
                await asyncio.sleep(_RETRY_DELAYS[attempt])
        self.deliveries.append(record)


def create_app(**kwargs: Any) -> Starlette:
    """A standalone simulator app whose lifespan closes the :class:`Simulator`.

    Keyword arguments go to :class:`Simulator`; the instance is ``app.state.simulator``.
    """
    sim = Simulator(**kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.aclose()

    app = Starlette(routes=list(sim.routes), lifespan=lifespan)
    app.state.simulator = sim
    return app
