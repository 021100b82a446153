"""What the API and the CLI show of an account (``relay/accounts.py``): pure functions of a stored row."""

from __future__ import annotations

from runway_relay.accounts import account_json, account_table
from runway_relay.guard import AccountPolicy, CreditsRule, ModerationRule

POLICY = AccountPolicy(ModerationRule(3, 3600, 3600), CreditsRule(10, percent=True))
NOW = 1_767_607_200.0  # 2026-01-05T10:00:00Z


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "email": "a@x.com",
        "max_jobs": 3,
        "capacity": 2,
        "backoff_until": None,
        "paused_until": None,
        "paused_at": None,
        "paused_reason": None,
        "moderation_since": None,
        "out_of_rotation": None,
        "out_of_rotation_at": None,
        "session_strikes": 0,
        "credits_permitted": 2250.0,
        "credits_used": 1315.0,
        "credits_at": NOW - 60,
        "credits_low": 0,
        "last_error": None,
        "last_error_at": None,
        "slots_in_use": 1,
        "jobs_today": 12,
        "moderation_failures": [NOW - 7200, NOW - 600],
    }
    return {**base, **changes}


def test_a_healthy_account() -> None:
    view = account_json(row(), POLICY, NOW)
    assert view["state"] == "ok" and view["paused"] is False and view["in_rotation"] is True
    assert (view["slots_in_use"], view["capacity"], view["max_jobs"], view["jobs_today"]) == (1, 2, 3, 12)
    assert view["credits"] == {
        "permitted": 2250.0,
        "used": 1315.0,
        "left": 935.0,
        "low": False,
        "checked_at": "2026-01-05T09:59:00Z",
    }
    assert view["moderation"] == {"failures": 1, "limit": 3, "window": "1h"}  # one is out of the window


def test_each_state_and_what_it_shows() -> None:
    paused = account_json(
        row(paused_until=NOW + 1800, paused_at=NOW - 1800, paused_reason="3 moderation failures"), POLICY, NOW
    )
    assert paused["state"] == "paused" and paused["paused_until"] == "2026-01-05T10:30:00Z"
    assert (
        paused["paused_reason"] == "3 moderation failures" and paused["paused_at"] == "2026-01-05T09:30:00Z"
    )
    ended = account_json(row(paused_until=NOW - 1, paused_reason="old"), POLICY, NOW)
    assert ended["state"] == "ok" and ended["paused_reason"] is None and ended["paused_until"] is None
    out = account_json(row(out_of_rotation="3 failed sessions", paused_until=NOW + 60), POLICY, NOW)
    assert out["state"] == "out-of-rotation" and out["out_of_rotation_reason"] == "3 failed sessions"
    broke = account_json(row(credits_used=2250.0), POLICY, NOW)
    assert broke["state"] == "no-credits" and broke["credits"]["left"] == 0 and broke["credits"]["low"]
    resting = account_json(row(backoff_until=NOW + 20), POLICY, NOW)
    assert resting["state"] == "resting" and resting["resting_until"] == "2026-01-05T10:00:20Z"
    unread = account_json(row(credits_permitted=None, credits_used=None, credits_at=None), POLICY, NOW)
    assert unread["credits"]["left"] is None and unread["state"] == "ok"
    counted = account_json(row(moderation_since=NOW - 300), POLICY, NOW)
    assert counted["moderation"]["failures"] == 0  # the one before the resume is dealt with
    off = account_json(row(), AccountPolicy(None, None), NOW)
    assert off["moderation"] == {"failures": 2, "limit": None, "window": None}


def test_the_cli_table() -> None:
    views = [
        account_json(row(paused_until=NOW + 1800, paused_reason="3 moderation failures"), POLICY, NOW),
        account_json(row(email="b@x.com", max_jobs=2, last_error="HTTP 500", last_error_at=NOW), POLICY, NOW),
    ]
    text = account_table({"accounts": views, "moderation_pause": "3/1h", "credits_low": "10%"})
    lines = text.splitlines()
    assert lines[0].split() == ["ACCOUNT", "STATE", "SLOTS", "CREDITS", "LEFT", "TODAY", "MODERATION"]
    assert "1/2 (max 3)" in lines[1] and "935 of 2,250" in lines[1] and "1/3 in 1h" in lines[1]
    assert lines[1].endswith("paused until 2026-01-05T10:30:00Z: 3 moderation failures")
    assert "b@x.com" in lines[2] and "(max" not in lines[2]
    assert lines[3] == "    last error (2026-01-05T10:00:00Z): HTTP 500"
    assert lines[-1] == "moderation guard: 3/1h; credits low below: 10%"
    assert "no Runway accounts known yet" in account_table({"accounts": []})
