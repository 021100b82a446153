"""``runway-relay``: run the service or the simulator, and drive a running relay (contract §6)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import affinity, rules, storage, views
from .client import EXIT_FAILED, EXIT_USAGE, Client, fail
from .settings import Settings, SettingsError, load_settings

SERVER = click.option(
    "--server",
    envvar="RELAY_SERVER",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The running relay (RELAY_SERVER).",
)
API_KEY = click.option(
    "--api-key",
    envvar="RELAY_API_KEY",
    default=None,
    show_envvar=True,
    help="Bearer key when the relay has RELAY_API_KEY set.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runway-relay")
def main() -> None:
    """Submit Runway video jobs through useapi.net and relay their progress to handlers."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Also log every HTTP request (the relay already logs each callback and job event).",
)
def serve(host: str, port: int, access_log: bool) -> None:
    """Run the relay (with the built-in simulator when USEAPI_TOKEN is unset)."""
    from . import logs, serving
    from .receiver.app import create_app

    try:
        settings = load_settings().with_overrides(host=host, port=port)
    except SettingsError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    if not settings.is_loopback and not settings.api_key:
        fail(
            f"refusing to listen on {host}: anyone could use this relay. Set RELAY_API_KEY, "
            "or use --host 127.0.0.1.",
            EXIT_USAGE,
        )
    logs.setup(settings.log_level, settings.log_format)
    if settings.simulated:  # a log line, so that RELAY_LOG_FORMAT=json keeps stderr all JSON
        logging.getLogger("runway_relay").info(
            "USEAPI_TOKEN is not set: using the built-in simulator of useapi.net (jobs finish in ~%.0f s).",
            settings.sim_step_seconds * 6,
        )
    try:
        app = create_app(settings)
        cpu = affinity.pin(settings.cpu)
    except ValueError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    problem = asyncio.run(storage.check(settings.db_path))
    if problem:
        fail(f"database error: {problem}", EXIT_USAGE)
    if cpu is not None:
        log = logging.getLogger("runway_relay")
        log.info("running on CPU %d (RELAY_CPU=off lets the OS move the relay's threads)", cpu)
    serving.run(app, settings, access_log=access_log, on_exit=app.state.relay.live.close_soon)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE when it exists.")
def backup(file: Path, force: bool) -> None:
    """Copy RELAY_DB to FILE, consistently, while a relay serves it, and check the copy.

    SQLite: SQLite's online backup, then PRAGMA integrity_check on the copy. PostgreSQL: pg_dump
    --format=custom, then pg_restore --list. Restore: see README, "Backup and restore".
    """
    from .storage.backup import BackupError
    from .storage.backup import backup as make_backup

    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    try:
        made = make_backup(settings.db_path, file, force=force)
    except BackupError as exc:
        fail(f"backup failed: {exc}", EXIT_FAILED)
    click.echo(made.summary())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=click.IntRange(1, 65535))
@click.option("--step-seconds", default=1.0, show_default=True, type=click.FloatRange(0.001))
@click.option("--accounts", default="", help="email:maxJobs,... (default one account, 2 jobs)")
@click.option(
    "--token", envvar="SIMULATOR_TOKEN", default=None, help="Require this bearer token, like useapi.net does."
)
@click.option(
    "--create-delay",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds between accepting a create and answering it (to test crashes in that window).",
)
@click.option(
    "--runway-capacity",
    default=None,
    type=click.IntRange(1, 10),
    help="Runway's own per-account limit; over it creates get Runway's 429.",
)
@click.option(
    "--credits",
    default="",
    help="email=credits,... plan credits of these accounts (creates spend 10 per second of video).",
)
@click.option("--broken", multiple=True, help="an account whose session is broken (401); repeatable")
def simulate(
    host: str,
    port: int,
    step_seconds: float,
    accounts: str,
    token: str | None,
    create_delay: float,
    runway_capacity: int | None,
    credits: str,
    broken: tuple[str, ...],
) -> None:
    """Run the useapi.net simulator alone, as an upstream for other processes.

    ``GET /sim/stats`` shows what reached it (accepted creates by replyRef, attempts, 429s, tasks).
    """
    import uvicorn

    from . import logs
    from .settings import _accounts
    from .simulator import create_app as create_sim

    try:
        parsed = dict(_accounts(accounts)) or None
        plans = _credits(credits)
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    if not token and not Settings(host=host).is_loopback:
        fail(
            f"refusing to listen on {host} without --token: anyone could read its tasks' callback URLs "
            "and make it post anywhere. Give --token (or SIMULATOR_TOKEN), or use --host 127.0.0.1.",
            EXIT_USAGE,
        )
    logs.setup()
    app = create_sim(
        accounts=parsed,
        step_seconds=step_seconds,
        token=token,
        base_url=f"http://{host}:{port}",
        create_delay=create_delay,
        runway_capacity=runway_capacity,
        credits=plans,
        broken=set(broken),
    )
    uvicorn.run(app, host=host, port=port, log_config=None)


