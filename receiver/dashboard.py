"""``GET /``: a one-page dashboard (job list with live progress, submit form, player, replay),
and ``GET /files/{job}/{name}`` to play downloaded videos."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ..errors import NotFound
from ..media import media_type

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
