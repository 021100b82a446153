"""``GET /``: the operations console (jobs, job pages, submit form, compare, usage), its static files
under ``/static``, and ``GET /files/{job}/{name}`` to play downloaded videos.

The page is a Jinja2 template with no inline script, style or event handler (a strict CSP holds); the
JavaScript modules and the stylesheet are plain files in ``static/``, no build step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Message, Receive, Scope, Send

from ..errors import NotFound
from ..media import media_type

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
