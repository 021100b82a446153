"""``/readyz``: whether this relay can do its work now, as opposed to ``/healthz`` (it is alive).

Ready means, all three:

- **The database takes writes.** A real write, committed through the store: lease row
  ``ready:<relay id>`` rewritten (:meth:`~runway_relay.storage.Store.probe_write`). A read-only
  database, a full disk or one that does not answer within :data:`PROBE_TIMEOUT` is not ready.
- **The loops run.** The dispatcher and the leadership loop are alive, the scheduler lease was looked
  after within its length, and while this relay schedules, its scheduler, poller and accounts loops
  all run.
- **The upstream is reachable, or simulated.** No call is made per probe: the outcome of the last
  call this relay made to useapi.net counts (no answer, a timeout or a 5xx is "unreachable" until a
  later call gets an answer). A relay that has made no call yet counts as reachable.

The reasons are sentences without job counts, handler names or secrets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .errors import StorageUnavailable

if TYPE_CHECKING:
    from .service import Relay

PROBE_TIMEOUT = 2.0  # seconds the write probe may take before the answer is "not ready"


async def _database(relay: Relay) -> list[str]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await relay.store.probe_write(f"ready:{relay.id}", max(60.0, relay.settings.lease_seconds))
    except TimeoutError:
        return [f"the database did not take a write within {PROBE_TIMEOUT:g} s"]
    except StorageUnavailable as exc:  # read-only, disk full, the server away: it says which
        return [str(exc)]
    except Exception as exc:  # whatever else keeps the write from committing
        return [f"the database cannot take writes ({type(exc).__name__})"]
    return []


def _loops(relay: Relay) -> list[str]:
    reasons = [f"the {name} loop is not running" for name, task in relay.loops() if task.done()]
    if not relay.dispatcher.alive:
        reasons.append("the dispatcher of handler runs is restarting")
    return reasons + relay.leadership.stalled()


def _upstream(relay: Relay) -> list[str]:
    if relay.settings.simulated:
        return []
    why = relay.upstream.unreachable
    return [f"useapi.net is unreachable: {why}"] if why else []


async def readiness(relay: Relay) -> dict[str, Any]:
    """``{"status": "ready"}`` or ``{"status": "not ready", "reasons": [...]}`` (see the module docstring)."""
    reasons = await _database(relay) + _loops(relay) + _upstream(relay)
    if reasons:
        return {"status": "not ready", "reasons": reasons}
    return {"status": "ready", "upstream": "simulator" if relay.settings.simulated else "useapi.net"}
