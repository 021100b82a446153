"""Test helper: a real PostgreSQL server, and a fresh database on it for each test that asks.

The server is, in order: ``RELAY_TEST_PG`` (an admin URL), the local server on 127.0.0.1:5432 (user
``postgres``), or — on a machine with no PostgreSQL at all — a throwaway server started from the
``pgserver`` wheel the ``[test]`` extra installs. When none can be had the PostgreSQL tests FAIL with
the reason: they never skip silently.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit

import psycopg

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
_admin: str | None = None
_why = ""


def _reachable(url: str) -> bool:
    global _why
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error as exc:
        _why += f"\n  {redact(url)}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        return False


def _embedded() -> str | None:
    """A private server from the ``pgserver`` wheel (stopped when the test run ends)."""
    global _why
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        _why += "\n  pgserver (the embedded fallback) is not installed"
        return None
    folder = tempfile.mkdtemp(prefix="relay-pg-")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(server.get_uri())


def admin_url() -> str:
    """An admin URL of a running server; raises RuntimeError saying why when there is none."""
    global _admin
    if _admin is not None:
        return _admin
    given = os.environ.get("RELAY_TEST_PG")
    for url in [given] if given else [LOCAL]:
        if _reachable(url):
            _admin = url
            return url
    if not given:
        embedded = _embedded()
        if embedded and _reachable(embedded):
            _admin = embedded
            return embedded
    raise RuntimeError(
        "the PostgreSQL tests cannot run: no server found." + _why + "\nStart PostgreSQL "
        "(pg_ctlcluster --skip-systemctl-redirect 15 main start), or set RELAY_TEST_PG to an admin URL."
    )


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def create_database() -> str:
    """A new, empty database; its URL."""
    name = f"relay_test_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return _with_db(admin_url(), name)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (its connections are ended first)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username
    return urlunsplit((parts.scheme, f"{user}@{netloc}" if user else netloc, parts.path, parts.query, ""))
