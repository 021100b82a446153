"""``runway-relay`` commands that drive jobs on a running relay: submit, batch, jobs, show, usage…"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import rules, views
from .cli_options import API_KEY, SERVER
from .client import EXIT_FAILED, EXIT_USAGE, Client, fail


def _body(options: dict[str, Any], extra: tuple[str, ...]) -> dict[str, Any]:
    names = {
        "prompt": "text_prompt",
        "duration": "duration",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "seed": "seed",
        "audio": "audio",
        "image": "imageAssetId1",
        "end_image": "imageAssetId2",
        "video": "videoAssetId",
        "explore": "exploreMode",
        "email": "email",
    }
    body = {names[k]: v for k, v in options.items() if k in names and v is not None}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--param takes key=value, got {item!r}", EXIT_USAGE)
        try:
            body[key] = json.loads(value)
        except ValueError:
            body[key] = value
    return body


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(
        f"{job['id']}  {job['status']}  {job['model']}  {job['progress'] * 100:.0f}%  "
        f"attempt {job['attempt']}"
    )
    if job.get("error"):
        click.echo(f"  error: {job['error']}")
    for artifact in job.get("artifacts", []):
        click.echo(
            f"  artifact: {artifact.get('path') or artifact['url']}"
            + (f"  sha256={artifact['sha256']}" if artifact.get("sha256") else "")
        )
    for run in job.get("handlers", []):
        message = run.get("output") if run["status"] == "done" else run.get("last_error")
        click.echo(
            f"  handler {run['name']}: {run['status']} ({run['attempts']} attempt(s))"
            + (f" — {message}" if message else "")
        )


@click.command()
@SERVER
@API_KEY
@click.option("--model", "-m", required=True, help="e.g. gen4.5 (see `runway-relay models`)")
@click.option("--prompt", "-p")
@click.option("--duration", "-d", type=int)
@click.option("--aspect-ratio")
@click.option("--resolution")
@click.option("--seed", type=int)
@click.option("--audio/--no-audio", default=None)
@click.option("--image", help="imageAssetId1 (start frame)")
@click.option("--end-image", help="imageAssetId2 (end frame)")
@click.option("--video", help="videoAssetId")
@click.option("--explore/--no-explore", default=None)
@click.option("--email", help="run on this Runway account")
@click.option("--param", "extra", multiple=True, help="any other field as key=value")
@click.option("--handler", "handlers", multiple=True, help="only these handlers for this job")
@click.option("--wait", is_flag=True, help="wait until the job ends, showing progress")
@click.option("--json", "as_json", is_flag=True, help="print the job JSON")
def submit(
    server: str,
    api_key: str | None,
    model: str,
    extra: tuple[str, ...],
    handlers: tuple[str, ...],
    wait: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Submit one job. With --wait, exit 0 if it succeeded and 1 if not.

    Several models (``--model veo-3.1,kling-3.0-pro,sora-2``) send the same request to each as a
    compare group: every model is checked first, and nothing is sent if one breaks a rule.
    """
    body = {"model": model, **_body(options, extra)}
    if handlers:
        body["handlers"] = list(handlers)
    client = Client(server, api_key)
    models = [m.strip() for m in model.split(",") if m.strip()]
    if len(models) > 1:
        _submit_group(client, {**body, "model": None, "models": models}, wait, as_json)
        return
    job = client.call("POST", "/api/jobs", json=body)
    if not as_json:
        click.echo(f"queued {job['id']}", err=True)
    if wait:
        job = client.wait(job["id"])
    _print_job(job, as_json)
    if wait and job["status"] != "succeeded":
        sys.exit(EXIT_FAILED)


def _submit_group(client: Client, body: dict[str, Any], wait: bool, as_json: bool) -> None:
    body.pop("model")
    group = client.call("POST", "/api/groups", json=body)
    if not as_json:
        click.echo(f"queued group {group['group_id']} ({len(group['jobs'])} models)", err=True)
    jobs = [client.wait(job["id"]) for job in group["jobs"]] if wait else group["jobs"]
    if as_json:
        click.echo(json.dumps({"group_id": group["group_id"], "jobs": jobs}, indent=2))
    else:
        for job in jobs:
            _print_job(job, False)
    if wait and any(job["status"] != "succeeded" for job in jobs):
        sys.exit(EXIT_FAILED)


