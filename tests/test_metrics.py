"""``GET /metrics``: prometheus_client series with honest types, checked by its parser and by promtool."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runway_relay.metrics import Metrics
from runway_relay.receiver.app import create_app
from runway_relay.settings import Settings

from conftest import RelayProcess

TYPES = {
    "relay_jobs": "gauge",
    "relay_queue_depth": "gauge",
    "relay_callbacks": "counter",
    "relay_callback_duration_seconds": "histogram",
    "relay_upstream_calls": "counter",
    "relay_upstream_duration_seconds": "histogram",
    "relay_handler_runs": "counter",
    "relay_handler_duration_seconds": "histogram",
    "relay_queue_wait_seconds": "histogram",
    "relay_generation_duration_seconds": "histogram",
}


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    family = next(f for f in families.values() if any(s.name == sample_name for s in f.samples))
    found = [s.value for s in family.samples if s.name == sample_name and s.labels == labels]
    assert found, f"no {sample_name}{labels} in {[(s.name, s.labels) for s in family.samples]}"
    return found[0]


def _scrape(relay: RelayProcess, **headers: str) -> str:
    answer = relay.api("GET", "/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def test_a_job_shows_in_every_series_with_the_right_type(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_EXEC="false", RELAY_HANDLER_MAX_ATTEMPTS="2")
    assert relay.api("POST", "/callbacks/no-such-token", json={}).status_code == 404
    job_id = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a fox"}).json()["id"]
    relay.wait_for(
        job_id,
        lambda j: (
            j["status"] == "succeeded"
            and {r["name"]: r["status"] for r in j["handlers"]} == {"download": "done", "exec": "dead"}
        ),
    )
    families = _families(_scrape(relay))
    assert {name: families[name].type for name in TYPES} == TYPES

    assert _value(families, "relay_jobs", status="succeeded") == 1
    assert _value(families, "relay_jobs", status="queued") == 0
    assert _value(families, "relay_queue_depth") == 0
    assert _value(families, "relay_callbacks_total", outcome="applied") >= 3  # pending, running, succeeded
    assert _value(families, "relay_callbacks_total", outcome="not_found") == 1
    assert _value(families, "relay_callback_duration_seconds_count") >= 4
    assert _value(families, "relay_upstream_calls_total", endpoint="videos/create", answer="200") == 1
    assert _value(families, "relay_upstream_duration_seconds_count", endpoint="videos/create") == 1
    assert _value(families, "relay_handler_runs_total", handler="download", outcome="done") == 1
    assert _value(families, "relay_handler_runs_total", handler="exec", outcome="retry") == 1
    assert _value(families, "relay_handler_runs_total", handler="exec", outcome="dead") == 1
    assert _value(families, "relay_handler_runs_total", handler="resubmit", outcome="done") == 0
    assert _value(families, "relay_handler_duration_seconds_count", handler="exec") == 2
    assert _value(families, "relay_queue_wait_seconds_count") == 1
    generation = {"model": "gen4.5", "status": "succeeded"}
    assert _value(families, "relay_generation_duration_seconds_count", **generation) == 1
    assert _value(families, "relay_generation_duration_seconds_bucket", le="+Inf", **generation) == 1


def test_promtool_accepts_the_exposition(relay: RelayProcess) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run extracts it)")
    job_id = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a fox"}).json()["id"]
    relay.wait_for(job_id, lambda j: j["status"] == "succeeded")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(relay), capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_need_the_key_when_one_is_set(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY="metrics-key")
    assert relay.api("GET", "/metrics").status_code == 401
    assert "relay_jobs" in _scrape(relay, Authorization="Bearer metrics-key")


def test_each_app_has_its_own_registry(tmp_path: Any) -> None:
    settings = [Settings(db_path=str(tmp_path / f"{n}.db"), download_dir=tmp_path / str(n)) for n in (1, 2)]
    apps = [create_app(s) for s in settings]
    first, second = (app.state.relay.metrics for app in apps)
    first.callback("applied", 0.01)
    assert first.registry is not second.registry
    assert first.registry.get_sample_value("relay_callbacks_total", {"outcome": "applied"}) == 1
    assert second.registry.get_sample_value("relay_callbacks_total", {"outcome": "applied"}) == 0


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_queue_wait_and_generation_time_come_from_the_rows_clock_once_per_attempt() -> None:
    metrics = Metrics()
    row = {"id": "j1", "model": "gen4", "attempt": 1, "queued_at": 1000.0, "submitted_at": 1012.0}
    metrics.job_moved({**row, "status": "submitted"}, "queued")
    metrics.job_moved({**row, "status": "running"}, "submitted")  # not a queue wait, not an end
    assert _sample(metrics, "relay_queue_wait_seconds_count") == 1
    assert _sample(metrics, "relay_queue_wait_seconds_sum") == 12
    metrics.job_moved({**row, "status": "failed"}, "running", now=1072.0)
    assert _sample(metrics, "relay_generation_duration_seconds_sum", model="gen4", status="failed") == 60
    second = {**row, "attempt": 2, "queued_at": 1100.0, "submitted_at": 1103.0}
    metrics.job_moved({**second, "status": "queued"}, "failed")
    metrics.job_moved({**second, "status": "submitted"}, "queued")
    metrics.job_moved({**second, "status": "succeeded"}, "running", now=1203.0)
    metrics.job_moved({**second, "status": "succeeded"}, "succeeded", now=1204.0)  # progress only: no move
    assert _sample(metrics, "relay_queue_wait_seconds_count") == 2
    assert _sample(metrics, "relay_queue_wait_seconds_sum") == 15
    assert _sample(metrics, "relay_generation_duration_seconds_sum", model="gen4", status="succeeded") == 100
    assert _sample(metrics, "relay_generation_duration_seconds_count", model="gen4", status="succeeded") == 1


def test_a_job_that_never_reached_upstream_has_no_generation_time() -> None:
    metrics = Metrics()
    metrics.job_moved({"id": "gone", "status": "cancelled", "model": "gen4", "queued_at": 1.0}, "queued")
    metrics.job_moved({"id": "no", "status": "rejected", "model": "gen4", "submitted_at": None}, "queued")
    assert (
        _sample(metrics, "relay_generation_duration_seconds_count", model="gen4", status="cancelled") is None
    )
    assert _sample(metrics, "relay_queue_wait_seconds_count") == 0


def test_job_counts_fill_every_status() -> None:
    metrics = Metrics()
    metrics.set_job_counts({"queued": 3, "running": 1})
    assert _sample(metrics, "relay_queue_depth") == 3
    assert _sample(metrics, "relay_jobs", status="rejected") == 0
    metrics.set_job_counts({})
    assert _sample(metrics, "relay_jobs", status="queued") == 0
