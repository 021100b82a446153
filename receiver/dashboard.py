"""``GET /``: a one-page dashboard (job list with live progress, submit form, player, replay),
and ``GET /files/{job}/{name}`` to play downloaded videos."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ..errors import NotFound

_PAGE = files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def dashboard(request: Request) -> Response:
    """The dashboard page; it reads everything else from the JSON API and the event stream."""
    return HTMLResponse(_PAGE)


async def artifact_file(request: Request) -> Response:
    """A downloaded artifact, only from inside the download folder."""
    root = Path(request.app.state.relay.settings.download_dir).resolve()
    path = (root / request.path_params["job"] / request.path_params["name"]).resolve()
    if root not in path.parents or not path.is_file() or path.name.endswith(".part"):
        raise NotFound("no such downloaded file")
    return FileResponse(path)
