"""Options every command that talks to a running relay takes (contract §6)."""

from __future__ import annotations

import click

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
