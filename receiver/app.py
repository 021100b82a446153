"""The Starlette app, assembled in one place from routes, middleware and exception handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from .. import logs
from ..service import Relay
from ..settings import Settings, load_settings
from . import api, login, uploads
from .auth import ApiKeyMiddleware
from .callbacks import CallbackEndpoint
from .dashboard import Static, artifact_file, dashboard, sample
from .errors import EXCEPTION_HANDLERS
from .headers import SecurityHeadersMiddleware
from .hosts import TrustedHosts, allowed_hosts
from .streams import StreamSlots
from .throttle import FailureThrottle
from .writes import WriteGuardMiddleware


def _routes(relay: Relay) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        # ``:path`` so that ``/callbacks/x/`` is an unknown token (404), not a redirect to ``/callbacks/x``.
        Route("/callbacks/{token:path}", CallbackEndpoint(), methods=["POST"]),
        Route("/api/jobs", api.create_job, methods=["POST"]),
        Route("/api/jobs", api.list_jobs, methods=["GET"]),
        Route("/api/jobs/{id}", api.get_job, methods=["GET"]),
        Route("/api/jobs/{id}/cancel", api.cancel_job, methods=["POST"]),
        Route("/api/jobs/{id}/replay", api.replay_job, methods=["POST"]),
        Route("/api/jobs/{id}/events", api.job_events, methods=["GET"]),
        Route("/api/events", api.all_events, methods=["GET"]),
        Route("/api/assets", uploads.upload_asset, methods=["POST"]),
        Route("/api/models", api.models, methods=["GET"]),
        Route("/api/accounts", api.list_accounts, methods=["GET"]),
        Route("/api/accounts/{email}/resume", api.resume_account, methods=["POST"]),
        Route("/api/prune", api.prune, methods=["POST"]),
        Route("/api/groups", api.create_group, methods=["POST"]),
        Route("/api/groups/{id}", api.get_group, methods=["GET"]),
        Route("/api/usage", api.usage, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Mount("/static", app=Static(), name="static"),
        Route("/files/{job}/{name}", artifact_file, methods=["GET"]),
        Route("/login", login.login, methods=["GET", "POST"]),
        Route("/logout", login.logout, methods=["POST"]),
    ]
    if relay.settings.simulated:
        routes.append(Route("/samples/{name}", sample, methods=["GET"]))
        routes.append(Mount("", app=relay.simulator_app()))
    return routes


def _middleware(settings: Settings, throttle: FailureThrottle) -> list[Middleware]:
    """Outermost first: every answer gets the security headers, even a refusal further in."""
    return [
        Middleware(SecurityHeadersMiddleware),
        Middleware(TrustedHosts, allowed=allowed_hosts(settings)),
        Middleware(
            ApiKeyMiddleware,
            api_key=settings.api_key,
            internal_token=settings.internal_token,
            throttle=throttle,
        ),
        Middleware(WriteGuardMiddleware, public_url=settings.public_url),
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    """The relay as an ASGI app (``uvicorn runway_relay.receiver.app:create_app --factory``)."""
    settings = settings or load_settings()
    logs.register_secrets(*settings.secrets())  # before anything can log or store an error
    relay = Relay(settings)
    throttle = FailureThrottle()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    app = Starlette(
        routes=_routes(relay),
        middleware=_middleware(settings, throttle),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.relay = relay
    app.state.throttle = throttle  # the login form counts wrong keys with the middleware
    app.state.streams = StreamSlots(settings.sse_max)
    return app
