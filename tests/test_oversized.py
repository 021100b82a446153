"""Refused bodies are read and dropped before the 413, so the client always gets the answer.

Answering before reading and then closing leaves unread bytes in the kernel's receive buffer, and the
kernel answers those with a reset that can destroy the 413 on its way (nginx's "lingering close").
Clients that send ``Connection: close`` (urllib, many webhook senders) met this about half the time.
"""

from __future__ import annotations

import socket

from conftest import RelayProcess

BODY = b'{"status": "RUNNING", "pad": "' + b"a" * (2 * 1024 * 1024) + b'"}'


def post_raw(relay: RelayProcess, head: bytes, body: bytes, chunked: bool = False) -> bytes:
    """One request on a fresh connection; the status line of the answer (or the error's name)."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        try:
            if chunked:
                sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
                for start in range(0, len(body), 65536):
                    piece = body[start : start + 65536]
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = b""
            while b"\r\n" not in answer:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except OSError as exc:
            return type(exc).__name__.encode()
    return answer.split(b"\r\n", 1)[0]


def test_a_hundred_oversized_callbacks_get_a_hundred_413s(relay: RelayProcess) -> None:
    head = (
        b"POST /callbacks/some-token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
    )
    answers = [post_raw(relay, head, BODY, chunked=n % 4 == 3) for n in range(100)]
    assert answers == [b"HTTP/1.1 413 Request Entity Too Large"] * 100, set(answers)


def test_a_client_that_waits_for_100_continue_is_refused_at_once(relay: RelayProcess) -> None:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        sock.sendall(
            b"POST /callbacks/some-token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY)
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")  # no "100 Continue": the body is not wanted
    assert b"connection: close" in answer.lower()
