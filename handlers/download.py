"""``download``: fetch each artifact of a succeeded job to ``{RELAY_DOWNLOAD_DIR}/{job id}/{name}``.

Streams in chunks (bounded memory) into ``name.part``, resumes an interrupted ``.part`` with ``Range``,
checks the size against ``Content-Length`` / ``fileSize`` and ``RELAY_DOWNLOAD_MAX_BYTES``, fsyncs,
then renames atomically and records the sha256 of the bytes on disk (see :mod:`.fetch`). A second run
for a complete file does nothing. File names are chosen by the relay: the URL's last path segment only
when it is a plain, harmless name, so nothing from the URL can reach outside the job's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..media import media_type
from ..states import Signal
from .base import HandlerContext, HandlerEvent, PermanentError
from .fetch import Fetcher, in_thread, new_client, sha256_of
from .netguard import origin

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def safe_name(url: str, index: int) -> str:
    """A file name chosen by the relay: the URL's last segment only if harmless, else ``video-N.mp4``.

    Harmless means plain characters and a video or image extension (:mod:`..media`): a name such
    as ``page.html`` or ``logo.svg`` would be served as something a browser runs.
    """
    candidate = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if _SAFE_NAME.match(candidate) and ".." not in candidate and media_type(candidate):
        return f"{index + 1}-{candidate}" if index else candidate
    return f"video-{index + 1}.mp4"


def artifact_names(urls: list[str]) -> list[str]:
    """One distinct safe file name per artifact URL, in order."""
    names: list[str] = []
    for index, url in enumerate(urls):
        name = safe_name(url, index)
        names.append(name if name not in names else f"video-{index + 1}.mp4")
    return names


def _complete(path: Path, size: int | None) -> bool:
    return size is not None and path.is_file() and path.stat().st_size == size


class DownloadHandler:
    """Downloads artifacts; see the module docstring."""

    name = "download"
    events = frozenset({Signal.SUCCEEDED})
    max_attempts = 6

    def __init__(
        self, ctx: HandlerContext, max_bytes: int | None = None, trusted: frozenset[str] | None = None
    ) -> None:
        """``trusted`` origins skip the address check (default: the built-in simulator, if used)."""
        self.ctx = ctx
        settings = ctx.settings
        self.max_bytes = max_bytes if max_bytes is not None else settings.download_max_bytes
        self.root = Path(settings.download_dir)
        if trusted is None:
            trusted = frozenset({origin(settings.upstream_root)}) if settings.simulated else frozenset()
        self.trusted = trusted
        # The built-in simulator's artifacts answer only to the relay (behind RELAY_API_KEY too).
        own = settings.simulated and settings.upstream_root == settings.own_url
        token = settings.upstream_token
        self.credentials = {origin(settings.own_url): f"Bearer {token}"} if own and token else {}

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Download every artifact not yet on disk; returns a summary line."""
        artifacts = job.get("artifacts") or []
        if not artifacts:
            return "no artifacts to download"
        if not _SAFE_JOB_ID.match(str(job["id"])):
            raise PermanentError(f"job id {job['id']!r} cannot be used as a folder name")
        folder = self.root / job["id"]
        folder.mkdir(parents=True, exist_ok=True)
        names = artifact_names([a["url"] for a in artifacts])
        allow_private = self.ctx.settings.download_allow_private
        async with new_client(allow_private=allow_private, trusted=self.trusted) as client:
            fetcher = Fetcher(client, max_bytes=self.max_bytes, credentials=self.credentials)
            done = [
                await self._one(fetcher, job, artifact, folder / name)
                for artifact, name in zip(artifacts, names, strict=True)
            ]
        return "; ".join(done)

    async def _one(self, fetcher: Fetcher, job: dict[str, Any], artifact: dict[str, Any], path: Path) -> str:
        expected = artifact.get("size")
        if artifact.get("sha256") and artifact.get("path") == str(path) and _complete(path, expected):
            return f"{path.name} already complete"
        if not artifact.get("sha256") and _complete(path, expected):
            # renamed into place before a crash, but not yet recorded: hash it, don't fetch again
            size, sha = int(expected), await in_thread(sha256_of, path)
        else:
            fetched = await fetcher.fetch(artifact["url"], path, expected)
            size, sha = fetched.size, fetched.sha256
        await self.ctx.store.add_artifact(job["id"], job["attempt"], artifact["url"], str(path), size, sha)
        self.ctx.log.info("downloaded job=%s file=%s bytes=%d sha256=%s", job["id"], path.name, size, sha)
        return f"{path.name} {size} bytes sha256={sha[:12]}"
