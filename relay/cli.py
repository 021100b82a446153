"""``runway-relay``: run the service or the simulator, and drive a running relay (contract §6).

The commands that talk to a running relay live in :mod:`.cli_jobs`; the operator's in :mod:`.cli_ops`.
"""

from __future__ import annotations

import asyncio
import logging

import click

from . import affinity, cli_jobs, cli_ops, storage
from .client import EXIT_USAGE, fail
from .settings import Settings, SettingsError, load_settings


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
    problem = serving.listen_problem(host, port)
    if problem:
        fail(problem, EXIT_USAGE)
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

    from . import logs, serving
    from .settings import _accounts
    from .simulator import create_app as create_sim

    try:
        parsed = dict(_accounts(accounts, "--accounts")) or None
        plans = _credits(credits)
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    if not token and not Settings(host=host).is_loopback:
        fail(
            f"refusing to listen on {host} without --token: anyone could read its tasks' callback URLs "
            "and make it post anywhere. Give --token (or SIMULATOR_TOKEN), or use --host 127.0.0.1.",
            EXIT_USAGE,
        )
    problem = serving.listen_problem(host, port)
    if problem:
        fail(problem, EXIT_USAGE)
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


for command in (*cli_jobs.COMMANDS, *cli_ops.COMMANDS):
    main.add_command(command)


if __name__ == "__main__":
    main()
