"""RELAY_CPU: ``serve`` keeps its threads on one CPU, and the exec handler's commands get every CPU back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runway_relay import affinity
from runway_relay.settings import SettingsError, load_settings

from conftest import free_port, relay_env

ALLOWED = sorted(os.sched_getaffinity(0)) if affinity.supported() else []
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs a Linux machine with two CPUs")


def thread_cpus(pid: int) -> list[str]:
    """``Cpus_allowed_list`` of every thread of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.append(line.split(":", 1)[1].strip())
    return found


def test_choose_picks_one_allowed_cpu_or_none() -> None:
    assert affinity.choose("off", {0, 1}, 7) is None
    assert affinity.choose("auto", {3}, 7) is None  # one CPU: nothing to choose
    assert affinity.choose("auto", {0, 2, 3}, 7) == 2  # by pid, so several relays spread out
    assert {affinity.choose("auto", {0, 1}, pid) for pid in range(4)} == {0, 1}
    assert affinity.choose("3", {0, 3}, 1) == 3
    with pytest.raises(ValueError, match="only run on CPUs 0,1"):
        affinity.choose("5", {0, 1}, 1)


def test_relay_cpu_setting_is_validated() -> None:
    assert load_settings({}).cpu == "auto"
    assert load_settings({"RELAY_CPU": " OFF "}).cpu == "off"
    assert load_settings({"RELAY_CPU": "1"}).cpu == "1"
    with pytest.raises(SettingsError, match="auto, off, or a CPU number"):
        load_settings({"RELAY_CPU": "fast"})


@needs_two_cpus
def test_serve_runs_on_one_cpu_and_exec_commands_get_every_cpu(relay_factory: Any, tmp_path: Path) -> None:
    out = tmp_path / "cpus.txt"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import os, sys\nopen(sys.argv[1], 'w').write(','.join(map(str, sorted(os.sched_getaffinity(0)))))\n"
    )
    relay = relay_factory(RELAY_HANDLERS="download,exec", RELAY_EXEC=f"{sys.executable} {hook} {out}")
    assert relay.proc is not None
    threads = thread_cpus(relay.proc.pid)
    assert len(threads) >= 2 and len(set(threads)) == 1 and threads[0].isdigit(), threads
    assert f"running on CPU {threads[0]}" in relay.log()

    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a quiet harbour"}).json()
    relay.wait_for(
        job["id"], lambda j: any(h["name"] == "exec" and h["status"] == "done" for h in j["handlers"])
    )
    assert out.read_text() == ",".join(map(str, ALLOWED))


@needs_two_cpus
def test_relay_cpu_off_leaves_the_threads_to_the_os(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_CPU="off")
    assert relay.proc is not None
    assert len(set(thread_cpus(relay.proc.pid))) == 1
    assert thread_cpus(relay.proc.pid)[0] == thread_cpus(os.getpid())[0]  # the full set, as ours
    assert "running on CPU" not in relay.log()


def test_serve_refuses_a_cpu_it_may_not_use(tmp_path: Path) -> None:
    outside = str((max(ALLOWED) if ALLOWED else 0) + 1)
    answer = subprocess.run(
        [sys.executable, "-m", "runway_relay", "serve", "--port", str(free_port())],
        env=relay_env(tmp_path, RELAY_CPU=outside),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 2 and f"RELAY_CPU={outside}" in answer.stderr
