"""Download benchmark: the relay's download path against a raw httpx stream to /dev/null, same run.

    .venv/bin/python bench/download.py                  # 1 GiB, 3 rounds of each path, ~30 s
    .venv/bin/python bench/download.py --size-mb 256 --rounds 1

A bare ASGI app on uvicorn, in its own process on 127.0.0.1, generates the artifact on the fly (a
1 MiB block repeated; nothing large is stored). Each measurement runs in a fresh process that reports
its peak RSS (``VmHWM`` in ``/proc/self/status``) just before and just after the download, so the
difference is the memory the download itself needed.

- ``raw``: ``httpx.AsyncClient.stream`` + ``aiter_raw()`` written to ``/dev/null``;
- ``relay``: :class:`runway_relay.handlers.fetch.Fetcher` (the download handler's code: SSRF guard,
  ``.part`` file, sha256 while writing, fsync, atomic rename) into a temporary folder, deleted after,
  on one CPU as ``runway-relay serve`` runs by default (``RELAY_CPU=auto``);
- ``client`` (for reference): the relay's download client (1 MiB reads) streamed to ``/dev/null``,
  which shows what writing, hashing and fsync cost on this machine.

Goals: RSS growth under 32 MB; relay throughput at least 0.9× the raw stream's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
LABELS = {
    "raw": "raw httpx stream → /dev/null",
    "relay": "relay download (Fetcher → disk)",
    "client": "relay's download client → /dev/null",
}
BLOCK = hashlib.sha256(b"runway-relay bench").digest() * (MIB // 32)


# -- the server (its own process) ---------------------------------------------------------------


def serve(port: int, size: int) -> None:
    """Serve ``size`` bytes at every path, with a Content-Length, generated from BLOCK."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers = [(b"content-length", str(size).encode()), (b"content-type", b"video/mp4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        while sent < size:
            piece = BLOCK if size - sent >= len(BLOCK) else BLOCK[: size - sent]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


# -- one measurement (its own process) ----------------------------------------------------------


def vm_kib(field: str) -> int:
    """A ``Vm*`` line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


async def _raw(url: str, guarded: bool = False) -> tuple[int, str | None]:
    import httpx

    from runway_relay.handlers.fetch import new_client

    async with new_client(allow_private=True) if guarded else httpx.AsyncClient(timeout=60) as client:
        with open(os.devnull, "wb") as sink:
            async with client.stream("GET", url) as response:
                received = 0
                async for piece in response.aiter_raw():
                    sink.write(piece)
                    received += len(piece)
    return received, None


async def _relay(url: str, size: int) -> tuple[int, str | None]:
    from runway_relay.handlers.fetch import Fetcher, new_client

    folder = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        async with new_client(allow_private=True) as client:
            fetched = await Fetcher(client).fetch(url, folder / "artifact.mp4", size)
        return fetched.size, fetched.sha256
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(mode: str, url: str, size: int) -> None:
    """Download once and print seconds, bytes, sha256 and VmHWM before/after as JSON."""
    import httpx  # noqa: F401  (imported before the baseline, like the relay has it loaded)

    from runway_relay import affinity
    from runway_relay.handlers import fetch  # noqa: F401

    if mode != "raw":
        affinity.pin(affinity.AUTO)  # on one CPU, as `runway-relay serve` runs by default
    before = vm_kib("VmHWM")
    started = time.perf_counter()
    received, sha = asyncio.run(_relay(url, size) if mode == "relay" else _raw(url, mode == "client"))
    seconds = time.perf_counter() - started
    after = vm_kib("VmHWM")
    print(json.dumps({"seconds": seconds, "bytes": received, "sha256": sha, "hwm_kib": [before, after]}))


# -- the driver ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError("the bench server did not start")


def _expected_sha(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        digest.update(BLOCK)
    digest.update(BLOCK[: size % len(BLOCK)])
    return digest.hexdigest()


def _run(mode: str, url: str, size: int) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    out = subprocess.run(
        [sys.executable, me, "--measure", mode, url, str(size)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def main() -> None:
    """Run the rounds and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mb * MIB
    port = _free_port()
    me = str(Path(__file__).resolve())
    server = subprocess.Popen([sys.executable, me, "--serve", str(port), str(size)])
    try:
        _wait_for(port)
        url = f"http://127.0.0.1:{port}/artifact.mp4"
        results: dict[str, list[dict[str, Any]]] = {"raw": [], "relay": [], "client": []}
        for _ in range(args.rounds):
            for mode in ("raw", "relay", "client"):
                results[mode].append(_run(mode, url, size))
    finally:
        server.terminate()
        server.wait(timeout=10)
    report(results, size)


def report(results: dict[str, list[dict[str, Any]]], size: int) -> None:
    """Print the table: median throughput, worst RSS growth, sha256 check."""
    expected = _expected_sha(size)
    rows, speed, growth = [], {}, {}
    for mode, label in LABELS.items():
        runs = results[mode]
        assert all(r["bytes"] == size for r in runs), f"{mode}: short download"
        speed[mode] = statistics.median(size / MIB / r["seconds"] for r in runs)
        growth[mode] = max(r["hwm_kib"][1] - r["hwm_kib"][0] for r in runs) / 1024
        ok = "-" if mode != "relay" else ("yes" if all(r["sha256"] == expected for r in runs) else "NO")
        rows.append((label, f"{speed[mode]:.0f}", f"{growth[mode]:.1f}", ok))
    print(f"\n{size // MIB} MiB artifact, {len(results['raw'])} round(s) each, {os.cpu_count()} CPU(s)\n")
    header = ("path", "MiB/s (median)", "peak RSS growth (MiB)", "sha256 ok")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    ratio = speed["relay"] / speed["raw"]
    print(f"\nthroughput ratio relay/raw: {ratio:.2f}x (goal >= 0.9x)")
    print(f"relay peak RSS growth: {growth['relay']:.1f} MiB (goal < 32 MB)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
