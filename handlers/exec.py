"""``exec``: run ``RELAY_EXEC`` after a job succeeds, with the job JSON on stdin and the artifact paths
as arguments.

The command is split with :func:`shlex.split` and run without a shell, in its own process group. It may
run for ``RELAY_EXEC_TIMEOUT`` seconds (default 300); then the whole group is killed and the run fails.
The last few KiB of stdout become the run's output; a non-zero exit raises with the tail of stderr, so
the run is retried and ends ``dead`` after the limit. When the ``download`` handler runs for the same
event, the outbox holds the exec run until the download has finished (``after``), so the paths are there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
from typing import Any

from .. import affinity
from ..logs import redact
from ..states import Signal
from .base import HandlerContext, HandlerEvent, PermanentError
from .notify import required

TAIL_BYTES = 1500


class _Tail:
    """Keeps the last ``limit`` bytes of a stream."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.data = bytearray()
        self.cut = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        """Read ``stream`` to its end, keeping only the tail."""
        if stream is None:
            return
        while block := await stream.read(65536):
            self.data += block
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]
                self.cut = True

    def text(self) -> str:
        """The tail as text, secrets masked. A first line cut short is left out: it might hold the
        end of a secret, which no redaction would recognise."""
        text = self.data.decode("utf-8", "replace")
        if self.cut and "\n" in text:
            text = text.partition("\n")[2]
        return redact(text).strip()


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    """Write the job JSON; a command that does not read stdin is fine."""
    if stdin is None:
        return
    # A command that exited before reading: a broken pipe, or (when asyncio already saw the pipe
    # close) a RuntimeError from the closed transport.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
        stdin.write(data)
        await stdin.drain()
    stdin.close()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class ExecHandler:
    """Runs the configured command; see the module docstring."""

    name = "exec"
    events = frozenset({Signal.SUCCEEDED})
    after = ("download",)  # the outbox holds this run until the same event's download has finished

    def __init__(self, ctx: HandlerContext) -> None:
        """Refuses to start (``ValueError``) when the command is missing or cannot be found."""
        self.ctx = ctx
        command = required(ctx.settings.exec_command, "RELAY_EXEC", "exec")
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"RELAY_EXEC cannot be split into arguments: {exc}") from None
        if not self.argv:
            raise ValueError("RELAY_EXEC is empty")
        if shutil.which(self.argv[0]) is None:
            raise ValueError(f"RELAY_EXEC: {self.argv[0]!r} is not an executable file or on PATH")
        self.timeout = ctx.settings.exec_timeout
        self.max_attempts = ctx.settings.handler_max_attempts

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Run the command once; raises on a non-zero exit or a timeout."""
        downloads = [
            h for h in job.get("handlers") or [] if (h["name"], h["signal"]) == ("download", event.signal)
        ]
        if downloads and max(downloads, key=lambda h: h["id"])["status"] == "dead":
            raise PermanentError("the download handler ended dead; replay download, then exec")
        paths = [str(a["path"]) for a in job.get("artifacts") or [] if a.get("path")]
        code, out, err = await self._execute([*self.argv, *paths], json.dumps(job).encode())
        program = os.path.basename(self.argv[0])
        if code != 0:
            raise RuntimeError(f"{program} exited with status {code}" + (f"; stderr: {err}" if err else ""))
        return f"{program} exited 0" + (f"; stdout: {out}" if out else "")

    async def _execute(self, argv: list[str], stdin: bytes) -> tuple[int, str, str]:
        """Run ``argv``; return (exit status, stdout tail, stderr tail)."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        affinity.release(process.pid)  # the command may use every CPU, not only the relay's one
        out, err = _Tail(), _Tail()
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(
                    out.drain(process.stdout), err.drain(process.stderr), _feed(process.stdin, stdin)
                )
                code = await process.wait()
        except BaseException as exc:  # timed out or cancelled: the whole group goes
            _kill_group(process)
            await process.wait()
            if isinstance(exc, TimeoutError):
                raise RuntimeError(
                    f"{os.path.basename(argv[0])} did not finish in {self.timeout:g} s and was killed"
                    + (f"; stderr: {err.text()}" if err.text() else "")
                ) from None
            raise
        return code, out.text(), err.text()
