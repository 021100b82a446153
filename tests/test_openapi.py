"""``GET /openapi.json``: every route described, and a schemathesis run against a live relay agrees."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from runway_relay.receiver.app import create_app
from runway_relay.receiver.openapi import document
from runway_relay.settings import Settings

from conftest import RelayProcess

# Endless event streams: schemathesis would wait on them until its timeout.
STREAMS = ("/api/events", "/api/jobs/{id}/events")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def _routed(settings: Settings) -> set[tuple[str, str]]:
    """(path template, method) of every route of the app; the simulator's mount is not the relay's API."""
    found = set()
    for route in create_app(settings).routes:
        if isinstance(route, Route) and not route.path.startswith("/samples/"):  # simulator mode only
            path = re.sub(r":\w+}", "}", route.path)
            found |= {(path, method.lower()) for method in route.methods or () if method != "HEAD"}
    return found


def test_every_route_is_described_and_every_description_is_routed(tmp_path: Path) -> None:
    described = {(path, method) for path, item in document()["paths"].items() for method in item}
    for token in (None, "a-token"):
        settings = Settings(db_path=str(tmp_path / "r.db"), download_dir=tmp_path, useapi_token=token)
        routed = _routed(settings)
        assert routed - described == set(), "routes missing from receiver/openapi.py"
        assert described - routed == set(), "described in receiver/openapi.py but not routed"


def test_every_operation_has_an_id_and_answers() -> None:
    operations = [op for item in document()["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids) == len(operations)
    assert all(op["responses"] and op["summary"] for op in operations)


def test_the_description_needs_the_key_when_one_is_set(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY="spec-key")
    assert relay.api("GET", "/openapi.json").status_code == 401
    answer = relay.api("GET", "/openapi.json", headers={"Authorization": "Bearer spec-key"})
    assert answer.status_code == 200 and answer.json()["openapi"] == "3.1.0"


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
        "schemathesis"
    )
    if found is None:
        pytest.fail("schemathesis is not installed: pip install '.[test]'")
    return found


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(relay_factory: Any, tmp_path: Path) -> None:
    relay: RelayProcess = relay_factory(RELAY_API_KEY="fuzz-key")
    command = [
        _schemathesis(),
        "run",
        f"{relay.url}/openapi.json",
        "--header",
        "Authorization: Bearer fuzz-key",
        "--checks",
        ",".join(CHECKS),
        *(arg for path in STREAMS for arg in ("--exclude-path", path)),
        "--max-examples",
        "40",
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "20",
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    run = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Traceback" not in relay.log(), relay.log()[-4000:]
