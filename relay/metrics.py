"""The relay's Prometheus series (``GET /metrics``), one :class:`Metrics` per app.

Counters and histograms are incremented in-process where things happen (a callback answered, an
upstream call made, a handler run ended, a job moved); the database is read once per scrape, for the
per-status job counts only. Each app has its own :class:`~prometheus_client.CollectorRegistry`, so
several relays in one process (tests) never share or clash.

Series (all ``relay_*``):

- ``relay_jobs{status}`` (gauge) and ``relay_queue_depth`` (gauge): from ``store.job_counts()`` at scrape.
- ``relay_callbacks_total{outcome}`` and ``relay_callback_duration_seconds``: every ``POST /callbacks``.
- ``relay_upstream_calls_total{endpoint,answer}`` and ``relay_upstream_duration_seconds{endpoint}``:
  every call to useapi.net; ``answer`` is the HTTP status, ``timeout`` or ``error``.
- ``relay_handler_runs_total{handler,outcome}`` and ``relay_handler_duration_seconds{handler}``:
  every handler try; ``outcome`` is ``done``, ``retry`` or ``dead``.
- ``relay_queue_wait_seconds``: ``queued`` → create accepted (``submitted``), per attempt.
- ``relay_generation_duration_seconds{model,status}``: create accepted → terminal, per attempt.

The relay that sends a create observes its queue wait; with several relays on one database, the
generation time is observed when that relay also learns the attempt's end (a callback may land on
another relay, which then observes nothing for it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from .states import TERMINAL, Status

# No ``*_created`` gauge beside every counter and histogram: in the text format they double the series
# a scrape stores and say only when the process started (process-wide in prometheus_client).
disable_created_metrics()

# Stored outcomes (the state machine's), then refusals (404, 400, 413, 503), a sender that hung up
# mid-body, and anything unexpected.
CALLBACK_OUTCOMES = (
    "applied",
    "duplicate",
    "stale",
    "ignored",
    "not_found",
    "bad_request",
    "too_large",
    "unavailable",
    "disconnected",
    "error",
)
HANDLER_OUTCOMES = ("done", "retry", "dead")
UPSTREAM_ENDPOINTS = (
    "videos/create",
    "tasks/{taskId}",
    "scheduler/",
    "scheduler/{taskId}",
    "accounts/",
    "assets/",
)
# How many jobs' start times are remembered; an attempt whose end this process never learns (another
# relay got the callback) is forgotten, oldest first, once this many are waiting.
CLOCK_SIZE = 20_000

_CALLBACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_HANDLER_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_QUEUE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
_GENERATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


def _epoch(iso: Any) -> float | None:
    """An ISO 8601 timestamp of the job JSON (``created_at``) as seconds since the epoch."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _remember(table: dict[str, Any], key: str, value: Any) -> None:
    table.pop(key, None)
    table[key] = value
    while len(table) > CLOCK_SIZE:
        table.pop(next(iter(table)))


