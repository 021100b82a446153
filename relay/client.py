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
        self.server = server.rstrip("/")
        self.http = httpx.Client(
            base_url=self.server, headers=headers, timeout=httpx.Timeout(60.0, connect=5.0)
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; exits 3 when the server cannot be reached, 2 on 4xx, 1 on 5xx."""
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
        if response.status_code >= 400:
            message = body.get("error", response.reason_phrase) if isinstance(body, dict) else body
            field = body.get("field") if isinstance(body, dict) else None
            problems = body.get("problems") if isinstance(body, dict) else None
            if problems:
                message = "; ".join(f"{p['field']}: {p['error']}" for p in problems)
            elif field:
                message = f"{field}: {message}"
            fail(
                f"error ({response.status_code}): {message}",
                EXIT_USAGE if response.status_code < 500 else EXIT_FAILED,
            )
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


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    click.echo(message, err=True)
    sys.exit(code)