def _credits(raw: str) -> dict[str, float]:
    """``--credits a@x.com=500,b@x.com=20000``."""
    plans: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        email, _, amount = item.partition("=")
        try:
            plans[email.strip()] = float(amount)
        except ValueError:
            raise SettingsError(f"--credits entry {item!r}: use email=credits, e.g. a@x.com=500") from None
    return plans


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


@main.command()
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


@main.command()
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


@main.command()
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


@main.command()
@SERVER
@API_KEY
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def show(server: str, api_key: str | None, job_id: str, as_json: bool) -> None:
    """Show one job: its prompt, parameters, timeline, artifacts and handler messages."""
    job = Client(server, api_key).call("GET", f"/api/jobs/{job_id}")
    click.echo(json.dumps(job, indent=2) if as_json else views.job_details(job))


@main.command()
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


@main.command()
@SERVER
@API_KEY
@click.argument("job_id")
def cancel(server: str, api_key: str | None, job_id: str) -> None:
    """Cancel a job and free its slot upstream."""
    _print_job(Client(server, api_key).call("POST", f"/api/jobs/{job_id}/cancel"), False)


@main.command()
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


@main.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json: bool) -> None:
    """The model rules as a table (no server needed)."""
    click.echo(json.dumps(rules.rules_table(), indent=2) if as_json else rules.format_table())


@main.command()
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


# -- prune (retention) -----------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Finished jobs last updated longer ago than this: 30d, 12h, 0d (all of them).",
)
@click.option("--files", is_flag=True, help="Also delete their downloaded files (inside RELAY_DOWNLOAD_DIR).")
@click.option(
    "--jobs", is_flag=True, help="Also delete the job rows themselves (default: keep them, compact)."
)
@click.option(
    "--vacuum",
    is_flag=True,
    help="End with a full VACUUM (SQLite: blocks writes while it runs; needed once for older files).",
)
@SERVER
@API_KEY
def prune(older_than: str, files: bool, jobs: bool, vacuum: bool, server: str, api_key: str | None) -> None:
    """Remove the history of finished jobs: events, transitions, handler runs (RELAY_DB).

    Works beside a serving relay, a small batch per transaction; when a relay serves the SQLite
    file, the prune runs inside it (through --server / RELAY_SERVER), taking turns with its
    callbacks. The job rows stay, so the API still answers for them, unless --jobs is given.
    """
    from .guard import RuleError, parse_duration
    from .retention import PruneReport
    from .retention import prune as run_prune

    try:
        seconds = parse_duration(older_than, zero=True)
    except RuleError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(f"configuration error: {exc}", EXIT_USAGE)
    if storage.served(settings.db_path):
        client = Client(server, api_key)
        click.echo(f"{settings.db_path} is served by a relay: pruning through it ({client.server})", err=True)
        asked = {"older_than": older_than, "files": files, "jobs": jobs, "vacuum": vacuum}
        answer = client.call("POST", "/api/prune", json=asked, timeout=None)
        for line in PruneReport.from_json(answer).lines():
            click.echo(line)
        return

    async def go() -> list[str]:
        store = storage.open_store(settings.db_path, owner=False)
        try:
            await store.open()
        except (storage.StorageUnavailable, ImportError) as exc:
            fail(f"database error: {exc}", EXIT_FAILED)
        try:
            if vacuum and not store.shared:
                click.echo("VACUUM at the end: writes to the database wait until it is done", err=True)
            report = await run_prune(
                store, seconds, settings.download_dir, files=files, jobs=jobs, vacuum=vacuum
            )
        finally:
            await store.close()
        return report.lines()

    for line in asyncio.run(go()):
        click.echo(line)


@main.group(invoke_without_command=True)
@SERVER
@API_KEY
@click.option("--json", "as_json", is_flag=True, help="print the JSON answer")
@click.pass_context
def accounts(ctx: click.Context, server: str, api_key: str | None, as_json: bool) -> None:
    """The Runway accounts: slots in use and capacity, pause, rotation, credits, jobs today.

    `runway-relay accounts resume EMAIL` lifts a pause (or brings an account back into rotation).
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"server": server, "api_key": api_key}  # `accounts --server X resume E` works too
        return
    from .accounts import account_table

    answer = Client(server, api_key).call("GET", "/api/accounts")
    click.echo(json.dumps(answer, indent=2) if as_json else account_table(answer))


@accounts.command()
@SERVER
@API_KEY
@click.argument("email")
@click.pass_context
def resume(ctx: click.Context, server: str, api_key: str | None, email: str) -> None:
    """Lift the account's moderation pause and bring it back into rotation."""
    from urllib.parse import quote

    given = ctx.obj or {}
    if ctx.get_parameter_source("server") is click.core.ParameterSource.DEFAULT:
        server = given.get("server") or server
    api_key = api_key or given.get("api_key")
    answer = Client(server, api_key).call("POST", f"/api/accounts/{quote(email, safe='@')}/resume")
    lifted = answer["lifted"]
    click.echo(f"{email}: lifted " + "; ".join(lifted) if lifted else f"{email}: nothing to lift")
    click.echo(f"state: {answer['account']['state']}")


if __name__ == "__main__":
    main()
