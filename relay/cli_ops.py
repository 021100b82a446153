"""``runway-relay`` commands for the operator: backup, prune, accounts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from . import storage
from .cli_options import API_KEY, SERVER
from .client import EXIT_FAILED, EXIT_USAGE, Client, fail
from .settings import SettingsError, load_settings


@click.command()
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


# -- prune (retention) -----------------------------------------------------------------------


@click.command()
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


@click.group(invoke_without_command=True)
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


COMMANDS = (backup, prune, accounts)
