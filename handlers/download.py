"""``download``: fetch each artifact of a succeeded job to ``{RELAY_DOWNLOAD_DIR}/{job id}/{name}``.

Streams in chunks (bounded memory) into ``name.part``, resumes an interrupted ``.part`` with ``Range``,
checks the size against ``Content-Length`` / ``fileSize``, fsyncs, then renames atomically and records
the sha256 of the bytes on disk. A second run for a complete file does nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from ..states import Signal
from .base import HandlerContext, HandlerEvent, PermanentError
from .netguard import BlockedURL, check_url, origin

CHUNK = 1024 * 1024
MAX_BYTES = 8 * 1024**3
MAX_REDIRECTS = 5
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def safe_name(url: str, index: int) -> str:
    """A file name chosen by the relay: the URL's last segment only if harmless, else ``video-N.mp4``."""
    candidate = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if _SAFE_NAME.match(candidate) and ".." not in candidate and not candidate.endswith(".part"):
        return f"{index + 1}-{candidate}" if index else candidate
    return f"video-{index + 1}.mp4"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class DownloadHandler:
    """Downloads artifacts; see the module docstring."""

    name = "download"
    events = frozenset({Signal.SUCCEEDED})
    max_attempts = 6

    def __init__(self, ctx: HandlerContext, max_bytes: int = MAX_BYTES) -> None:
        self.ctx = ctx
        self.max_bytes = max_bytes
        settings = ctx.settings
        self.root = Path(settings.download_dir)
        self.trusted = frozenset({origin(settings.upstream_root)}) if settings.simulated else frozenset()

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Download every artifact not yet on disk; returns a summary line."""
        artifacts = job.get("artifacts") or []
        if not artifacts:
            return "no artifacts to download"
        folder = self.root / job["id"]
        folder.mkdir(parents=True, exist_ok=True)
        done = []
        for index, artifact in enumerate(artifacts):
            path = folder / safe_name(artifact["url"], index)
            if artifact.get("sha256") and path.is_file() and path.stat().st_size == artifact.get("size"):
                done.append(f"{path.name} already complete")
                continue
            size, sha = await self._fetch(artifact["url"], path, artifact.get("size"))
            await self.ctx.store.add_artifact(
                job["id"], job["attempt"], artifact["url"], str(path), size, sha
            )
            done.append(f"{path.name} {size} bytes sha256={sha[:12]}")
        return "; ".join(done)

    async def _open(self, url: str, offset: int) -> httpx.Response:
        """GET with the SSRF guard checked on the first URL and on every redirect."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                await check_url(
                    url, allow_private=self.ctx.settings.download_allow_private, trusted=self.trusted
                )
            except BlockedURL as exc:
                raise PermanentError(str(exc)) from None
            request = self.ctx.http.build_request("GET", url, headers=headers, timeout=TIMEOUT)
            response = await self.ctx.http.send(request, stream=True, follow_redirects=False)
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                url = urljoin(url, response.headers["location"])
                continue
            return response
        raise PermanentError(f"more than {MAX_REDIRECTS} redirects")

    async def _fetch(self, url: str, path: Path, expected: int | None) -> tuple[int, str]:
        part = path.with_name(path.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        response = await self._open(url, offset)
        try:
            if response.status_code == 416 and expected is not None and offset == expected:
                return self._finish(part, path, offset, expected)
            if response.status_code not in (200, 206):
                message = f"GET artifact answered HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    raise PermanentError(message)
                raise RuntimeError(message)
            if response.status_code == 200:
                offset = 0
            total = self._total(response, offset, expected)
            with part.open("r+b" if offset else "wb") as handle:
                handle.seek(offset)
                handle.truncate()
                written = offset
                async for chunk in response.aiter_bytes(CHUNK):
                    written += len(chunk)
                    if written > self.max_bytes:
                        raise PermanentError(f"artifact is over the {self.max_bytes} byte limit")
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            await response.aclose()
        if total is not None and written != total:
            raise RuntimeError(f"incomplete download: {written} of {total} bytes")
        return self._finish(part, path, written, expected)

    def _total(self, response: httpx.Response, offset: int, expected: int | None) -> int | None:
        length = response.headers.get("content-length")
        total = offset + int(length) if length and length.isdigit() else expected
        if total is not None and total > self.max_bytes:
            raise PermanentError(f"artifact is {total} bytes, over the {self.max_bytes} limit")
        if expected is not None and total is not None and total != expected:
            raise RuntimeError(f"server sends {total} bytes but the task said {expected}")
        return total

    def _finish(self, part: Path, path: Path, size: int, expected: int | None) -> tuple[int, str]:
        if expected is not None and size != expected:
            raise RuntimeError(f"size {size} does not match the task's fileSize {expected}")
        os.replace(part, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return size, _sha256_of(path)
