"""The CLI's HTTP side: talk to a running relay, turn failures into exit codes."""

from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

import click
import httpx

from .states import TERMINAL

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# How long --wait keeps waiting, after the job ended, for its handlers (the download) to finish.
HANDLER_GRACE = 120.0


class Client:
    """A small synchronous client for the relay's JSON API."""

    def __init__(self, server: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.server = server_url(server)
        try:
            self.http = httpx.Client(
                base_url=self.server, headers=headers, timeout=httpx.Timeout(60.0, connect=5.0)
            )
            self.http.build_request("GET", "/")  # a bad host or port shows here, not as a traceback
        except (httpx.InvalidURL, ValueError) as exc:
            fail(f"--server / RELAY_SERVER {server!r} is not a URL of a relay: {exc}", EXIT_USAGE)

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request: ``(status, body)`` whatever the status; exits 3 when the server cannot be reached.

        A POST without a body still says it is JSON (the relay refuses writes that are neither).
        """
        if method == "POST" and not {"json", "files", "data", "content"} & kwargs.keys():
            kwargs["json"] = {}
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            fail(
                f"cannot reach the relay at {self.server} ({type(exc).__name__}); is "
                "`runway-relay serve` running? Set --server or RELAY_SERVER.",
                EXIT_UNREACHABLE,
            )
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        return response.status_code, body

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; exits 3 when the server cannot be reached, 2 on 4xx, 1 on 5xx."""
        status, body = self.request(method, path, **kwargs)
        if status >= 400:
            fail(f"error ({status}): {error_text(body)}", EXIT_USAGE if status < 500 else EXIT_FAILED)
        return body

    def wait(self, job_id: str, interval: float = 0.5) -> dict[str, Any]:
        """Poll until the job ends and its handlers (the download) settle, showing progress.

        A bar on a terminal, plain lines otherwise. Handlers get ``HANDLER_GRACE`` seconds after the
        job's end; a handler still retrying after that is shown as it is.
        """
        tty = sys.stderr.isatty()
        last = None
        ended_at: float | None = None
        while True:
            job = self.call("GET", f"/api/jobs/{job_id}")
            shown = (job["status"], round(job["progress"] or 0, 2))
            if tty:
                bar = "#" * int((job["progress"] or 0) * 30)
                percent = job["progress"] * 100
                click.echo(f"\r[{bar:<30}] {percent:5.1f}% {job['status']:<10}", nl=False, err=True)
            elif shown != last:
                click.echo(f"{job_id} {job['status']} {job['progress'] * 100:.0f}%", err=True)
            last = shown
            if job["status"] in TERMINAL:
                ended_at = ended_at or time.monotonic()
                busy = [h for h in job["handlers"] if h["status"] in ("pending", "running")]
                if not busy or time.monotonic() - ended_at > HANDLER_GRACE:
                    if tty:
                        click.echo("", err=True)
                    return job
            time.sleep(interval)


def server_url(server: str) -> str:
    """``localhost:8000`` → ``http://localhost:8000``: a server given without a scheme is plain HTTP."""
    server = server.strip().rstrip("/")
    return server if "://" in server else f"http://{server}"


def error_text(body: Any) -> str:
    """An error answer in one line: every problem with its field when there are several."""
    if not isinstance(body, dict):
        return str(body)
    problems = body.get("problems")
    if problems:
        return "; ".join(p["error"] if p.get("model") else f"{p['field']}: {p['error']}" for p in problems)
    message = str(body.get("error", "request refused"))
    return f"{body['field']}: {message}" if body.get("field") else message


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    click.echo(message, err=True)
    sys.exit(code)
