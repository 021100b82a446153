"""Stream one artifact to disk: bounded memory, resume with ``Range``, size checks, sha256, atomic rename.

The body is gathered into 1 MiB blocks and written to ``{name}.part`` by a worker thread while the next
block is read (file writes and hashing release the GIL, so network and disk overlap); at most about two
blocks are in memory, and written pages are handed back to the kernel as the file grows. When the
connection breaks, every byte received is still written, so the next try resumes exactly there. The
sha256 is computed while writing; on resume the existing prefix is hashed first, in chunks, from disk.
When complete and size-checked the ``.part`` file is fsynced and renamed.

Every connection (to the first URL, to each redirect target) passes the SSRF guard as it is made,
to the very address it connects to (:mod:`.transport`), which closes the DNS-rebinding gap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin

import httpx

from .answers import check_answer
from .base import PermanentError
from .netguard import BlockedURL, check_scheme, origin
from .transport import guarded_client

CHUNK = 1024 * 1024
MAX_BYTES = 8 * 1024**3
MAX_REDIRECTS = 5
WRITEBACK = 32 * CHUNK
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_IO = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="relay-download")
T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    """A complete file on disk."""

    size: int
    sha256: str


def new_client(*, allow_private: bool, trusted: frozenset[str] = frozenset()) -> httpx.AsyncClient:
    """The HTTP client for artifact downloads (guarded; see :mod:`.transport`)."""
    return guarded_client(allow_private=allow_private, trusted=trusted, timeout=TIMEOUT)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking file work on the download threads."""
    return await asyncio.get_running_loop().run_in_executor(_IO, function, *args)


