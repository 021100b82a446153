"""The store: every query of the relay, over whichever connector ``RELAY_DB`` picked."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .accounts import AccountsMixin
from .catalog import CatalogMixin
from .insights import InsightsMixin
from .jobs import JobsMixin
from .leases import LeasesMixin
from .migrations import migrate
from .outbox import OutboxMixin
from .retention import PRUNED_TABLES, RetentionMixin
from .submits import SubmitMixin
from .updates import UpdatesMixin

log = logging.getLogger("runway_relay.storage")

Foreign = Callable[[dict[str, Any] | None], None]


class SqlStore(
    JobsMixin,
    SubmitMixin,
    UpdatesMixin,
    OutboxMixin,
    CatalogMixin,
    LeasesMixin,
    InsightsMixin,
    AccountsMixin,
    RetentionMixin,
):
    """Jobs, attempts, events, transitions, handler runs, artifacts, accounts (and their guards,
    notices and notice runs), the console's reads and leases.

    One implementation for both databases: the methods are units of work run by the connector.
    """

    @property
    def url(self) -> str:
        """What ``RELAY_DB`` named."""
        return self.connector.url

    @property
    def shared(self) -> bool:
        """True when other relays may use the same database (PostgreSQL)."""
        return not self.connector.exclusive

    async def open(self) -> None:
        """Connect, apply pending migrations (under the schema lock) and drop what a dead owner left."""
        await self.connector.open()
        try:
            done = await migrate(self.connector)
            if done:
                log.info("database migrated: %s", ", ".join(done))
            await self.recover_leases()
        except BaseException:
            await self.connector.close()
            raise

    async def close(self) -> None:
        """Finish work in progress and disconnect."""
        await self.connector.close()

    async def size(self) -> int:
        """Bytes the database takes on disk."""
        return await self.connector.size()

    async def reclaim(self, *, full: bool = False) -> None:
        """Give back the space pruned rows held (see :meth:`~.connector.Connector.reclaim`)."""
        await self.connector.reclaim(PRUNED_TABLES, full=full)

    async def subscribe(self, on_move: Foreign) -> None:
        """Call ``on_move(brief)`` for each job another relay moved (``None``: some may be missed)."""

        own = json.dumps({"origin": self.origin}, separators=(",", ":"))[:-1] + ","

        def on_notice(payload: str | None) -> None:
            if payload is None:
                on_move(None)
                return
            if payload.startswith(own):  # our own notice, back from the server: no need to decode it
                return
            try:
                brief = json.loads(payload)
            except ValueError:
                log.warning("ignored a notice that is not JSON")
                return
            if isinstance(brief, dict) and brief.get("origin") != self.origin:
                on_move(brief)

        await self.connector.listen(on_notice)
