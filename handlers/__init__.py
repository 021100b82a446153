"""Handlers: what runs when a job moves. Built-ins plus entry-point plugins.

Write one as a class with ``name``, ``events`` (a set of :class:`~runway_relay.states.Signal`),
``max_attempts`` and ``async def run(job, event)``, and register a factory taking a
:class:`HandlerContext` under the entry-point group ``runway_relay.handlers``. In ``run``, raise
:class:`PermanentError` to give up, :class:`RetryAfter` to wait at least that long before the next try,
and anything else to be retried with exponential backoff.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from ..settings import Settings
from .base import Handler, HandlerContext, HandlerEvent, HandlerFactory, PermanentError, RetryAfter
from .discord import DiscordHandler
from .download import DownloadHandler
from .exec import ExecHandler
from .forward import ForwardHandler
from .resubmit import ResubmitHandler
from .slack import SlackHandler

log = logging.getLogger("runway_relay.handlers")

BUILTIN: dict[str, HandlerFactory] = {
    "download": DownloadHandler,
    "resubmit": ResubmitHandler,
    "slack": SlackHandler,
    "discord": DiscordHandler,
    "forward": ForwardHandler,
    "exec": ExecHandler,
}

ENTRY_POINT_GROUP = "runway_relay.handlers"


def available_factories() -> dict[str, HandlerFactory]:
    """Built-in handlers plus every installed plugin (a plugin cannot replace a built-in)."""
    factories = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in factories:
            log.warning("plugin handler %r ignored: a built-in has that name", entry.name)
            continue
        try:
            factories[entry.name] = entry.load()
        except Exception as exc:
            log.error("plugin handler %r could not be loaded: %s", entry.name, exc)
    return factories


def default_names(settings: Settings, known: set[str]) -> tuple[str, ...]:
    """``RELAY_HANDLERS``, or ``download``, ``resubmit`` and every handler whose settings exist."""
    if settings.handlers is not None:
        return settings.handlers
    names = ["download"]
    if settings.resubmit_max > 0:
        names.append("resubmit")
    configured = {
        "slack": settings.slack_webhook_url,
        "discord": settings.discord_webhook_url,
        "forward": settings.forward_url,
        "exec": settings.exec_command,
    }
    names += [name for name, value in configured.items() if value and name in known]
    return tuple(names)


def build_handlers(ctx: HandlerContext) -> dict[str, Handler]:
    """Instantiate the enabled handlers; an unknown name in ``RELAY_HANDLERS`` is an error."""
    factories = available_factories()
    names = default_names(ctx.settings, set(factories))
    unknown = [name for name in names if name not in factories]
    if unknown:
        raise ValueError(
            f"RELAY_HANDLERS names unknown handler(s) {', '.join(unknown)}; "
            f"available: {', '.join(sorted(factories))}"
        )
    return {name: factories[name](ctx) for name in names}


__all__ = [
    "BUILTIN",
    "Handler",
    "HandlerContext",
    "HandlerEvent",
    "HandlerFactory",
    "PermanentError",
    "RetryAfter",
    "available_factories",
    "build_handlers",
    "default_names",
]
