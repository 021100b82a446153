"""The relay itself: owns the store, the HTTP client, the scheduler, poller, dispatcher and signals.

The receiver's endpoints are thin wrappers around these methods. Every write that moves a job returns
what moved (:class:`~.storage.Moved`); :meth:`Relay.announce` tells the live views, the blinker
signal and the scheduler exactly that, after the commit. Moves made by other relays sharing the
database arrive as notices and reach the same listeners (:meth:`Relay._foreign`). What happens to a
Runway account (a pause, low credits…) is a committed :class:`~.storage.Notice`, announced the same way
(:meth:`Relay.announce_notices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from . import blocklist, rules, signals
from .accounts import AccountWatch, account_json
from .coordination import Leadership, guard, relay_id
from .dispatcher import Dispatcher
from .errors import BadRequest, Conflict, NotFound, UpstreamError, ValidationError
from .guard import AccountPolicy, RuleError, parse_duration
from .handlers import Handler, HandlerContext, build_handlers
from .live import Broadcaster
from .logs import redact
from .metrics import Metrics
from .poller import Poller
from .retention import SERVED_BATCH, SERVED_PAUSE, Retention, prune
from .scheduler import Scheduler
from .settings import Settings
from .states import AccountSignal, AnySignal, Signal
from .storage import IngestResult, Moved, Notice, Routing, iso_at, open_store
from .taskparse import TaskParseError, account_of, parse_task
from .upstream import Upload, Upstream

log = logging.getLogger("runway_relay")

CATCH_UP_MARGIN = 5.0  # seconds: relays' clocks differ a little

MAX_CALLBACK_BYTES = 1024 * 1024


class Relay:
    """One relay process. ``await start()`` before use, ``await stop()`` at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = relay_id()
        self.store = open_store(settings.db_path, origin=self.id)
        self.live = Broadcaster()
        self.metrics = Metrics()
        self.simulator: Any = None
        if settings.simulated:
            from .simulator import Simulator

            self.simulator = Simulator(
                accounts=dict(settings.accounts) or None,
                step_seconds=settings.sim_step_seconds,
                base_url=settings.own_url,
                token=settings.internal_token,  # it answers only to this relay (issue 15)
                reply_root=f"{settings.callback_root}/callbacks/",
            )
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), limits=limits)
        self.upstream = Upstream(self.http, settings.upstream_root, settings.upstream_token, self.metrics)
        # Built here, not at start, so a configuration mistake stops `serve` with a clear message.
        ctx = HandlerContext(
            settings,
            self.store,
            self.http,
            dashboard_url=settings.callback_root + "/",
            resubmit=self.resubmit,
        )
        self.handlers: dict[str, Handler] = build_handlers(ctx)
        self.store.routing = routing_for(self.handlers)
        self.store.policy = AccountPolicy(settings.moderation, settings.credits_low)
        self.accounts = AccountWatch(self.store, self.upstream, self.store.policy, self.announce_notices)
        lease = settings.lease_seconds
        self.dispatcher = Dispatcher(
            self.store, self.handlers, self.id, lease=lease * 3, metrics=self.metrics
        )
        self.poller = Poller(self.store, self.upstream, settings.poll_after, self.publish)
        self.scheduler = Scheduler(
            self.store,
            self.upstream,
            settings.callback_root,
            self.announce,
            self.id,
            dict(settings.accounts),
            adopted=self.poller.poll,
            accounts=self.accounts,
        )
        self.accounts.on_change = self.scheduler.wake
        loops = {"scheduler": self.scheduler.run, "poller": self.poller.run, "accounts": self.accounts.run}
        self.retention: Retention | None = None
        if settings.retain_days is not None:
            self.retention = Retention(
                self.store, settings.retain_days, settings.download_dir, files=settings.retain_files
            )
            loops["retention"] = self.retention.run
        self.leadership = Leadership(self.store, self.id, lease, loops)
        self._tasks: list[asyncio.Task[None]] = []
        self._foreign_ids: set[str] = set()
        self._foreign_flush: asyncio.Task[None] | None = None
        self._heard_at = time.time()  # the last notice from another relay (or catch-up)
        self._catch_up: asyncio.Task[None] | None = None
        self._catch_up_again = False
        self._pruning = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and start the background loops."""
        settings = self.settings
        await self.store.open()
        await self.store.subscribe(self._foreign)
        for name in self._handled_signals():
            signals.signal_for(name).connect(self.dispatcher.wake, weak=False)
        loops = {"dispatcher": self.dispatcher.run, "leadership": self.leadership.run}
        for name, run in loops.items():
            self._tasks.append(asyncio.create_task(guard(name, run), name=f"relay-{name}"))
        if settings.simulated and self.store.shared:
            log.warning(
                "the built-in simulator lives in this process only: with several relays on one "
                "database, run `runway-relay simulate --token T` once and set USEAPI_TOKEN=T and "
                "USEAPI_BASE_URL on every relay"
            )
        log.info(
            "relay started id=%s upstream=%s handlers=%s db=%s",
            self.id,
            "simulator" if settings.simulated else settings.useapi_base_url,
            ",".join(self.handlers) or "none",
            "PostgreSQL (shared)" if self.store.shared else settings.db_path,
        )

    def _handled_signals(self) -> set[AnySignal]:
        """Signals some enabled handler wants: only those can have written outbox rows to run."""
        return {signal for handler in self.handlers.values() for signal in handler.events}

    def loops(self) -> list[tuple[str, asyncio.Task[None]]]:
        """The background loops every relay runs (the dispatcher, the leadership), by name."""
        return [(task.get_name().removeprefix("relay-"), task) for task in self._tasks]

    async def stop(self) -> None:
        """Stop the loops, give handler runs in flight ``RELAY_SHUTDOWN_GRACE`` seconds and hand the
        rest back to the outbox, give up the scheduler lease, close everything."""
        for name in self._handled_signals():
            signals.signal_for(name).disconnect(self.dispatcher.wake)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        grace = self.settings.shutdown_grace
        await asyncio.gather(self.scheduler.drain(min(grace, 5.0)), self.dispatcher.shutdown(grace))
        await self.leadership.resign()
        with contextlib.suppress(Exception):
            await self.store.resign(f"ready:{self.id}", f"ready:{self.id}")
        for task in (self._foreign_flush, self._catch_up):
            if task is not None:
                task.cancel()
        if self.simulator is not None:
            await self.simulator.aclose()
        await self.http.aclose()
        await self.store.close()

    def simulator_app(self) -> Any:
        """The built-in simulator's ASGI app (only when no ``USEAPI_TOKEN`` is set)."""
        if self.simulator is None:
            raise RuntimeError("the simulator runs only when USEAPI_TOKEN is unset")
        return self.simulator.app

    # -- after a commit -----------------------------------------------------------------------

    async def announce(self, moved: Moved) -> None:
        """Tell the scheduler, the live views and the signal's receivers what a committed write moved."""
        self.scheduler.job_changed(moved.row)
        self.metrics.job_moved(moved.row, moved.previous)
        signal = moved.signal
        if not (self.live.listening or (signal is not None and signals.signal_for(signal).receivers)):
            return  # nobody reads the job JSON (most progress ticks): don't build it
        job = await self.store.job_json(moved.row)
        self.live.publish(job)
        if signal is not None:
            signals.send(self, signal, job, moved.transition_id)

    async def publish(self, result: IngestResult) -> None:
        """After a callback or poll: announce what moved, if anything did.

        An account it paused is marked first, so the slot the job freed is never refilled there.
        """
        if result.notices:
            self.accounts.changed()
        if result.moved is not None:
            await self.announce(result.moved)
        if result.notices:
            await self.announce_notices(result.notices)

    async def announce_notices(self, notices: Sequence[Notice]) -> None:
        """Tell the scheduler and the signal's receivers what a committed account notice says."""
        self.accounts.changed()
        for notice in notices:
            log.warning("account=%s %s: %s", notice.email, notice.signal.value, notice.detail.get("reason"))
            if notice.signal is AccountSignal.RESUMED:
                self.scheduler.account_resumed(notice.email)
            signals.send_account(self, notice.signal, notice.json())

    def _foreign(self, brief: dict[str, Any] | None) -> None:
        """Another relay moved a job (``None``: its notices may have been lost; look around)."""
        if brief is None:
            self.accounts.changed()
            self.scheduler.wake()
            self.dispatcher.wake(notice=None)
            if self.live.listening:
                self._catch_up_again = True
                if self._catch_up is None or self._catch_up.done():
                    self._catch_up = asyncio.create_task(self._show_missed_moves())
            return
        self._heard_at = time.time()
        if brief.get("kind") == "account":  # an account's guard state moved (a pause, a resume, credits)
            self.accounts.changed()
            if brief.get("signal") == AccountSignal.RESUMED.value:
                self.scheduler.account_resumed(str(brief["email"]))
            if brief.get("signal") in self._handled_signals():
                self.dispatcher.wake(notice=brief)  # its notice runs may be run here as well
            return
        self.scheduler.job_changed(brief)
        if brief.get("signal") in self._handled_signals():
            self.dispatcher.wake()  # its outbox rows may be run here as well
        if self.live.listening:
            self._foreign_ids.add(str(brief["id"]))
            if self._foreign_flush is None or self._foreign_flush.done():
                self._foreign_flush = asyncio.create_task(self._publish_foreign())

    async def _publish_foreign(self) -> None:
        """Read each job another relay moved and show it to this relay's live views (coalesced)."""
        while self._foreign_ids:
            job_id = self._foreign_ids.pop()
            try:
                self.live.publish(await self.store.get_job(job_id))
            except Exception as exc:  # a deleted job, or the database away: the next notice will do
                log.debug("could not show job=%s moved elsewhere: %s", job_id, exc)

    async def _show_missed_moves(self) -> None:
        """Notices from the other relays may have been lost: show the live views every job moved since
        the last one heard (a few seconds more, as relays' clocks differ)."""
        while self._catch_up_again:
            self._catch_up_again = False
            since, self._heard_at = self._heard_at - CATCH_UP_MARGIN, time.time()
            try:
                jobs = await self.store.jobs_moved_since(str(iso_at(since)))
            except Exception as exc:  # the database is away too: the next notice (or loss) will do
                log.debug("could not catch up on moves made elsewhere: %s", exc)
                continue
            log.debug("caught up on %d job(s) moved elsewhere since %s", len(jobs), iso_at(since))
            for job in reversed(jobs):  # oldest first, as they happened
                self.live.publish(job)

    # -- the API's verbs ----------------------------------------------------------------------

    async def submit(
        self, body: Any, *, group_id: str | None = None, client_ref: str | None = None
    ) -> dict[str, Any]:
        """Validate against the model rules, store the job ``queued`` and wake the scheduler.

        ``group_id`` ties the job to a compare group; a ``client_ref`` already stored answers that job.
        """
        normalized, handlers = self.check(body)
        account = normalized.get("email")
        moved = await self.store.create_job(
            normalized["model"], normalized, handlers, account, group_id=group_id, client_ref=client_ref
        )
        if moved.previous is None:  # new (not a client_ref seen before)
            log.info("queued job=%s model=%s", moved.job_id, normalized["model"])
            await self.announce(moved)
        return await self.store.job_json(moved.row)

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
        normalized = rules.validate(params)
        blocklist.check(normalized, self.settings.blocklist)
        return normalized, handlers

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
        if update.moderated:  # it may pause the account: no scheduling decision from the old state meanwhile
            self.accounts.changed()
        result = await self.store.ingest_callback(token, update, body)
        # Every callback is in the events table; the log tells of status changes and oddities, and
        # keeps progress ticks, repeats and late arrivals for DEBUG (at INFO they cost ~15 % of ingest).
        quiet = result.outcome in ("duplicate", "stale") or (
            result.moved is not None and not result.moved.status_changed
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
        moved = await self.store.cancel(job_id)
        task_id = moved.row["task_id"]
        if task_id:
            try:
                await self.upstream.cancel(task_id)
                await self.store.record_upstream_note(job_id, "cancel", "applied", "DELETE scheduler ok")
            except UpstreamError as exc:
                await self.store.record_upstream_note(job_id, "cancel", "error", exc.message)
        await self.announce(moved)
        return await self.store.get_job(job_id)

    async def resubmit(self, job_id: str, max_attempts: int) -> int | None:
        """Open a failed job's next attempt (the ``resubmit`` handler); its number, or ``None``."""
        moved = await self.store.resubmit(job_id, max_attempts)
        if moved is None:
            return None
        await self.announce(moved)
        return int(moved.row["attempt"])

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
        self, name: str, content: bytes | Upload, content_type: str, email: str | None
    ) -> dict[str, Any]:
        """Upload an image or video upstream and remember which account holds it."""
        answer = await self.upstream.upload_asset(name, content, content_type, email)
        asset_id = answer.get("assetId") if isinstance(answer, dict) else None
        if not isinstance(asset_id, str):
            raise UpstreamError("the upload answer carried no assetId", None, answer)
        account = account_of(asset_id) or email
        await self.store.save_asset(asset_id, account, name, content_type.split("/")[0])
        return {"assetId": asset_id, "account": account}

    async def account_list(self) -> list[dict[str, Any]]:
        """Every known Runway account with its slots, guards, credits and jobs today (any relay)."""
        now = time.time()
        rows = await self.store.account_overview(now, now - now % 86400)
        return [account_json(row, self.store.policy, now) for row in rows]

    async def resume_account(self, email: str) -> dict[str, Any]:
        """Lift an account's pause and bring it back into rotation (any relay; the scheduling one
        hears of it through the database)."""
        lifted, notices = await self.store.resume_account(email, time.time())
        await self.announce_notices(notices)
        self.accounts.changed()
        log.info("account=%s resumed by hand: %s", email, "; ".join(lifted) or "nothing to lift")
        account = next(a for a in await self.account_list() if a["email"] == email)
        return {"email": email, "lifted": lifted, "account": account}

    async def prune(self, body: Any) -> dict[str, Any]:
        """``POST /api/prune``: what ``runway-relay prune`` asks of a serving relay.

        Run here, the batches take turns with the callbacks in this relay's own transactions; on
        SQLite a second process pruning would make them wait in the file's lock (seconds at p99).
        """
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object such as {"older_than": "30d"}')
        unknown = sorted(set(body) - {"older_than", "files", "jobs", "vacuum"})
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}", unknown[0])
        raw = body.get("older_than")
        if not isinstance(raw, str):
            raise ValidationError("older_than is required: a duration such as 30d, 12h or 0d", "older_than")
        try:
            older_than = parse_duration(raw, zero=True)
        except RuleError as exc:
            raise ValidationError(str(exc), "older_than") from None
        flags = {name: body.get(name, False) for name in ("files", "jobs", "vacuum")}
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise ValidationError(f"{name} must be true or false", name)
        if self._pruning.locked():
            raise Conflict("a prune is running on this relay already; wait for it to finish")
        async with self._pruning:
            report = await prune(
                self.store,
                older_than,
                self.settings.download_dir,
                batch=SERVED_BATCH,
                pause=SERVED_PAUSE,
                **flags,
            )
        log.info("prune (older than %s): %s", raw, "; ".join(report.lines()))
        return report.as_json()

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
            "relay": self.id,
            "scheduling": self.leadership.leading,
        }


def routing_for(handlers: dict[str, Handler]) -> Routing:
    """Which enabled handler runs on which signal (in the order they are enabled), and what each waits for."""
    every: list[AnySignal] = [*Signal, *AccountSignal]
    wanted = {signal: tuple(n for n, h in handlers.items() if signal in h.events) for signal in every}
    after = {n: tuple(a for a in getattr(h, "after", ()) if a in handlers) for n, h in handlers.items()}
    return Routing({s: names for s, names in wanted.items() if names}, {n: a for n, a in after.items() if a})
