"""Connection limits and read timeouts of ``runway-relay serve`` (slowloris, fd exhaustion, SSE).

Each test starts a real relay with short limits and plays the slow or greedy client over raw sockets.
Waits are bounded generously: a test waits for something to happen, never bets that it will not.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from conftest import RelayProcess, free_port, relay_env


def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def connect(relay: RelayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while piece := sock.recv(65536):
        data += piece
    return data


def one_answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length, on a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def open_fds(relay: RelayProcess) -> int:
    assert relay.proc is not None
    return len(list(Path(f"/proc/{relay.proc.pid}/fd").iterdir()))


def test_a_client_that_never_finishes_its_headers_is_cut_off(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_HEADER_TIMEOUT="0.5")
    with connect(relay) as silent, connect(relay) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and nothing more
        assert read_all(slow).startswith(b"HTTP/1.1 408 ")
        assert read_all(silent).startswith(b"HTTP/1.1 408 ")  # connected, never said a word
    with connect(relay) as kept:  # a client that does finish is served, on a kept-alive connection
        for _ in range(2):
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert one_answer(kept).startswith(b"HTTP/1.1 200 ")


def test_a_client_that_stalls_in_its_body_gets_408(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_BODY_TIMEOUT="0.5")
    with connect(relay) as sock:
        sock.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model":'
        )
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert "stopped arriving" in json.loads(body)["error"]
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []


def test_connections_past_the_limit_are_refused_and_fds_stay_bounded(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_MAX_CONNECTIONS="20", RELAY_HEADER_TIMEOUT="600")
    before = open_fds(relay)
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(connect(relay)) for _ in range(200)]
        for sock in socks:
            sock.settimeout(0.0)

        def refused() -> list[bytes]:
            answers = []
            for sock in socks:
                with contextlib.suppress(BlockingIOError):
                    answers.append(sock.recv(65536))
            return answers if len(answers) >= 180 else []

        answers = until(refused)
        assert all(a.startswith(b"HTTP/1.1 503 ") or a == b"" for a in answers)
        assert open_fds(relay) <= before + 20 + 5
    assert until(lambda: httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 200)


def test_serve_raises_its_open_file_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lowered() -> None:  # in the child, before exec: start with a small soft limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    port = free_port()
    command = [sys.executable, "-m", "runway_relay", "serve", "--port", str(port)]
    log = (tmp_path / "relay.log").open("wb")
    proc = subprocess.Popen(command, env=relay_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lowered)  # fmt: skip
    try:
        assert until(lambda: _healthy(port))
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def stream(relay: RelayProcess, path: str) -> Iterator[httpx.Response]:
    with httpx.stream("GET", f"{relay.url}{path}", timeout=30) as response:
        yield response


def test_event_streams_are_capped(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_SSE_MAX="2")
    with stream(relay, "/api/events") as first, stream(relay, "/api/events") as second:
        assert first.status_code == second.status_code == 200
        third = relay.api("GET", "/api/events")
        assert third.status_code == 503 and "RELAY_SSE_MAX" in third.json()["error"]
        assert third.headers["retry-after"]

    def both_back() -> bool:  # closed streams give their places back once the relay sees them go
        with stream(relay, "/api/events") as again, stream(relay, "/api/events") as more:
            return again.status_code == more.status_code == 200

    assert until(both_back)
