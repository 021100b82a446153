"""``GET /healthz``: liveness for anyone, the details (jobs, handlers) only with the key."""

from __future__ import annotations

from typing import Any

from runway_relay.receiver.auth import SESSION_COOKIE, session_value


def test_anonymous_callers_see_only_the_status(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY="health-key")
    assert relay.api("GET", "/healthz").json() == {"status": "ok"}
    wrong = relay.api("GET", "/healthz", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    for credentials in (
        {"headers": {"Authorization": "Bearer health-key"}},
        {"cookies": {SESSION_COOKIE: session_value("health-key")}},
    ):
        details = relay.api("GET", "/healthz", **credentials).json()
        assert details["status"] == "ok" and details["upstream"] == "simulator"
        assert "download" in details["handlers"] and isinstance(details["jobs"], dict)


def test_without_a_key_configured_everyone_sees_the_details(relay: Any) -> None:
    details = relay.api("GET", "/healthz").json()
    assert details["status"] == "ok" and "handlers" in details and "jobs" in details
