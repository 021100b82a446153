"""Keeping the relay on one CPU (``RELAY_CPU``).

The relay runs two busy threads: the event loop and the SQLite writer. They hand CPython's GIL back
and forth several times per callback (sqlite3 releases it around every statement). When the two
threads sit on different cores each hand-off wakes the other core and moves the objects they share
between caches; on the bench machine one core gave about 1.25× the callback throughput of two
(bench/RESULTS.md). On one core the hand-offs are cheap, and the relay needs little more than one
core anyway.

``runway-relay serve`` pins its process at start (the app factory leaves the process alone). Threads
started later inherit the CPU; child processes (the ``exec`` handler) get the full set back with
:func:`release`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection

AUTO, OFF = "auto", "off"


def supported() -> bool:
    """Whether this platform lets a process choose its CPUs (Linux does; macOS does not)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def choose(setting: str, allowed: Collection[int], pid: int) -> int | None:
    """The CPU to run on for ``RELAY_CPU=setting``, or ``None`` to leave scheduling to the OS.

    ``auto`` picks one of the allowed CPUs (by pid, so several relays on one host spread out) and
    stays off when there is only one; a number must be one of the allowed CPUs.
    """
    cpus = sorted(allowed)
    if setting == OFF or not cpus:
        return None
    if setting == AUTO:
        return cpus[pid % len(cpus)] if len(cpus) > 1 else None
    cpu = int(setting)
    if cpu not in cpus:
        raise ValueError(f"RELAY_CPU={cpu}: this process may only run on CPUs {','.join(map(str, cpus))}")
    return cpu


# The CPUs the process had before :func:`pin` moved it; child processes get them back.
_original: frozenset[int] | None = None


def pin(setting: str) -> int | None:
    """Move every thread of this process to the CPU :func:`choose` picks; return it (or ``None``)."""
    global _original
    if not supported():
        if setting not in (AUTO, OFF):
            raise ValueError(f"RELAY_CPU={setting}: this platform cannot pin a process to a CPU")
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    cpu = choose(setting, allowed, os.getpid())
    if cpu is None:
        return None
    for tid in _threads():
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(tid, {cpu})
    _original = _original or allowed
    return cpu


def release(pid: int) -> None:
    """Give child process ``pid`` the CPUs this process had before :func:`pin` (no-op if unpinned)."""
    if _original is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # it ended, or is not ours
            os.sched_setaffinity(pid, _original)


def _threads() -> list[int]:
    """The ids of this process's threads (Linux ``/proc``; else only the calling thread)."""
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
