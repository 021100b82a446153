"""``GET /``: the operations console (jobs, job pages, submit form, compare, usage), its static files
under ``/static``, and ``GET /files/{job}/{name}`` to play downloaded videos.

The page is a Jinja2 template with no inline script, style or event handler (a strict CSP holds); the
JavaScript modules and the stylesheet are plain files in ``static/``, no build step.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Message, Receive, Scope, Send

from ..errors import NotFound
from .auth import SESSION_COOKIE, session_value

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
_templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
)


def _static_version() -> str:
    """A digest of every static file: a new release changes the URLs, so no stale script runs."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


_VERSION = _static_version()


class Static:
    """``StaticFiles`` for ``/static``, answered with ``Cache-Control: no-cache`` (revalidated by ETag):
    the modules a page imports carry no version in their URL."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"cache-control", b"no-cache"))
            await send(message)

        await self.files(scope, receive, send_cached)


async def dashboard(request: Request) -> Response:
    """The dashboard page; it reads everything else from the JSON API and the event stream."""
    settings = request.app.state.relay.settings
    context = {"auth": settings.api_key is not None, "simulated": settings.simulated, "version": _VERSION}
    return _templates.TemplateResponse(request, "dashboard.html", context)


async def sample(request: Request) -> Response:
    """``GET /samples/image.jpg|video.mp4`` (simulator only): media to try uploads with."""
    from ..simulator import PREVIEW_JPG, SAMPLE_MP4

    path = {"image.jpg": PREVIEW_JPG, "video.mp4": SAMPLE_MP4}.get(request.path_params["name"])
    if path is None:
        raise NotFound("the samples are image.jpg and video.mp4")
    return FileResponse(path)


async def artifact_file(request: Request) -> Response:
    """A downloaded artifact, only from inside the download folder."""
    root = Path(request.app.state.relay.settings.download_dir).resolve()
    job, name = request.path_params["job"], request.path_params["name"]
    if "\x00" in job or "\x00" in name:
        raise NotFound("no such downloaded file")
    path = (root / job / name).resolve()
    if root not in path.parents or not path.is_file() or path.name.endswith(".part"):
        raise NotFound("no such downloaded file")
    return FileResponse(path)


_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>runway-relay: sign in</title>
<style>body{font:14px system-ui,sans-serif;display:grid;place-items:center;height:90vh}
form{display:grid;gap:8px;width:280px}</style></head><body><form method="post" action="/login">
<h3>runway-relay</h3><label for="key">API key (RELAY_API_KEY)</label>
<input id="key" name="key" type="password" autofocus>{error}<button type="submit">Sign in</button>
</form></body></html>"""


async def login(request: Request) -> Response:
    """``GET /login`` shows the form; ``POST /login`` checks the key and sets the session cookie."""
    api_key = request.app.state.relay.settings.api_key
    if request.method == "GET" or api_key is None:
        return HTMLResponse(_LOGIN.replace("{error}", "")) if api_key else RedirectResponse("/", 303)
    async with request.form(max_fields=4) as form:
        given = form.get("key")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), api_key.encode()):
        return HTMLResponse(_LOGIN.replace("{error}", '<p style="color:#b91c1c">Wrong key.</p>'), 401)
    response = RedirectResponse("/", 303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(api_key),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
