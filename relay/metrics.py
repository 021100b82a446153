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

With several relays on one database each relay exports what it did itself (the callbacks it took,
the moves it committed); Prometheus sums them. Queue wait and generation time are taken from the job
row's clock columns by the relay that commits the move, so each attempt is observed exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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
    "tasks/",
    "tasks/{taskId}",
    "scheduler/",
    "scheduler/{taskId}",
    "accounts/",
    "features/",
    "assets/",
)

_CALLBACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_HANDLER_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_QUEUE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
_GENERATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


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

    def job_moved(self, row: Mapping[str, Any], previous: str | None, now: float | None = None) -> None:
        """A committed move of a job (its stored row as written, and the status it left).

        ``queued`` → ``submitted`` observes the attempt's queue wait; the move to a terminal status
        its generation time. Both come from the row's own clock columns (``queued_at``,
        ``submitted_at``), so they are exact whichever relay records the move.
        """
        status = row.get("status")
        if status == previous:
            return
        if status == Status.SUBMITTED and row.get("queued_at") and row.get("submitted_at"):
            self.queue_wait.observe(max(0.0, float(row["submitted_at"]) - float(row["queued_at"])))
        elif status in TERMINAL and previous not in TERMINAL and row.get("submitted_at"):
            now = time.time() if now is None else now
            seconds = max(0.0, now - float(row["submitted_at"]))
            self.generation.labels(str(row.get("model")), str(status)).observe(seconds)

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
