"""The Starlette app, assembled in one place from routes, middleware and exception handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from ..service import Relay
from ..settings import Settings, load_settings
from . import api
from .auth import ApiKeyMiddleware
from .callbacks import CallbackEndpoint
from .dashboard import Static, artifact_file, dashboard, login, sample
from .errors import EXCEPTION_HANDLERS


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
        Route("/api/assets", api.upload_asset, methods=["POST"]),
        Route("/api/models", api.models, methods=["GET"]),
        Route("/api/groups", api.create_group, methods=["POST"]),
        Route("/api/groups/{id}", api.get_group, methods=["GET"]),
        Route("/api/usage", api.usage, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Mount("/static", app=Static(), name="static"),
        Route("/files/{job}/{name}", artifact_file, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
    ]
    if relay.settings.simulated:
        routes.append(Route("/samples/{name}", sample, methods=["GET"]))
        routes.append(Mount("", app=relay.simulator_app()))
    return routes


def create_app(settings: Settings | None = None) -> Starlette:
    """The relay as an ASGI app (``uvicorn runway_relay.receiver.app:create_app --factory``)."""
    settings = settings or load_settings()
    relay = Relay(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    app = Starlette(
        routes=_routes(relay),
        middleware=[Middleware(ApiKeyMiddleware, api_key=settings.api_key)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.relay = relay
    return app
