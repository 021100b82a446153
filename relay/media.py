"""The media types the relay stores and serves inline: videos and raster images, by file extension.

Anything else an artifact URL may name (``.html``, ``.svg``, ``.js`` …) could run script in the
dashboard's origin, so it is neither kept as a file name nor served inline. Pure: no I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

MEDIA_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


def media_type(name: str) -> str | None:
    """The video or image type of a file name by its extension, or ``None`` for anything else."""
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower())
