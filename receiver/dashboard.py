"""``GET /``: a one-page dashboard (job list with live progress, submit form, player, replay),
and ``GET /files/{job}/{name}`` to play downloaded videos."""

from __future__ import annotations

import hmac
from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from ..errors import NotFound
from ..media import media_type
from .auth import SESSION_COOKIE, session_value

_PAGE = files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def dashboard(request: Request) -> Response:
    """The dashboard page; it reads everything else from the JSON API and the event stream."""
    return HTMLResponse(_PAGE)


# A downloaded file is never a page: no script, no plugins, no forms, an origin of its own.
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
_NAME_MAX = 255  # longer names cannot exist on disk; asking the file system raises ENAMETOOLONG


async def artifact_file(request: Request) -> Response:
    """A downloaded artifact, only from inside the download folder.

    Videos and images (by extension, :mod:`..media`) play inline; anything else is a download.
    """
    root = Path(request.app.state.relay.settings.download_dir).resolve()
    job, name = request.path_params["job"], request.path_params["name"]
    if "\x00" in job or "\x00" in name or max(len(job), len(name)) > _NAME_MAX:
        raise NotFound("no such downloaded file")
    try:
        path = (root / job / name).resolve()
        found = root in path.parents and path.is_file() and not path.name.endswith(".part")
    except OSError:  # a name the file system refuses is a file that is not there
        found = False
    if not found:
        raise NotFound("no such downloaded file")
    media = media_type(path.name)
    if media is None:
        binary = "application/octet-stream"
        return FileResponse(path, media_type=binary, headers=_FILE_HEADERS, filename=path.name)
    return FileResponse(path, media_type=media, headers=_FILE_HEADERS)


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
