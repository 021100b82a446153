"""``POST /api/assets``: uploads past ``RELAY_UPLOAD_MAX_BYTES`` get 413, and none is held in memory.

The relay runs as a real ``runway-relay serve`` process; its peak resident memory (``VmHWM``) is read
from ``/proc`` before and after, while this process streams the multipart body from a generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RelayProcess

MiB = 1024 * 1024
BOUNDARY = "relay-test-boundary"
PIECE = b"\x00" * MiB


def peak_rss(relay: RelayProcess) -> int:
    """The relay process's peak resident set so far, in bytes."""
    assert relay.proc is not None
    for line in Path(f"/proc/{relay.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def multipart(mib: int, name: str = "clip.mp4") -> tuple[bytes, bytes, int]:
    """The head and tail of a one-file multipart body around ``mib`` MiB of zeros, and its length."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + mib * MiB + len(tail)


def upload(relay: RelayProcess, mib: int, *, sized: bool = True) -> httpx.Response:
    """Stream a ``mib`` MiB upload; without ``sized`` it goes chunked, with no Content-Length."""
    head, tail, length = multipart(mib)

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(mib):
            yield PIECE
        yield tail

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if sized:
        headers["content-length"] = str(length)
    return httpx.post(f"{relay.url}/api/assets", content=body(), headers=headers, timeout=120)


@pytest.fixture
def warm(relay: RelayProcess) -> RelayProcess:
    """The relay after one small upload, so what one upload costs is already paid for."""
    answer = upload(relay, 1)
    assert answer.status_code == 201, answer.text
    return relay


def test_an_upload_past_the_limit_is_413_and_memory_stays_flat(warm: RelayProcess) -> None:
    before = peak_rss(warm)
    for sized in (True, False):
        answer = upload(warm, 200, sized=sized)
        assert answer.status_code == 413, answer.text
        assert "104857600" in answer.json()["error"]  # the default limit, 100 MiB, said in bytes
    grown = peak_rss(warm) - before
    assert grown < 40 * MiB, grown
    assert warm.api("GET", "/healthz").status_code == 200


def test_an_upload_within_the_limit_streams_through(warm: RelayProcess) -> None:
    before = peak_rss(warm)
    answer = upload(warm, 90)
    assert answer.status_code == 201, answer.text
    assert answer.json()["assetId"]
    grown = peak_rss(warm) - before
    assert grown < 40 * MiB, grown


def test_the_limit_is_configurable(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_UPLOAD_MAX_BYTES=str(2 * MiB))
    assert upload(relay, 1).status_code == 201
    refused = upload(relay, 3)
    assert refused.status_code == 413 and str(2 * MiB) in refused.json()["error"]
