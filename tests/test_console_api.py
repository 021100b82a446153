"""The API the console is built on, against a real relay with the simulator: search, groups,
idempotency keys, usage, handler history, the timeline, and job streams that wait for the handlers."""

from __future__ import annotations

import json

import httpx

from conftest import RelayProcess

DONE = ("succeeded", "failed", "cancelled", "rejected")


def settled(job: dict) -> bool:
    return job["status"] in DONE and all(h["status"] not in ("pending", "running") for h in job["handlers"])


def test_search_and_account_filter(relay: RelayProcess) -> None:
    for prompt in ("a red fox at dawn", "a blue whale", "Red sunset"):
        assert (
            relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": prompt}).status_code == 201
        )
    found = relay.api("GET", "/api/jobs", params={"q": "RED"}).json()["jobs"]
    assert sorted(j["prompt"] for j in found) == ["Red sunset", "a red fox at dawn"]
    assert all(j["group_id"] is None for j in found)
    job = relay.wait_for(found[0]["id"], lambda j: j["account"] is not None)
    by_account = relay.api("GET", "/api/jobs", params={"account": job["account"]}).json()["jobs"]
    assert job["id"] in [j["id"] for j in by_account]
    assert relay.api("GET", "/api/jobs", params={"account": "nobody@x.com"}).json()["jobs"] == []
    assert relay.api("GET", "/api/jobs", params={"q": "x" * 201}).json()["field"] == "q"


def test_a_cursor_that_is_no_job_id_is_refused(relay: RelayProcess) -> None:
    answer = relay.api("GET", "/api/jobs", params={"cursor": "garbage"})
    assert answer.status_code == 422 and answer.json()["field"] == "cursor", answer.text
    first = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "one"}).json()
    relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "two"})
    page = relay.api("GET", "/api/jobs", params={"limit": 1}).json()
    rest = relay.api("GET", "/api/jobs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [first["id"]]


def test_every_problem_of_a_rejected_submit_is_listed(relay: RelayProcess) -> None:
    answer = relay.api("POST", "/api/jobs", json={"model": "gen4", "seed": 0, "exploreMode": "maybe"})
    assert answer.status_code == 422
    fields = {p["field"] for p in answer.json()["problems"]}
    assert fields == {"text_prompt", "imageAssetId1", "seed", "exploreMode"}


def test_a_group_sends_one_prompt_to_several_models(relay: RelayProcess) -> None:
    body = {
        "models": ["veo-3.1", "kling-3.0-pro", "sora-2"],
        "text_prompt": "a paper boat",
        "aspect_ratio": "16:9",
    }
    answer = relay.api("POST", "/api/groups", json=body)
    assert answer.status_code == 201, answer.text
    group = answer.json()
    assert [j["model"] for j in group["jobs"]] == body["models"]
    assert {j["group_id"] for j in group["jobs"]} == {group["group_id"]}
    fetched = relay.api("GET", f"/api/groups/{group['group_id']}").json()
    assert [j["id"] for j in fetched["jobs"]] == [j["id"] for j in group["jobs"]]
    for job in group["jobs"]:
        relay.wait_for(job["id"], settled)
    assert relay.api("GET", "/api/groups/g-nothing").status_code == 404


def test_a_group_stores_nothing_if_one_model_breaks_a_rule(relay: RelayProcess) -> None:
    body = {"models": ["veo-3.1", "gen4", "sora-2"], "text_prompt": "x", "exploreMode": True}
    answer = relay.api("POST", "/api/groups", json=body)
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert {(p["model"], p["field"]) for p in problems} == {
        ("veo-3.1", "exploreMode"),
        ("gen4", "imageAssetId1"),
    }
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []
    assert relay.api("POST", "/api/groups", json={"model": "veo-3.1"}).json()["field"] == "model"
    assert relay.api("POST", "/api/groups", json={"models": ["sora-2", "sora-2"]}).json()["field"] == "models"


def test_client_ref_makes_a_create_idempotent(relay: RelayProcess) -> None:
    body = {"model": "gen4.5", "text_prompt": "once", "client_ref": "batch:abc:1"}
    first = relay.api("POST", "/api/jobs", json=body)
    again = relay.api("POST", "/api/jobs", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["client_ref"] == "batch:abc:1"
    assert len(relay.api("GET", "/api/jobs").json()["jobs"]) == 1
    dry = relay.api("POST", "/api/jobs?dry_run=1", json={"model": "veo-3.1", "text_prompt": "x"})
    assert dry.status_code == 200 and dry.json()["params"]["duration"] == 4
    assert (
        relay.api("POST", "/api/jobs?dry_run=1", json={"model": "veo-3.1", "duration": 5}).status_code == 422
    )
    assert len(relay.api("GET", "/api/jobs").json()["jobs"]) == 1
    assert relay.api("POST", "/api/jobs", json={**body, "client_ref": 5}).json()["field"] == "client_ref"
    other = relay.api("POST", "/api/jobs", json={**body, "text_prompt": "something else"})
    assert other.status_code == 409 and "other parameters" in other.json()["error"], other.text
    assert len(relay.api("GET", "/api/jobs").json()["jobs"]) == 1


def test_job_stream_ends_once_the_download_has_arrived(relay: RelayProcess) -> None:
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "stream me"}).json()
    seen = []
    with httpx.stream("GET", f"{relay.url}/api/jobs/{job['id']}/events", timeout=30) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
    last = seen[-1]
    assert last["status"] == "succeeded" and last["progress_text"] is None
    assert last["artifacts"][0]["path"] and all(h["status"] == "done" for h in last["handlers"])
    assert "succeeded" in [s["status"] for s in seen]


def test_timeline_history_and_replay(relay: RelayProcess) -> None:
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "history"}).json()
    relay.wait_for(job["id"], settled)
    assert relay.api("POST", f"/api/jobs/{job['id']}/replay").status_code == 202
    job = relay.wait_for(job["id"], lambda j: settled(j) and all(h["replays"] == 1 for h in j["handlers"]))
    detail = relay.wait_for(job["id"], lambda j: len(j["handler_attempts"]) >= 2)
    rounds = [(a["handler"], a["round"], a["outcome"]) for a in detail["handler_attempts"]]
    assert rounds == [("download", 0, "done"), ("download", 1, "done")]
    assert detail["handlers"][0]["output"]
    phases = [e["state"] for e in detail["timeline"] if e["kind"] == "phase"]
    assert phases[0] == "queued" and phases[-1] == "succeeded" and "running" in phases
    assert any(e["kind"] == "note" and e["label"] == "Handlers replayed" for e in detail["timeline"])


def test_usage_counts_the_day(relay: RelayProcess) -> None:
    ids = [
        relay.api("POST", "/api/jobs", json={"model": "veo-3.1", "text_prompt": p, "duration": 8}).json()[
            "id"
        ]
        for p in ("one", "two", "bad [moderate]")
    ]
    for job_id in ids:
        relay.wait_for(job_id, settled)
    usage = relay.api("GET", "/api/usage", params={"days": 1}).json()
    total = usage["total"]
    assert total["jobs"] == 3 and total["succeeded"] == 2 and total["moderated"] == 1
    assert total["video_seconds"] == 16 and total["moderation_rate"] == round(1 / 3, 4)
    assert total["generation_p50"] is not None and total["generation_p95"] >= total["generation_p50"]
    assert len(usage["by_day"]) == 1 and usage["by_model"][0]["model"] == "veo-3.1"
    assert usage["accounts"] and all(a["in_use"] == 0 for a in usage["accounts"])
    assert relay.api("GET", "/api/usage", params={"days": "0"}).json()["field"] == "days"
