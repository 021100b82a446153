"""Cross-site writes: a browser form cannot create jobs, and a sibling origin cannot ride the cookie."""

from __future__ import annotations

import sqlite3
from typing import Any

from runway_relay.receiver import sessions

from conftest import RelayProcess

JOB = b'{"model": "gen4.5", "text_prompt": "from a form"}'
KEY = "csrf-key-0123456789"


def jobs(relay: RelayProcess) -> int:
    with sqlite3.connect(relay.db) as db:
        return db.execute("select count(*) from jobs").fetchone()[0]


def test_a_form_post_creates_nothing(relay: RelayProcess) -> None:
    # What <form enctype=text/plain> (and the other form encodings) can send without a preflight.
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        answer = relay.api("POST", "/api/jobs", content=JOB, headers={"Content-Type": content_type})
        assert answer.status_code == 415, (content_type, answer.text)
        assert "application/json" in answer.json()["error"]
    assert relay.api("POST", "/api/jobs", content=JOB).status_code == 415  # a body must say it is JSON
    assert relay.api("POST", "/api/assets", json={"file": "x"}).status_code == 415
    assert jobs(relay) == 0
    created = relay.api("POST", "/api/jobs", content=JOB, headers={"Content-Type": "application/json"})
    assert created.status_code == 201
    bodyless = relay.api("POST", f"/api/jobs/{created.json()['id']}/cancel")  # like the CLI: no body
    assert bodyless.status_code in (200, 409), bodyless.text


def test_a_sibling_origin_cannot_ride_on_the_session_cookie(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    cookie = {"Cookie": f"{sessions.COOKIE}={sessions.issue(KEY, 1)}", "Content-Type": "application/json"}
    here = f"http://127.0.0.1:{relay.port}"
    for foreign in ({"Origin": "http://127.0.0.1:9999"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        answer = relay.api("POST", "/api/jobs", content=JOB, headers={**cookie, **foreign})
        assert answer.status_code == 403, (foreign, answer.text)
    assert jobs(relay) == 0
    same = {"Origin": here, "Sec-Fetch-Site": "same-origin"}
    assert relay.api("POST", "/api/jobs", content=JOB, headers={**cookie, **same}).status_code == 201
    login = relay.api("POST", "/login", data={"key": KEY}, headers={"Origin": "http://evil.example"})
    assert login.status_code == 403  # no signing in a victim's browser from elsewhere either
