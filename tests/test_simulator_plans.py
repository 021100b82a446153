"""The simulator's plans and sessions, over HTTP on loopback: creates spend credits, ``GET features/``
reports them, a create that costs more than is left gets the seed page's 402, a broken session answers
401, and ``POST /sim/accounts/{email}`` changes either."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from runway_relay.simulator import Simulator, create_app
from runway_relay.simulator.plans import CREDITS_PER_SECOND, NO_CREDITS

from servers import serve_in_thread

API = "/v1/runwayml"
A, B = "a@sim.test", "b@sim.test"


@contextlib.contextmanager
def simulator(**kwargs: Any) -> Iterator[tuple[Simulator, httpx.Client]]:
    app = create_app(step_seconds=3600, **kwargs)  # tasks stay put: nothing here races the clock
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield app.state.simulator, client


def create(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(
        f"{API}/videos/create", json={"model": "gen4.5", "text_prompt": "x", "duration": 5, **body}
    )


def features(client: httpx.Client, email: str | None = None) -> httpx.Response:
    return client.get(f"{API}/features/", params={"email": email} if email else None)


def test_creates_spend_credits_and_features_reports_them() -> None:
    with simulator(accounts={A: 9, B: 3}, credits={A: 120}) as (_sim, client):
        assert features(client, A).json()["permitted"]["numPlanCredits"] == 120
        assert features(client, A).json()["used"]["numPlanCredits"] == 0
        assert create(client, email=A).status_code == 200  # 5 s: 50 credits
        assert create(client, email=A, duration=2).status_code == 200  # 20 more
        assert features(client, A).json()["used"]["numPlanCredits"] == 7 * CREDITS_PER_SECOND
        assert create(client, email=A).status_code == 200  # 50 more: exactly what was left
        broke = create(client, email=A, duration=2)
        assert broke.status_code == 402 and broke.json() == {"error": NO_CREDITS}
        explore = create(client, email=A, exploreMode=True)  # explore mode costs nothing
        assert explore.status_code == 200
        assert features(client, A).json()["used"]["numPlanCredits"] == 120
        assert features(client, B).json()["permitted"]["numPlanCredits"] == 1_000_000


def test_features_needs_the_email_with_several_accounts_and_knows_them() -> None:
    with simulator(accounts={A: 2, B: 2}) as (_sim, client):
        assert features(client).status_code == 400 and "email is required" in features(client).json()["error"]
        assert features(client, "nobody@sim.test").status_code == 400
    with simulator(accounts={A: 2}) as (_sim, client):
        assert features(client).status_code == 200  # one account: no email needed


def test_a_broken_session_answers_401_until_mended() -> None:
    with simulator(accounts={A: 2, B: 2}, broken={A}) as (_sim, client):
        refused = create(client, email=A)
        assert refused.status_code == 401 and "Runway session of a@sim.test" in refused.json()["error"]
        assert features(client, A).status_code == 401
        assert create(client, email=B).status_code == 200
        mended = client.post(f"/sim/accounts/{A}", json={"broken": False})
        assert mended.json() == {"email": A, "permitted": 1_000_000, "used": 0, "broken": False}
        assert create(client, email=A).status_code == 200 and features(client, A).status_code == 200


def test_plans_change_while_it_runs_and_bad_changes_are_refused() -> None:
    with simulator(accounts={A: 2}) as (_sim, client):
        assert client.post(f"/sim/accounts/{A}", json={"permitted": 40, "used": 0}).status_code == 200
        assert create(client).status_code == 402
        assert client.post(f"/sim/accounts/{A}", json={"used": 0, "permitted": 60}).status_code == 200
        assert create(client).status_code == 200
        for bad in ({"permitted": -1}, {"used": "lots"}, {"broken": "yes"}, {"permitted": True}):
            assert client.post(f"/sim/accounts/{A}", json=bad).status_code == 400
        assert client.post(f"/sim/accounts/{A}", content=b"not json").status_code == 400
        assert client.post("/sim/accounts/nobody@sim.test", json={}).status_code == 404
