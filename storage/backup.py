"""``runway-relay backup FILE``: a consistent copy of ``RELAY_DB`` while a relay serves it.

SQLite: SQLite's online backup API copies the database in ONE step from a read transaction. The file
is in WAL mode, so that read holds off none of the serving relay's writes (they go on into the WAL
while the copy reads its snapshot). Copying in several steps would not help here: a step-wise backup
starts over whenever another process writes between two steps, so under a steady stream of callbacks
it might never finish. The copy is written beside FILE, switched to a plain rollback journal (one
self-contained file, no ``-wal``/``-shm``), checked with ``PRAGMA integrity_check``, and only then
renamed to FILE.

PostgreSQL: ``pg_dump --format=custom`` (one snapshot), checked with ``pg_restore --list``. The
password never appears on a command line or in a message: it goes to ``pg_dump`` in ``PGPASSWORD``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import is_postgres


class BackupError(Exception):
    """The backup could not be made or did not check out; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    """What was written: the file, its size in bytes, and how many jobs the copy holds (``None``
    when the format does not say without a restore: a ``pg_dump`` archive)."""

    path: Path
    size: int
    jobs: int | None
    detail: str

    def summary(self) -> str:
        """One line for the operator."""
        jobs = "" if self.jobs is None else f", {self.jobs} jobs"
        return f"backup written: {self.path} ({_size(self.size)}{jobs}; {self.detail})"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def backup(url: str, target: Path, *, force: bool = False) -> Backup:
    """Copy the database ``url`` (``RELAY_DB``) to ``target``; refuse to replace it unless ``force``."""
    target = target.expanduser()
    if target.exists() and not force:
        raise BackupError(f"{target} already exists; choose another file, or give --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    part = target.with_name(f".{target.name}.part")
    with contextlib.suppress(FileNotFoundError):
        part.unlink()
    try:
        part.touch(mode=0o600)  # the copy holds what the database holds: its owner's eyes only
        made = _pg_dump(url, part) if is_postgres(url) else _sqlite_copy(url, part)
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return Backup(target, target.stat().st_size, made[0], made[1])


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_copy(path: str, part: Path) -> tuple[int, str]:
    if not Path(path).is_file():
        raise BackupError(f"there is no SQLite database at {path} (check RELAY_DB)")
    try:
        # mode=rw: never create an empty database where RELAY_DB points by mistake
        source = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None
    try:
        with contextlib.closing(sqlite3.connect(part)) as copy:
            source.backup(copy)  # one step: see the module docstring
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(
            f"the copy of {path} failed: {exc} (is there room beside the backup file?)"
        ) from None
    finally:
        source.close()
    return _check_sqlite(part)


def _check_sqlite(path: Path) -> tuple[int, str]:
    """Open the copy as a restore would; ``(jobs, "integrity ok")`` or :class:`BackupError`."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as copy:
            verdict = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            jobs = int(copy.execute("select count(*) from jobs").fetchone()[0])
    except sqlite3.Error as exc:
        raise BackupError(f"the copy does not open as a relay database: {exc}") from None
    if verdict != ["ok"]:
        raise BackupError("the copy failed its integrity check: " + "; ".join(verdict[:5]))
    return jobs, "integrity ok"


# -- PostgreSQL ---------------------------------------------------------------------------------


def _without_password(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment that carries it instead."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        info = conninfo_to_dict(url)
    except Exception:
        raise BackupError("RELAY_DB is not a PostgreSQL URL pg_dump can read") from None
    password = info.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in info.items() if v is not None}), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed, and a PostgreSQL RELAY_DB is backed up with it: install the "
            "PostgreSQL client tools of your server's version (Debian: apt install postgresql-client)"
        )
    return found


def _pg_dump(url: str, part: Path) -> tuple[None, str]:
    conninfo, env = _without_password(url)
    dump, restore = _tool("pg_dump"), _tool("pg_restore")
    done = subprocess.run(
        [dump, "--format=custom", "--file", str(part), "--dbname", conninfo],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {_last_line(done.stderr)}")
    listed = subprocess.run([restore, "--list", str(part)], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise BackupError(f"pg_restore cannot read the archive pg_dump wrote: {_last_line(listed.stderr)}")
    entries = [line for line in listed.stdout.splitlines() if line and not line.startswith(";")]
    # a line reads "3380; 0 16390 TABLE DATA public jobs OWNER"
    if not any(" TABLE DATA " in line and line.split()[-2] == "jobs" for line in entries):
        raise BackupError("the archive holds no data of the jobs table: is RELAY_DB a relay's database?")
    return None, f"pg_dump custom format, {len(entries)} entries; restore with pg_restore"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
