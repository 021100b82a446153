"""``POST /api/assets``: a multipart upload, bounded by ``RELAY_UPLOAD_MAX_BYTES``, streamed upstream.

The multipart parser spools the file to a temporary file (1 MiB in memory, the rest on disk); the
bytes it is fed are counted as they arrive, so a body without ``Content-Length`` is refused (413)
as soon as it passes the limit, and the file is then read back and sent upstream in 1 MiB pieces.
Memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope

from ..errors import BadRequest, ValidationError
from ..upstream import Upload
from .bodies import declared_length, refuse_too_large

PIECE = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the small fields around the file


def _counted(scope: Scope, receive: Receive, limit: int) -> Receive:
    """``receive``, refusing (413) once the body passes ``limit`` bytes plus the form's overhead."""
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit + FORM_OVERHEAD:
            await refuse_too_large(scope, receive, limit, message)
        return message

    return counting


async def _pieces(upload: UploadFile) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while piece := await upload.read(PIECE):
        yield piece


async def upload_asset(request: Request) -> JSONResponse:
    """``POST /api/assets`` (multipart ``file``, optional ``email``): answers ``{"assetId", "account"}``."""
    relay = request.app.state.relay
    limit: int = relay.settings.upload_max_bytes
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send the file as multipart/form-data in a field named 'file'")
    length = declared_length(request.scope)
    if length is not None and length > limit + FORM_OVERHEAD:
        await refuse_too_large(request.scope, request.receive, limit)
    bounded = Request(request.scope, _counted(request.scope, request.receive, limit))
    async with bounded.form(max_files=1, max_fields=4) as form:
        upload, email = form.get("file"), form.get("email")
        if not isinstance(upload, UploadFile):
            raise ValidationError("a file is required in the form field 'file'", "file")
        size = upload.size or 0
        if size > limit:
            await refuse_too_large(request.scope, request.receive, limit, {"more_body": False})
        media = upload.content_type or "application/octet-stream"
        if not media.startswith(("image/", "video/")):
            raise ValidationError(f"only images and videos can be assets, not {media}", "file")
        answer = await relay.upload_asset(
            upload.filename or "upload",
            Upload(_pieces(upload), size),
            media,
            email if isinstance(email, str) else None,
        )
    return JSONResponse(answer, status_code=201)
