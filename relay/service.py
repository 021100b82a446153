"""The relay itself: owns the store, the HTTP client, the scheduler, poller, dispatcher and signals.

The receiver's endpoints are thin wrappers around these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from . import rules, signals
from .dispatcher import Dispatcher
from .errors import BadRequest, NotFound, UpstreamError, ValidationError
from .handlers import HandlerContext, build_handlers
from .live import Broadcaster
from .logs import redact
from .poller import Poller
from .scheduler import Scheduler
from .settings import Settings
from .states import Signal
from .storage import IngestResult, SQLiteStore, open_store
from .taskparse import TaskParseError, account_of, parse_task
from .upstream import Upstream

log = logging.getLogger("runway_relay")

MAX_CALLBACK_BYTES = 1024 * 1024


class Relay:
    """One relay process. ``await start()`` before use, ``await stop()`` at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: SQLiteStore = open_store(settings.db_path, self._route, self._listening)
        self.live = Broadcaster()
        self.simulator: Any = None
        if settings.simulated:
            from .simulator import Simulator

            self.simulator = Simulator(
                accounts=dict(settings.accounts) or None,
                step_seconds=settings.sim_step_seconds,
                base_url=settings.own_url,
            )
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), limits=limits)
        self.upstream = Upstream(self.http, settings.upstream_root, settings.useapi_token)
        # Built here, not at start, so a configuration mistake stops `serve` with a clear message.
        ctx = HandlerContext(
            settings,
            self.store,
            self.http,
            dashboard_url=settings.callback_root + "/",
            job_moved=self.after_commit,
        )
        self.handlers: dict[str, Any] = build_handlers(ctx)
        self.dispatcher = Dispatcher(self.store, self.handlers)
        self.scheduler = Scheduler(
            self.store, self.upstream, settings.callback_root, self.after_commit, dict(settings.accounts)
        )
        self.poller = Poller(self.store, self.upstream, settings.poll_after, self.publish)
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and start the background loops."""
        settings = self.settings
        await self.store.open()
        for name in self._handled_signals():
            signals.signal_for(name).connect(self.dispatcher.wake, weak=False)
        loops = {
            "dispatcher": self.dispatcher.run,
            "scheduler": self.scheduler.run,
            "poller": self.poller.run,
        }
        for name, run in loops.items():
            self._tasks.append(asyncio.create_task(self._guard(name, run)))
        log.info(
            "relay started upstream=%s handlers=%s db=%s",
            "simulator" if settings.simulated else settings.useapi_base_url,
            ",".join(self.handlers) or "none",
            settings.db_path,
        )

    def _handled_signals(self) -> set[Signal]:
        """Signals some enabled handler wants: only those can have written outbox rows to run."""
        return {signal for handler in self.handlers.values() for signal in handler.events}

    async def _guard(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Keep a background loop alive: if it dies (a database fault, a bug) it restarts after a pause."""
        pause = 1.0
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s loop stopped unexpectedly; restarting it in %.0f s", name, pause)
                await asyncio.sleep(pause)
                pause = min(60.0, pause * 2)

    async def stop(self) -> None:
        """Stop the loops, let work in flight finish briefly, close everything."""
        for name in self._handled_signals():
            signals.signal_for(name).disconnect(self.dispatcher.wake)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.scheduler.drain(5)
        await self.dispatcher.drain(5)
        if self.simulator is not None:
            await self.simulator.aclose()
        await self.http.aclose()
        await self.store.close()

    def simulator_app(self) -> Any:
        """The built-in simulator's ASGI app (only when no ``USEAPI_TOKEN`` is set)."""
        if self.simulator is None:
            raise RuntimeError("the simulator runs only when USEAPI_TOKEN is unset")
        return self.simulator.app

    # -- routing of handler runs --------------------------------------------------------------

    def _route(self, job: dict[str, Any], signal: Signal) -> Sequence[str]:
        chosen = json.loads(job["handlers"]) if job.get("handlers") else None
        names = chosen if chosen is not None else list(self.handlers)
        return [n for n in names if n in self.handlers and signal in self.handlers[n].events]

    def _listening(self, signal: Signal | None) -> bool:
        """Whether an update firing ``signal`` has a reader for its job JSON (runs on the writer)."""
        if self.live.listening:
            return True
        return signal is not None and bool(signals.signal_for(signal).receivers)

    # -- after a commit -----------------------------------------------------------------------

    async def after_commit(self, job_id: str) -> None:
        """Publish a job's new state and fire the signal of its last transition."""
        job = await self.store.get_job(job_id)
        last = await self.store.last_transition(job_id)
        signal = Signal(last["signal"]) if last and last["signal"] else None
        await self._announce(job, signal, last["id"] if last else None)

    async def publish(self, result: IngestResult) -> None:
        """After a callback or poll: tell listeners, fire the signal, free the slot if it ended."""
        if result.outcome != "applied" or result.brief is None:
            return
        if result.job is None:  # nobody reads the JSON; the scheduler still must know
            self.scheduler.job_changed(result.brief)
            return
        await self._announce(result.job, result.signal, result.transition_id)

    async def _announce(self, job: dict[str, Any], signal: Signal | None, transition_id: int | None) -> None:
        self.live.publish(job)
        if signal is not None:
            signals.send(self, signal, job, transition_id)
        self.scheduler.job_changed(job)

    # -- the API's verbs ----------------------------------------------------------------------

    async def submit(
        self, body: Any, *, group_id: str | None = None, client_ref: str | None = None
    ) -> dict[str, Any]:
        """Validate against the model rules, store the job ``queued`` and wake the scheduler.

        ``group_id`` ties the job to a compare group; a ``client_ref`` already stored answers that job.
        """
        normalized, handlers = self.check(body)
        account = normalized.get("email")
        job = await self.store.create_job(
            normalized["model"], normalized, handlers, account, group_id=group_id, client_ref=client_ref
        )
        log.info("queued job=%s model=%s", job["id"], job["model"])
        self.live.publish(job)
        self.scheduler.wake()
        return job

    def check(self, body: Any) -> tuple[dict[str, Any], list[str] | None]:
        """The normalized videos/create body and the handler list, or :class:`ValidationError`."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object with the videos/create fields")
        params = dict(body)
        handlers = params.pop("handlers", None)
        if handlers is not None:
            if not isinstance(handlers, list) or not all(isinstance(h, str) for h in handlers):
                raise ValidationError("handlers must be a list of handler names", "handlers")
            unknown = [h for h in handlers if h not in self.handlers]
            if unknown:
                raise ValidationError(
                    f"unknown or disabled handler(s): {', '.join(unknown)}; "
                    f"enabled: {', '.join(self.handlers)}",
                    "handlers",
                )
        for reserved in ("replyUrl", "replyRef"):
            if reserved in params:
                raise ValidationError(f"{reserved} is set by the relay; leave it out", reserved)
        return rules.validate(params), handlers

    async def ingest_callback(self, token: str, raw: bytes) -> IngestResult:
        """Parse a callback body, match it by token and replyRef, apply it durably, then signal."""
        if len(token) > 128:
            raise NotFound("unknown callback token")
        try:
            update = parse_task(json.loads(raw))
        except TaskParseError as exc:
            raise BadRequest(str(exc)) from None
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to decode
            raise BadRequest("the body is not JSON the relay can read") from None
        # The body echoes replyUrl, which carries the token: keep the history, not the secret.
        body = redact(raw.decode("utf-8", "replace"))
        result = await self.store.ingest_callback(token, update, body)
        # Every callback is in the events table; the log tells of status changes and oddities, and
        # keeps progress ticks, repeats and late arrivals for DEBUG (at INFO they cost ~15 % of ingest).
        quiet = result.outcome in ("duplicate", "stale") or (
            result.outcome == "applied" and not result.status_changed
        )
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "callback job=%s replyRef=%s outcome=%s status=%s",
            result.job_id,
            update.reply_ref,
            result.outcome,
            update.raw_status,
        )
        await self.publish(result)
        return result

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel: the job ends ``cancelled`` and its upstream slot is freed with DELETE scheduler."""
        job = await self.store.cancel(job_id)
        if job["task_id"]:
            try:
                await self.upstream.cancel(job["task_id"])
                await self.store.record_upstream_note(job_id, "cancel", "applied", "DELETE scheduler ok")
            except UpstreamError as exc:
                await self.store.record_upstream_note(job_id, "cancel", "error", exc.message)
        await self.after_commit(job_id)
        return await self.store.get_job(job_id)

    async def replay(self, job_id: str, handler: str | None) -> list[dict[str, Any]]:
        """Run the handlers of the job's last transition again."""
        if handler is not None and handler not in self.handlers:
            raise ValidationError(
                f"handler {handler!r} is not enabled; enabled: {', '.join(self.handlers)}", "handler"
            )
        runs = await self.store.replay(job_id, handler)
        self.dispatcher.wake()
        return runs

    async def upload_asset(
        self, name: str, content: bytes, content_type: str, email: str | None
    ) -> dict[str, Any]:
        """Upload an image or video upstream and remember which account holds it."""
        answer = await self.upstream.upload_asset(name, content, content_type, email)
        asset_id = answer.get("assetId") if isinstance(answer, dict) else None
        if not isinstance(asset_id, str):
            raise UpstreamError("the upload answer carried no assetId", None, answer)
        account = account_of(asset_id) or email
        await self.store.save_asset(asset_id, account, name, content_type.split("/")[0])
        return {"assetId": asset_id, "account": account}

    async def health(self) -> dict[str, Any]:
        """``/healthz``: ok, or degraded with the reason."""
        jobs = await self.store.job_counts()
        degraded = self.scheduler.degraded
        return {
            "status": "degraded" if degraded else "ok",
            "reason": degraded,
            "upstream": "simulator" if self.settings.simulated else "useapi.net",
            "jobs": jobs,
            "handlers": sorted(self.handlers),
        }