class Metrics:
    """The series of one relay and the calls that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.jobs = Gauge("relay_jobs", "Jobs by status.", ["status"], registry=registry)
        self.queue_depth = Gauge("relay_queue_depth", "Jobs waiting for a slot (queued).", registry=registry)
        self.callbacks = Counter(
            "relay_callbacks", "Callbacks received, by outcome.", ["outcome"], registry=registry
        )
        self.callback_seconds = Histogram(
            "relay_callback_duration_seconds",
            "Time to handle one callback, body read to answer (durably committed).",
            buckets=_CALLBACK_BUCKETS,
            registry=registry,
        )
        self.upstream_calls = Counter(
            "relay_upstream_calls",
            "Calls to useapi.net by endpoint and answer (HTTP status, timeout or error).",
            ["endpoint", "answer"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "relay_upstream_duration_seconds",
            "Time of one call to useapi.net, by endpoint.",
            ["endpoint"],
            buckets=_UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.handler_runs = Counter(
            "relay_handler_runs",
            "Handler tries by handler and outcome (done, retry, dead).",
            ["handler", "outcome"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "relay_handler_duration_seconds",
            "Time of one handler try, by handler.",
            ["handler"],
            buckets=_HANDLER_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "relay_queue_wait_seconds",
            "Time a job attempt waited queued until useapi.net accepted its create.",
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.generation = Histogram(
            "relay_generation_duration_seconds",
            "Time from an accepted create to the attempt's end, by model and final status.",
            ["model", "status"],
            buckets=_GENERATION_BUCKETS,
            registry=registry,
        )
        self._callback = {outcome: self.callbacks.labels(outcome) for outcome in CALLBACK_OUTCOMES}
        for endpoint in UPSTREAM_ENDPOINTS:
            self.upstream_seconds.labels(endpoint)
        self._handlers: set[str] = set()
        self._queued_at: dict[str, float] = {}  # job id → when it went back to the queue (resubmit)
        self._started: dict[str, tuple[float, int, str]] = {}  # job id → (accepted at, attempt, model)

    # -- fed where things happen ----------------------------------------------------------------

    def callback(self, outcome: str, seconds: float) -> None:
        """One ``POST /callbacks/{token}`` answered (or refused) after ``seconds``."""
        child = self._callback.get(outcome)
        if child is None:
            child = self._callback[outcome] = self.callbacks.labels(outcome)
        child.inc()
        self.callback_seconds.observe(seconds)

    def upstream_call(self, endpoint: str, answer: str, seconds: float) -> None:
        """One call to useapi.net: ``endpoint`` a path template, ``answer`` the status or failure."""
        self.upstream_calls.labels(endpoint, answer).inc()
        self.upstream_seconds.labels(endpoint).observe(seconds)

    def handler_run(self, handler: str, outcome: str, seconds: float) -> None:
        """One handler try ended ``done``, ``retry`` or ``dead`` after ``seconds``."""
        self.handler_runs.labels(handler, outcome).inc()
        self.handler_seconds.labels(handler).observe(seconds)

    def job_accepted(self, job: Mapping[str, Any], attempt: int, now: float | None = None) -> None:
        """useapi.net accepted the create of ``attempt`` (the scheduler, once per attempt).

        Ends the attempt's queue wait, which began when the job was created (``created_at``) or put
        back in the queue (:meth:`job_moved`), and starts its generation time.
        """
        now = time.time() if now is None else now
        job_id = str(job["id"])
        seen = self._started.get(job_id)
        if seen is not None and seen[1] == attempt:
            return  # the same acceptance reported twice (a reconcile after a lookup)
        queued_at = self._queued_at.pop(job_id, None)
        if queued_at is None and attempt == 1:
            queued_at = _epoch(job.get("created_at"))
        if queued_at is not None:
            self.queue_wait.observe(max(0.0, now - queued_at))
        if job.get("status") not in TERMINAL and job.get("model"):
            _remember(self._started, job_id, (now, attempt, str(job["model"])))

    def job_moved(self, job: Mapping[str, Any] | None, now: float | None = None) -> None:
        """A job's new state was committed (the job JSON, or the brief ``id``/``status`` form).

        ``queued`` starts a queue wait (a re-submitted attempt); a terminal status ends the generation
        time :meth:`job_accepted` started, observed once per attempt.
        """
        if not job or not job.get("id"):
            return
        now = time.time() if now is None else now
        job_id, status = str(job["id"]), job.get("status")
        if status == Status.QUEUED:
            _remember(self._queued_at, job_id, now)
        elif status in TERMINAL:
            self._queued_at.pop(job_id, None)
            started = self._started.pop(job_id, None)
            if started is not None:
                self.generation.labels(started[2], str(status)).observe(max(0.0, now - started[0]))

    # -- read at scrape time --------------------------------------------------------------------

    def know_handlers(self, names: Iterable[str]) -> None:
        """Show every enabled handler's series from the first scrape, at zero."""
        for name in names:
            if name not in self._handlers:
                self._handlers.add(name)
                for outcome in HANDLER_OUTCOMES:
                    self.handler_runs.labels(name, outcome)
                self.handler_seconds.labels(name)

    def set_job_counts(self, counts: Mapping[str, int]) -> None:
        """The per-status job counts (``store.job_counts()``), every status shown, 0 when absent."""
        for status in Status:
            self.jobs.labels(status.value).set(counts.get(status.value, 0))
        self.queue_depth.set(counts.get(Status.QUEUED.value, 0))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (text 0.0.4 unless it wants more)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
