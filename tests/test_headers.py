"""Every answer carries nosniff, no framing, a referrer policy and a CSP; only the relay's own names
are served (DNS rebinding)."""

from __future__ import annotations

from typing import Any

from runway_relay.receiver.headers import PAGE_CSP

from conftest import RelayProcess

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "media-src 'self' https: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def test_pages_and_api_answers_carry_the_headers(relay: RelayProcess) -> None:
    assert PAGE_CSP == CSP
    page = relay.api("GET", "/")
    assert page.headers["content-security-policy"] == CSP
    for answer in (page, relay.api("GET", "/api/jobs"), relay.api("GET", "/api/jobs/nope")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert relay.api("GET", "/api/jobs").headers["content-security-policy"].startswith("default-src 'none'")
    script = relay.api("GET", "/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_a_rebinding_host_is_refused(relay: RelayProcess) -> None:
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example"):
        answer = relay.api("GET", "/api/jobs", headers={"Host": host})
        assert answer.status_code == 400, host
        assert "Host" in answer.json()["error"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    for host in (f"127.0.0.1:{relay.port}", f"localhost:{relay.port}", "[::1]"):
        assert relay.api("GET", "/api/jobs", headers={"Host": host}).status_code == 200, host


def test_callbacks_keep_working_through_the_public_name(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_PUBLIC_URL="https://relay.example.test")
    public = {"Host": "relay.example.test"}
    assert relay.api("POST", "/callbacks/unknown", json={}, headers=public).status_code == 404  # not 400
    assert relay.api("GET", "/healthz", headers=public).status_code == 200
    assert relay.api("GET", "/api/jobs", headers={"Host": "other.example.test"}).status_code == 400
    # a balancer's health check names the relay by its own address, and is answered
    assert relay.api("GET", "/healthz", headers={"Host": "relay1:8000"}).status_code == 200
