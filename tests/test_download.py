"""The download handler against real local servers: resume after a cut, size checks, limits, the SSRF
guard on the first URL and on redirects, pinning to the vetted address, and safe file names."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from runway_relay.handlers import PermanentError, netguard, transport
from runway_relay.handlers.download import DownloadHandler, artifact_names, safe_name
from runway_relay.handlers.netguard import BlockedURL, origin
from runway_relay.handlers.transport import GuardedBackend
from runway_relay.taskparse import ArtifactRef

from servers import serve_in_thread
from test_handlers_support import event_for, handler_context, succeeded_job

pytestmark = pytest.mark.anyio
DATA = os.urandom(3 * 1024 * 1024 + 123)
CUT = 1024 * 1024 + 77


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Blob:
    """Serves ``data`` with Range support; can cut the first answer short or ignore Range."""

    data: bytes = DATA
    cut_first_at: int | None = None
    honour_range: bool = True
    length_header: bool = True
    ranges: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def endpoint(self, request: Request) -> Response:
        wanted = request.headers.get("range")
        with self.lock:
            self.ranges.append(wanted)
            self.hosts.append(request.headers["host"])
            first = len(self.ranges) == 1
        size, start, status, headers = len(self.data), 0, 200, {}
        if wanted and self.honour_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= size:
                return Response(b"", 416, headers={"content-range": f"bytes */{size}"})
            status, headers["content-range"] = 206, f"bytes {start}-{size - 1}/{size}"
        if self.length_header:
            headers["content-length"] = str(size - start)
        stop = self.cut_first_at if first and self.cut_first_at is not None else size
        return StreamingResponse(self._chunks(start, stop, stop < size), status, headers=headers)

    async def _chunks(self, start: int, stop: int, cut: bool) -> Any:
        for offset in range(start, stop, 65536):
            piece = self.data[offset : min(offset + 65536, stop)]
            with self.lock:
                self.served += len(piece)
            yield piece
        if cut:
            raise ConnectionAbortedError("cut on purpose")

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint)])


def serve(blob: Blob) -> Any:
    return serve_in_thread(blob.app)


async def test_an_interrupted_download_resumes_with_range(tmp_path: Path) -> None:
    blob = Blob(cut_first_at=CUT)
    with serve(blob) as url:
        async with handler_context(tmp_path, download_allow_private=True) as ctx:
            job = await succeeded_job(ctx.store, (ArtifactRef(f"{url}/v/clip.mp4", len(DATA)),))
            handler = DownloadHandler(ctx)
            with pytest.raises(httpx.RemoteProtocolError):
                await handler.run(job, event_for(job))
            part = tmp_path / "downloads" / job["id"] / "clip.mp4.part"
            assert part.stat().st_size == CUT
            output = await handler.run(job, event_for(job, attempt=2))
            job = await ctx.store.get_job(job["id"])
            again = await handler.run(job, event_for(job, attempt=1))
    path = tmp_path / "downloads" / job["id"] / "clip.mp4"
    digest = hashlib.sha256(DATA).hexdigest()
    assert blob.ranges == [None, f"bytes={CUT}-"] and blob.served == len(DATA)
    assert path.read_bytes() == DATA and not part.exists()
    assert job["artifacts"][0] | {"preview_url": None} == {
        "url": f"{url}/v/clip.mp4",
        "path": str(path),
        "size": len(DATA),
        "sha256": digest,
        "preview_url": None,
    }
    assert output is not None and digest[:12] in output
    assert again == "clip.mp4 already complete"


async def test_a_complete_part_file_is_finished_on_416(tmp_path: Path) -> None:
    blob = Blob()
    with serve(blob) as url:
        async with handler_context(tmp_path, download_allow_private=True) as ctx:
            job = await succeeded_job(ctx.store, (ArtifactRef(f"{url}/a.mp4", len(DATA)),))
            folder = tmp_path / "downloads" / job["id"]
            folder.mkdir(parents=True)
            (folder / "a.mp4.part").write_bytes(DATA)
            await DownloadHandler(ctx).run(job, event_for(job))
            job = await ctx.store.get_job(job["id"])
    assert blob.ranges == [f"bytes={len(DATA)}-"] and blob.served == 0
    assert job["artifacts"][0]["sha256"] == hashlib.sha256(DATA).hexdigest()


async def test_a_server_that_ignores_range_restarts_from_zero(tmp_path: Path) -> None:
    blob = Blob(honour_range=False)
    with serve(blob) as url:
        async with handler_context(tmp_path, download_allow_private=True) as ctx:
            job = await succeeded_job(ctx.store, (ArtifactRef(f"{url}/a.mp4", len(DATA)),))
            folder = tmp_path / "downloads" / job["id"]
            folder.mkdir(parents=True)
            (folder / "a.mp4.part").write_bytes(b"x" * 1000)
            await DownloadHandler(ctx).run(job, event_for(job))
    assert (folder / "a.mp4").read_bytes() == DATA and blob.ranges == ["bytes=1000-"]


async def test_a_file_renamed_before_a_crash_is_recorded_without_fetching(tmp_path: Path) -> None:
    async with handler_context(tmp_path, download_allow_private=True) as ctx:
        job = await succeeded_job(ctx.store, (ArtifactRef("http://127.0.0.1:9/a.mp4", len(DATA)),))
        folder = tmp_path / "downloads" / job["id"]
        folder.mkdir(parents=True)
        (folder / "a.mp4").write_bytes(DATA)
        await DownloadHandler(ctx).run(job, event_for(job))
        job = await ctx.store.get_job(job["id"])
    assert job["artifacts"][0]["sha256"] == hashlib.sha256(DATA).hexdigest()


async def test_sizes_are_checked_against_file_size_and_the_limit(tmp_path: Path) -> None:
    with serve(Blob()) as url, serve(Blob(length_header=False)) as chunked:
        async with handler_context(tmp_path, download_allow_private=True) as ctx:
            wrong = await succeeded_job(ctx.store, (ArtifactRef(f"{url}/a.mp4", 100),))
            with pytest.raises(RuntimeError, match="fileSize is 100"):
                await DownloadHandler(ctx).run(wrong, event_for(wrong))
            for base in (url, chunked):
                big = await succeeded_job(ctx.store, (ArtifactRef(f"{base}/a.mp4"),))
                with pytest.raises(PermanentError, match="1000 byte limit"):
                    await DownloadHandler(ctx, max_bytes=1000).run(big, event_for(big))
                assert not list((tmp_path / "downloads" / big["id"]).iterdir())
    assert not list((tmp_path / "downloads" / wrong["id"]).iterdir())


async def test_loopback_and_redirects_to_it_are_refused(tmp_path: Path) -> None:
    target = Blob()
    with serve(target) as inside:

        async def redirect(request: Request) -> Response:
            return RedirectResponse(f"{inside}/stolen.mp4", 302)

        with serve_in_thread(Starlette(routes=[Route("/{p:path}", redirect)])) as outside:
            async with handler_context(tmp_path) as ctx:
                direct = await succeeded_job(ctx.store, (ArtifactRef(f"{inside}/a.mp4"),))
                with pytest.raises(PermanentError, match="private or loopback"):
                    await DownloadHandler(ctx).run(direct, event_for(direct))
                job = await succeeded_job(ctx.store, (ArtifactRef(f"{outside}/a.mp4"),))
                handler = DownloadHandler(ctx, trusted=frozenset({origin(outside)}))
                with pytest.raises(PermanentError, match="private or loopback"):
                    await handler.run(job, event_for(job))
    assert target.ranges == []


async def test_the_guard_refuses_private_metadata_and_odd_schemes() -> None:
    backend = GuardedBackend(allow_private=False)
    for host, port in (
        ("169.254.169.254", 80),
        ("10.0.0.8", 80),
        ("::1", 8080),
        ("::ffff:127.0.0.1", 80),
        ("localhost", 80),
    ):
        with pytest.raises(BlockedURL):  # refused before any connection is tried
            await backend.connect_tcp(host, port, timeout=5)
    with pytest.raises(BlockedURL, match="only http"):
        netguard.check_scheme("file:///etc/passwd")
    with pytest.raises(BlockedURL, match="unix sockets"):
        await backend.connect_unix_socket("/run/docker.sock")
    # Allowed unchecked: private addresses when configured, and trusted origins (the simulator).
    assert await netguard.vetted_addresses("10.0.0.8", 80, allow_private=True) == ["10.0.0.8"]
    trusted = GuardedBackend(allow_private=False, trusted=frozenset({"http://127.0.0.1:8000"})).trusted
    assert await netguard.vetted_addresses("127.0.0.1", 8000, allow_private=False, trusted=trusted) == [
        "127.0.0.1"
    ]
    with pytest.raises(BlockedURL):
        await netguard.vetted_addresses("127.0.0.1", 8001, allow_private=False, trusted=trusted)


async def test_the_connection_goes_to_the_vetted_address(tmp_path: Path, monkeypatch: Any) -> None:
    """A name is resolved once and the request is sent to that address: a second, rebinding answer
    is never asked for (``cdn.example.test`` does not resolve at all outside this test)."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(netguard, "resolve", resolve)
    monkeypatch.setattr(netguard, "is_public", lambda address: True)
    blob = Blob()
    with serve(blob) as url:
        port = url.rsplit(":", 1)[1]
        async with handler_context(tmp_path) as ctx:
            job = await succeeded_job(ctx.store, (ArtifactRef(f"http://cdn.example.test:{port}/v.mp4"),))
            await DownloadHandler(ctx).run(job, event_for(job))
    assert lookups == ["cdn.example.test"] and blob.hosts == [f"cdn.example.test:{port}"]
    assert (tmp_path / "downloads" / job["id"] / "v.mp4").read_bytes() == DATA


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_to_the_vetted_address_still_checks_the_certificate(
    tmp_path: Path, monkeypatch: Any
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cdn.example.test"]
    names = ["-addext", "subjectAltName=DNS:cdn.example.test"]
    subprocess.run(
        ["openssl", *request, *names, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    monkeypatch.setattr(netguard, "resolve", _resolve_to_loopback)
    monkeypatch.setattr(netguard, "is_public", lambda address: True)
    monkeypatch.setattr(transport, "_ssl_context", lambda: ssl.create_default_context(cafile=str(cert)))
    blob = Blob()
    with serve_in_thread(blob.app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        port = url.rsplit(":", 1)[1]
        async with handler_context(tmp_path) as ctx:
            good = await succeeded_job(ctx.store, (ArtifactRef(f"https://cdn.example.test:{port}/v.mp4"),))
            await DownloadHandler(ctx).run(good, event_for(good))
            other = await succeeded_job(ctx.store, (ArtifactRef(f"https://other.example.test:{port}/v.mp4"),))
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await DownloadHandler(ctx).run(other, event_for(other))
    assert (tmp_path / "downloads" / good["id"] / "v.mp4").read_bytes() == DATA
    assert blob.hosts == [f"cdn.example.test:{port}"]


async def _resolve_to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_file_names_come_from_the_relay(tmp_path: Path) -> None:
    assert safe_name("https://cdn.test/a/b/clip.mp4?sig=1", 0) == "clip.mp4"
    assert safe_name("https://cdn.test/a/clip.mp4", 1) == "2-clip.mp4"
    for hostile in ("https://x/..%2F..%2Fetc%2Fpasswd", "https://x/.hidden", "https://x/a.mp4.part"):
        assert safe_name(hostile, 0) == "video-1.mp4"
    assert artifact_names(["https://x/2-a.mp4", "https://x/a.mp4"]) == ["2-a.mp4", "video-2.mp4"]
    async with handler_context(tmp_path) as ctx:
        job = {"id": "../../etc", "attempt": 1, "artifacts": [{"url": "https://x/a.mp4"}]}
        with pytest.raises(PermanentError, match="folder name"):
            await DownloadHandler(ctx).run(job, event_for({"handlers": []}))