def hash_prefix(path: Path, length: int) -> Any:
    """A sha256 object fed with the first ``length`` bytes of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        remaining = length
        while remaining > 0:
            block = handle.read(min(CHUNK, remaining))
            if not block:
                raise RuntimeError(f"{path.name} is shorter than {length} bytes")
            digest.update(block)
            remaining -= len(block)
    return digest


def sha256_of(path: Path) -> str:
    """The sha256 of a whole file, read in chunks."""
    return str(hash_prefix(path, path.stat().st_size).hexdigest())


def commit(part: Path, path: Path) -> None:
    """Rename a complete ``.part`` file into place and make the rename durable."""
    os.replace(part, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _Writer:
    """Gathers pieces into blocks; a worker thread writes and hashes one block while the next gathers.

    Only one block is in flight at a time, which keeps writes and hash updates in order and bounds
    memory to about two blocks. Every WRITEBACK bytes the kernel is told to start writing the file out
    and to drop what it already wrote from the page cache: the final fsync then has little left to
    do, and a 1 GB video does not push the database out of the cache.
    """

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle = handle
        self.digest = digest
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.pending: concurrent.futures.Future[None] | None = None
        self.unflushed = 0

    async def add(self, piece: bytes) -> None:
        """Take one piece; when a block is full, wait for the previous one and hand this one over."""
        self.buffer.append(piece)
        self.buffered += len(piece)
        if self.buffered >= CHUNK:
            block = b"".join(self.buffer)
            self.buffer, self.buffered = [], 0
            if self.pending is not None:
                await asyncio.wrap_future(self.pending)
            self.pending = _IO.submit(self._write, block)

    def _write(self, block: bytes) -> None:
        self.handle.write(block)
        self.digest.update(block)
        self.unflushed += len(block)
        if self.unflushed >= WRITEBACK and hasattr(os, "posix_fadvise"):
            self.handle.flush()
            end = self.handle.tell()
            start = max(0, end - 2 * WRITEBACK)  # the previous stretch is written by now: drop it
            os.posix_fadvise(self.handle.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
            self.unflushed = 0

    def finish(self) -> None:
        """(Worker thread.) Wait for the block in flight, write the rest, fsync and close."""
        try:
            if self.pending is not None:
                concurrent.futures.wait([self.pending])
                self.pending.result()
                self.pending = None
            if self.buffer:
                self._write(b"".join(self.buffer))
                self.buffer = []
            self.handle.flush()
            os.fsync(self.handle.fileno())
        finally:
            self.handle.close()


class Fetcher:
    """Downloads URLs to files with a client from :func:`new_client`; see the module docstring."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int = MAX_BYTES,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        """``credentials``: an ``Authorization`` value per origin, sent to that origin only."""
        self.client = client
        self.max_bytes = max_bytes
        self.credentials = dict(credentials or {})

    async def fetch(self, url: str, path: Path, expected: int | None) -> Fetched:
        """Download ``url`` to ``path`` (resuming ``path.part``); ``expected`` is the task's fileSize."""
        if expected is not None and expected > self.max_bytes:
            raise PermanentError(f"artifact is {expected} bytes, over the {self.max_bytes} byte limit")
        part = path.with_name(path.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        if expected is not None and offset > expected:
            part.unlink()
            offset = 0
        try:
            written, digest = await self._download(url, part, offset, expected)
        except PermanentError:
            part.unlink(missing_ok=True)
            raise
        if expected is not None and written != expected:
            part.unlink(missing_ok=True)
            raise RuntimeError(f"got {written} bytes but the task's fileSize is {expected}")
        await in_thread(commit, part, path)
        return Fetched(written, str(digest.hexdigest()))

    async def _download(self, url: str, part: Path, offset: int, expected: int | None) -> tuple[int, Any]:
        response = await self.open(url, offset)
        try:
            if response.status_code == 416 and offset and offset == expected:
                return offset, await in_thread(hash_prefix, part, offset)
            start, total = self._accept(response, part, offset, expected)
            digest = await in_thread(hash_prefix, part, start) if start else hashlib.sha256()
            written = await self._stream(response, part, start, digest)
        finally:
            await response.aclose()
        if total is not None and written != total:
            raise RuntimeError(f"incomplete download: {written} of {total} bytes; the next try resumes")
        return written, digest

    async def open(self, url: str, offset: int = 0) -> httpx.Response:
        """GET ``url`` (streaming), following up to MAX_REDIRECTS redirects; the guard is the client's."""
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_scheme(url)
                credential = self.credentials.get(origin(url))
                headers = {**ranged, "Authorization": credential} if credential else ranged
                request = self.client.build_request("GET", url, headers=headers)
                response = await self.client.send(request, stream=True, follow_redirects=False)
            except BlockedURL as exc:
                raise PermanentError(str(exc)) from None
            if response.is_redirect:
                await response.aclose()
                url = urljoin(url, response.headers["location"])
                continue
            return response
        raise PermanentError(f"more than {MAX_REDIRECTS} redirects")

    def _accept(
        self, response: httpx.Response, part: Path, offset: int, expected: int | None
    ) -> tuple[int, int | None]:
        """Check the answer; return where writing starts and the total size, if known."""
        status = response.status_code
        if status == 416 or (status == 206 and not _range_starts_at(response, offset)):
            part.unlink(missing_ok=True)
            raise RuntimeError(f"the server refused to resume at byte {offset}; the next try starts over")
        _raise_for_status(response)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise PermanentError(f"the server sent the artifact encoded ({encoding}) despite identity")
        if status == 206:
            start, total = offset, _range_total(response)
        else:
            length = response.headers.get("content-length", "")
            start, total = 0, int(length) if length.isdigit() else None
            if total is None and "content-range" in response.headers:
                total = _range_total(response)
        if total is not None and total > self.max_bytes:
            raise PermanentError(f"artifact is {total} bytes, over the {self.max_bytes} byte limit")
        if expected is not None and total is not None and total != expected:
            raise RuntimeError(f"the server sends {total} bytes but the task's fileSize is {expected}")
        return start, total

    async def _stream(self, response: httpx.Response, part: Path, start: int, digest: Any) -> int:
        """Write the body from ``start``; one block is written while the next one is read."""
        handle = part.open("r+b" if start else "wb")
        handle.seek(start)
        handle.truncate()
        writer = _Writer(handle, digest)
        written = start
        try:
            async for piece in response.aiter_raw():
                written += len(piece)
                if written > self.max_bytes:
                    raise PermanentError(f"artifact is over the {self.max_bytes} byte limit")
                await writer.add(piece)
        except BaseException:
            with contextlib.suppress(Exception):  # keep what arrived, so the next try resumes there
                await in_thread(writer.finish)
            raise
        await in_thread(writer.finish)
        return written


def _range_starts_at(response: httpx.Response, offset: int) -> bool:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    return bool(match) and int(match[1]) == offset


def _range_total(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    return int(match[3]) if match and match[3] != "*" else None


def _raise_for_status(response: httpx.Response) -> None:
    """Map an answer other than 200/206 to retry later, retry after a pause, or give up."""
    check_answer(response, "GET artifact", ok=(200, 206), detail=False)
