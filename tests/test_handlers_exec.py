"""The exec handler with real processes: arguments and stdin, retries then dead, timeout kills."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runway_relay.dispatcher import Dispatcher
from runway_relay.handlers.exec import ExecHandler
from runway_relay.states import RunStatus
from runway_relay.taskparse import ArtifactRef

from test_handlers_support import event_for, handler_context, succeeded_job

pytestmark = pytest.mark.anyio

SCRIPT = """
import json, os, subprocess, sys, time
out = sys.argv[1]
mode = sys.argv[2]
if mode == "record":
    data = sys.stdin.read()
    with open(out, "w") as f:
        json.dump({"argv": sys.argv[3:], "stdin": json.loads(data)}, f)
    print("line\\n" * 2000 + "made a thumbnail")
elif mode == "fail":
    print("warming up", file=sys.stderr)
    print("boom: no codec", file=sys.stderr)
    sys.exit(3)
elif mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(out, "w") as f:
        json.dump([os.getpid(), child.pid], f)
    print("started", file=sys.stderr, flush=True)
    time.sleep(60)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str], str]:
    path = tmp_path / "hook.py"
    path.write_text(SCRIPT)
    out = tmp_path / "out.json"
    return lambda mode: shlex.join([sys.executable, str(path), str(out), mode])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def test_exec_gets_the_job_on_stdin_and_the_paths_as_arguments(
    tmp_path: Path, script: Callable[[str], str]
) -> None:
    command = script("record") + " --flag 'two words'"
    async with handler_context(tmp_path, exec_command=command) as ctx:
        job = await succeeded_job(ctx.store, (ArtifactRef("https://cdn.test/a.mp4", 3),))
        await ctx.store.add_artifact(job["id"], 1, "https://cdn.test/a.mp4", "/data/a b.mp4", 3, "ab" * 32)
        job = await ctx.store.get_job(job["id"])
        output = await ExecHandler(ctx).run(job, event_for(job))
    seen = json.loads((tmp_path / "out.json").read_text())
    assert seen["argv"] == ["--flag", "two words", "/data/a b.mp4"]
    assert seen["stdin"]["id"] == job["id"] and seen["stdin"]["status"] == "succeeded"
    assert output is not None and output.endswith("made a thumbnail") and len(output) < 1600


async def test_a_failing_command_is_retried_then_dead(tmp_path: Path, script: Callable[[str], str]) -> None:
    async with handler_context(tmp_path, ("exec",), exec_command=script("fail")) as ctx:
        handler = ExecHandler(ctx)
        handler.retry_base = 0.05  # type: ignore[attr-defined]
        job = await succeeded_job(ctx.store)
        task = asyncio.create_task(Dispatcher(ctx.store, {"exec": handler}, "test").run())
        try:
            run = await _until(ctx, job["id"], lambda r: r["status"] == "dead")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert run["attempts"] == 2
    assert "exited with status 3" in run["last_error"] and "boom: no codec" in run["last_error"]


async def test_a_command_over_its_timeout_is_killed_with_its_children(
    tmp_path: Path, script: Callable[[str], str]
) -> None:
    # The script must start, spawn its child and say so before the timeout: give a busy machine time.
    async with handler_context(tmp_path, exec_command=script("hang"), exec_timeout=5.0) as ctx:
        job = await succeeded_job(ctx.store)
        with pytest.raises(RuntimeError, match=r"did not finish in 5 s and was killed; stderr: started"):
            await ExecHandler(ctx).run(job, event_for(job))
    parent, child = json.loads((tmp_path / "out.json").read_text())
    assert not alive(parent)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not alive(child)


async def test_the_outbox_holds_exec_until_the_download_of_its_event_has_finished(
    tmp_path: Path, script: Callable[[str], str]
) -> None:
    after = {"exec": ExecHandler.after}
    async with handler_context(tmp_path, ("download", "exec"), after, exec_command=script("record")) as ctx:
        store: Any = ctx.store
        job = await succeeded_job(store)
        (download,) = await store.claim_runs("downloader", 1e12, 10, 60)  # exec is not claimable yet
        assert download["handler"] == "download"
        assert await store.claim_runs("someone", 1e12, 10, 60) == []
        dispatcher = Dispatcher(store, {"exec": ExecHandler(ctx)}, "test")
        task = asyncio.create_task(dispatcher.run())
        try:
            await store.finish_run(download["id"], "downloader", RunStatus.DONE, output="ok")
            dispatcher.wake()
            run = await _until(ctx, job["id"], lambda r: r["status"] == "done")
            assert run["attempts"] == 1
            other = await succeeded_job(store)
            (failed,) = await store.claim_runs("downloader", 1e12, 10, 60)
            await store.finish_run(failed["id"], "downloader", RunStatus.DEAD, error="gone")
            dispatcher.wake()
            dead = await _until(ctx, other["id"], lambda r: r["status"] == "dead")
            assert "download handler ended dead" in dead["last_error"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_exec_refuses_to_start_without_a_runnable_command(tmp_path: Path) -> None:
    for command, message in (
        (None, "RELAY_EXEC is not set"),
        ("/nonexistent/tool --x", "not an executable"),
        ("'unclosed", "cannot be split"),
    ):
        async with handler_context(tmp_path, exec_command=command) as ctx:
            with pytest.raises(ValueError, match=message):
                ExecHandler(ctx)


async def _until(ctx: Any, job_id: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        job = await ctx.store.get_job(job_id)
        run = next(h for h in job["handlers"] if h["name"] == "exec")
        if predicate(run):
            return run
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.02)
