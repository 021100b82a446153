"""Signing in to the dashboard: a session that expires, a way out, and a slowdown for key guessing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from runway_relay.receiver import sessions
from runway_relay.receiver.auth import ApiKeyMiddleware, authenticated
from runway_relay.receiver.throttle import FailureThrottle

from conftest import RelayProcess

KEY = "session-key-0123456789"


def sign_in(relay: RelayProcess, key: str = KEY, **headers: str) -> httpx.Response:
    return relay.api("POST", "/login", data={"key": key}, headers=headers, follow_redirects=False)


def with_cookie(relay: RelayProcess, value: str, path: str = "/api/jobs") -> httpx.Response:
    cookie = {"Cookie": f"{sessions.COOKIE}={value}"}
    return relay.api("GET", path, headers=cookie, follow_redirects=False)


def test_the_session_cookie_expires_and_cannot_be_forged(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY, RELAY_SESSION_HOURS="2")
    answer = sign_in(relay)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "Max-Age=7200" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    value = answer.cookies[sessions.COOKIE]
    assert KEY not in cookie
    assert with_cookie(relay, value).status_code == 200
    expires = int(value.split(".")[0])
    assert time.time() + 7100 < expires <= time.time() + 7200
    expired = sessions.issue(KEY, 1, now=time.time() - 7200)  # signed right, an hour past its end
    assert with_cookie(relay, expired).status_code == 401
    assert with_cookie(relay, expired, "/").headers["location"] == "/login"
    prolonged = f"{expires + 10**6}.{value.split('.')[1]}"  # a later expiry under the old signature
    assert with_cookie(relay, prolonged).status_code == 401
    assert with_cookie(relay, sessions.issue("another-key", 1)).status_code == 401


def test_logout_clears_the_cookie(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    answer = relay.api("POST", "/logout", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    cleared = answer.headers["set-cookie"]
    assert cleared.startswith(f"{sessions.COOKIE}=") and "Max-Age=0" in cleared


def test_wrong_keys_are_slowed_down_per_client(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    assert [sign_in(relay, f"guess-{n}").status_code for n in range(5)] == [401] * 5
    locked = sign_in(relay, "guess-5")
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    assert sign_in(relay).status_code == 429  # even the right key waits: no guess gets through
    bearer = relay.api("GET", "/api/jobs", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 429 and "try again" in bearer.json()["error"]
    assert relay.api("GET", "/healthz").status_code == 200


def test_the_lockout_grows_and_a_right_key_resets_it() -> None:
    now = [1000.0]
    throttle = FailureThrottle(free=2, base=1.0, cap=8.0, clock=lambda: now[0])
    throttle.failed("a")
    assert throttle.retry_after("a") is None  # a free try
    waits = []
    for _ in range(7):
        throttle.failed("a")
        waits.append(throttle.retry_after("a"))
    assert waits == [1, 2, 4, 8, 8, 8, 8]
    assert throttle.retry_after("b") is None  # per client
    now[0] += 8
    assert throttle.retry_after("a") is None
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") is None  # counting starts again
    throttle.failed("a")
    assert throttle.retry_after("a") == 1


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = FailureThrottle(free=0, max_clients=100, clock=lambda: 0.0)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._clients) == 100


def test_open_routes_learn_who_holds_the_key_from_the_middleware() -> None:
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(authenticated(scope))

    guard = ApiKeyMiddleware(app, api_key=KEY, throttle=FailureThrottle(free=1, clock=lambda: 0.0))

    def call(**headers: str) -> None:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/healthz",
            "headers": raw,
            "client": ("1.2.3.4", 1),
        }
        asyncio.run(guard(scope, None, None))

    call()
    call(Authorization=f"Bearer {KEY}")
    call(Cookie=f"{sessions.COOKIE}={sessions.issue(KEY, 1)}")
    call(Authorization="Bearer wrong")  # counted: the open route is no way around the slowdown
    call(Authorization=f"Bearer {KEY}")  # locked out now: answered, but not as the key holder
    assert seen == [False, True, True, False, False]