@click.command()
@SERVER
@API_KEY
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="wait for every job to end")
@click.option("--again", is_flag=True, help="forget FILE.sent and send every line again (new refs)")
def batch(server: str, api_key: str | None, file: Path, wait: bool, again: bool) -> None:
    """Submit one job per line of a JSONL file (each line: the videos/create fields).

    The whole file is checked first (JSON, the model rules, then a dry run on the relay): every bad
    line is reported by its number and nothing is sent. Each line sent is recorded in FILE.sent, so a
    rerun after an interruption sends only the lines not sent yet. Prints each job id as it is queued.
    """
    from . import batch as batches

    lines, problems = batches.read(file)
    for line in lines:
        problems += batches.check(line)
    for problem in problems:  # shown before the relay is asked (it may be down)
        click.echo(problem, err=True)
    state = batches.State.load(file)
    if again:
        state.forget()
        lines = [batches.Line(ln.number, ln.body, f"{ln.client_ref}-{time.time_ns()}") for ln in lines]
    client = Client(server, api_key)
    todo = [line for line in lines if line.client_ref not in state.sent]
    flagged = {problem.split(":", 1)[0] for problem in problems}
    for problem in batches.dry_run(client, [ln for ln in todo if f"line {ln.number}" not in flagged]):
        click.echo(problem, err=True)
        problems.append(problem)
    if problems:
        bad = len({problem.split(":", 1)[0] for problem in problems})
        fail(f"{bad} bad line(s) in {file}; nothing was sent. Fix them and run it again.", EXIT_USAGE)
    done_before = len(lines) - len(todo)
    if done_before:
        click.echo(
            f"{done_before} line(s) already sent (recorded in {state.path.name}); sending the rest", err=True
        )
    refused = batches.send(client, state, todo)
    ids = [state.sent[line.client_ref] for line in lines if line.client_ref in state.sent]
    sent = len(todo) - len(refused)
    click.echo(
        f"{len(lines)} line(s): {sent} sent now, {done_before} sent before"
        + (f", {len(refused)} refused (see above)" if refused else ""),
        err=True,
    )
    if refused:
        sys.exit(EXIT_USAGE)
    if wait:
        failed = [j for j in ids if client.wait(j)["status"] != "succeeded"]
        if failed:
            fail(f"{len(failed)} of {len(ids)} job(s) did not succeed", EXIT_FAILED)


@click.command()
@SERVER
@API_KEY
@click.option("--status")
@click.option("--model")
@click.option("--account", help="only jobs of this Runway account")
@click.option("--search", "-q", "q", help="a word of the prompt (or an id's beginning)")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", help="the next page: the cursor the previous page ended with")
@click.option("--json", "as_json", is_flag=True)
def jobs(server: str, api_key: str | None, limit: int, as_json: bool, **filters: str | None) -> None:
    """List jobs, newest first, as a table with their prompts."""
    params = {k: v for k, v in {**filters, "limit": limit}.items() if v}
    answer = Client(server, api_key).call("GET", "/api/jobs", params=params)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    if not answer["jobs"]:
        click.echo(
            "no jobs"
            + (" match" if any(filters.values()) else " yet: runway-relay submit --model gen4.5 --prompt …")
        )
        return
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else None
    click.echo(views.jobs_table(answer["jobs"], width))
    if answer["next_cursor"]:
        click.echo(f"more: runway-relay jobs --cursor {answer['next_cursor']}", err=True)


@click.command()
@SERVER
@API_KEY
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def show(server: str, api_key: str | None, job_id: str, as_json: bool) -> None:
    """Show one job: its prompt, parameters, timeline, artifacts and handler messages."""
    job = Client(server, api_key).call("GET", f"/api/jobs/{job_id}")
    click.echo(json.dumps(job, indent=2) if as_json else views.job_details(job))


@click.command()
@SERVER
@API_KEY
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366))
@click.option("--json", "as_json", is_flag=True)
def usage(server: str, api_key: str | None, days: int, as_json: bool) -> None:
    """Usage per model, account and day: jobs, seconds of video, rates, generation p50/p95, slots."""
    answer = Client(server, api_key).call("GET", "/api/usage", params={"days": days})
    label = {rule.name: rule.label for rule in rules.MODELS.values()}
    click.echo(
        json.dumps(answer, indent=2) if as_json else views.usage_report(answer, lambda m: label.get(m, m))
    )


@click.command()
@SERVER
@API_KEY
@click.argument("job_id")
def cancel(server: str, api_key: str | None, job_id: str) -> None:
    """Cancel a job and free its slot upstream."""
    _print_job(Client(server, api_key).call("POST", f"/api/jobs/{job_id}/cancel"), False)


@click.command()
@SERVER
@API_KEY
@click.argument("job_id")
@click.option("--handler", help="only this handler")
def replay(server: str, api_key: str | None, job_id: str, handler: str | None) -> None:
    """Run the handlers of the job's last transition again."""
    params = {"handler": handler} if handler else {}
    answer = Client(server, api_key).call("POST", f"/api/jobs/{job_id}/replay", params=params)
    for run in answer["replayed"]:
        click.echo(f"replaying {run['name']} ({run['signal']})")


@click.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json: bool) -> None:
    """The model rules as a table (no server needed)."""
    click.echo(json.dumps(rules.rules_table(), indent=2) if as_json else rules.format_table())


@click.command()
@SERVER
@API_KEY
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--email", help="upload to this Runway account")
def upload(server: str, api_key: str | None, file: Path, email: str | None) -> None:
    """Upload an image or video as an asset; prints its assetId.

    Jobs that use the asset run on the Runway account that holds it (said on stderr).
    """
    import mimetypes

    media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    with file.open("rb") as handle:
        answer = Client(server, api_key).call(
            "POST",
            "/api/assets",
            files={"file": (file.name, handle, media)},
            data={"email": email} if email else None,
        )
    click.echo(answer["assetId"])
    if answer.get("account"):
        click.echo(f"uploaded to account {answer['account']}", err=True)


COMMANDS = (submit, batch, jobs, show, usage, cancel, replay, models, upload)
