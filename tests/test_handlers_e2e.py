"""forward and slack through the real relay process (``runway-relay serve`` on its simulator), with a
dead Slack run replayed from the CLI once Slack recovers."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from standardwebhooks import Webhook

from conftest import RelayProcess
from servers import serve_in_thread
from test_handlers_support import SECRET, Receiver


def _runs(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["name"]: run for run in job["handlers"] if run["signal"] == "job-succeeded"}


def test_forward_and_slack_through_the_relay(relay_factory: Any) -> None:
    slack, target = Receiver(), Receiver()
    slack.answer(500, b"slack is down")
    with serve_in_thread(slack.app) as slack_url, serve_in_thread(target.app) as target_url:
        relay: RelayProcess = relay_factory(
            RELAY_SLACK_WEBHOOK_URL=f"{slack_url}/services/T/B/hush-hush-token",
            RELAY_FORWARD_URL=f"{target_url}/hooks",
            RELAY_FORWARD_SECRET=SECRET,
            RELAY_HANDLER_MAX_ATTEMPTS="1",
        )
        created = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a red fox"})
        job_id = created.json()["id"]
        job = relay.wait_for(
            job_id,
            lambda j: (
                {"slack", "forward", "download"} <= set(_runs(j))
                and all(r["status"] in ("done", "dead") for r in j["handlers"])
            ),
        )
        assert _runs(job)["slack"]["status"] == "dead" and "HTTP 500" in _runs(job)["slack"]["last_error"]
        command = ["replay", job_id, "--handler", "slack", "--server", relay.url]
        replay = subprocess.run(
            [sys.executable, "-m", "runway_relay", *command],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert replay.returncode == 0, replay.stderr
        job = relay.wait_for(job_id, lambda j: _runs(j)["slack"]["status"] == "done")
    assert "hush-hush-token" not in relay.log()
    delivered = [Webhook(SECRET).verify(seen.body, seen.headers) for seen in target.seen]
    types = {event["type"] for event in delivered}
    assert {"job.submitted", "job.progress", "job.succeeded"} <= types
    assert {event["data"]["id"] for event in delivered} == {job_id}
    ids = [seen.headers["webhook-id"] for seen in target.seen]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"msg_{job_id}_") for i in ids)
    assert len(slack.seen) == 2 and slack.seen[0].body == slack.seen[1].body
    blocks = json.loads(slack.seen[-1].body)["blocks"]
    assert "Video ready: gen4.5" in blocks[0]["text"]["text"]
    assert f"{relay.url}/#job={job_id}" in json.dumps(blocks)
