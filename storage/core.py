"""What every part of the store shares: its connector, and the units that write a job's moves.

Each public store method is an ``async`` unit of work that takes a :class:`~.connector.Tx`; the
decorators here turn it into a method that runs in a transaction of its own (:func:`writes`), may
share one with others arriving at the same time (:func:`grouped`), or only reads (:func:`reads`).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import NotFound
from ..states import Decision, JobState, Signal, Status
from .connector import Connector, Tx
from .records import Moved, Routing, iso_now, job_json

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="StoreCore")
Method = Callable[Concatenate[S, Tx, P], Awaitable[R]]
Bound = Callable[Concatenate[S, P], Awaitable[R]]


def writes(method: Method[S, P, R]) -> Bound[S, P, R]:
    """The method runs in ONE transaction; it returns once that is durably committed."""

    @functools.wraps(method)
    async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.connector.write(lambda tx: method(self, tx, *args, **kwargs))

    return wrapper


def grouped(method: Method[S, P, R]) -> Bound[S, P, R]:
    """Like :func:`writes`, but calls arriving together may share one commit (the callback path)."""

    @functools.wraps(method)
    async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.connector.write(lambda tx: method(self, tx, *args, **kwargs), grouped=True)

    return wrapper


def reads(method: Method[S, P, R]) -> Bound[S, P, R]:
    """The method only reads committed data."""

    @functools.wraps(method)
    async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.connector.read(lambda tx: method(self, tx, *args, **kwargs))

    return wrapper


def token_hash(token: str) -> str:
    """Callback tokens are stored hashed: a leaked database does not let anyone forge callbacks."""
    return hashlib.sha256(token.encode()).hexdigest()


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?`` for an ``in (…)`` list of ``values``."""
    return ",".join("?" * len(values))


class StoreCore:
    """The connector, the routing of handler runs, and the helpers every write uses."""

    def __init__(self, connector: Connector, routing: Routing | None = None, origin: str = "") -> None:
        self.connector = connector
        self.routing = routing or Routing()
        self.origin = origin  # this relay's id, carried by its notices so it can ignore its own

    # -- reading ------------------------------------------------------------------------------

    async def _job_row(self, tx: Tx, job_id: str, *, lock: bool = False) -> dict[str, Any]:
        """The stored row; ``lock`` it when the unit will update it from what it read."""
        row = await tx.one(f"select * from jobs where id = ?{tx.for_update if lock else ''}", [job_id])
        if row is None:
            raise NotFound(f"no job with id {job_id!r}")
        return row

    async def _jobs_json(self, tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The public job JSON of ``rows``, with their handler runs and artifacts (two reads)."""
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        runs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for run in await tx.rows(
            f"select * from handler_runs where job_id in ({marks(ids)}) order by id", ids
        ):
            runs[run["job_id"]].append(run)
        arts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for art in await tx.rows(f"select * from artifacts where job_id in ({marks(ids)}) order by id", ids):
            arts[art["job_id"]].append(art)
        return [job_json(row, runs[row["id"]], arts[row["id"]]) for row in rows]

    @staticmethod
    def _state(job: dict[str, Any]) -> JobState:
        return JobState(Status(job["status"]), int(job["attempt"]), float(job["progress"] or 0))

    # -- writing ------------------------------------------------------------------------------

    async def _update_job(self, tx: Tx, job_id: str, changes: dict[str, Any]) -> None:
        """``UPDATE jobs`` of the given columns (names come from this package, never from input)."""
        sets = ", ".join(f"{column} = ?" for column in changes)
        await tx.run(f"update jobs set {sets} where id = ?", [*changes.values(), job_id])

    async def _event(
        self,
        tx: Tx,
        job: dict[str, Any],
        source: str,
        kind: str,
        outcome: str,
        *,
        status: str | None = None,
        progress: float | None = None,
        detail: str | None = None,
        body: str | None = None,
        attempt: int | None = None,
        at: str | None = None,
    ) -> None:
        await tx.run(
            "insert into events (job_id, attempt, source, kind, outcome, status, progress, detail, body, at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                job["id"],
                attempt or job["attempt"],
                source,
                kind,
                outcome,
                status,
                progress,
                detail,
                body,
                at or iso_now(),
            ],
        )

    async def _apply(
        self,
        tx: Tx,
        job: dict[str, Any],
        decision: Decision,
        extra: dict[str, Any] | None = None,
        now: str | None = None,
    ) -> Moved:
        """Write the job's new state, its transition and outbox rows, and tell the other relays."""
        state = decision.state
        now = now or iso_now()
        changes = {
            "status": state.status.value,
            "attempt": state.attempt,
            "progress": state.progress,
            "updated_at": now,
            **(extra or {}),
        }
        await self._update_job(tx, job["id"], changes)
        row = {**job, **changes}
        transition_id = None
        if state.status is not Status(job["status"]):
            await self._count(tx, job["status"], -1)
            await self._count(tx, state.status.value, +1)
        if state.status is not Status(job["status"]) or decision.signal is not None:
            transition_id = await tx.insert(
                "insert into transitions (job_id, attempt, from_status, to_status, progress, signal, at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                [
                    job["id"],
                    state.attempt,
                    job["status"],
                    state.status.value,
                    state.progress,
                    decision.signal.value if decision.signal else None,
                    now,
                ],
            )
            if decision.signal is not None:
                await self._enqueue_runs(tx, row, transition_id, decision.signal, now)
        moved = Moved(row, job["status"], decision.signal, transition_id)
        await self._announce(tx, moved)
        return moved

    async def _count(self, tx: Tx, status: str, delta: int) -> None:
        """Keep ``job_counts`` in step with the jobs table (same transaction)."""
        await tx.run(
            "insert into job_counts (status, n) values (?, ?) "
            "on conflict (status) do update set n = job_counts.n + excluded.n",
            [status, delta],
        )

    async def _announce(self, tx: Tx, moved: Moved) -> None:
        """Tell the other relays sharing the database (delivered only if the transaction commits)."""
        await tx.notify({"origin": self.origin, **moved.brief()})  # origin first: see SqlStore.subscribe

    async def _enqueue_runs(
        self, tx: Tx, job: dict[str, Any], transition_id: int, signal: Signal, now: str
    ) -> None:
        for name in self.routing.names(job.get("handlers"), signal):
            wait_for = ",".join(self.routing.after.get(name, ())) or None
            await tx.run(
                "insert into handler_runs (job_id, transition_id, handler, signal, status, attempts, "
                "next_at, wait_for, created_at, updated_at) values (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                [job["id"], transition_id, name, signal.value, time.time(), wait_for, now, now],
            )

    async def _new_attempt(self, tx: Tx, job_id: str, attempt: int) -> None:
        await tx.run(
            "insert into attempts (job_id, attempt, reply_ref) values (?, ?, ?)",
            [job_id, attempt, f"{job_id}.{attempt}"],
        )
