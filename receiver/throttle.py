"""Slowing down key guessing: per client address, wrong keys beyond a few lock it out for a while.

After ``free`` wrong keys in a row the client is refused (429 with ``Retry-After``) for ``base``
seconds, doubling with every further wrong key up to ``cap``. A right key resets it; so do
``forget_after`` seconds without a wrong one. At most ``max_clients`` addresses are remembered (the
oldest go first), so a flood of addresses cannot grow memory. The clock is injectable: no I/O here.

Behind a reverse proxy every client has the proxy's address, so they share one allowance.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class FailureThrottle:
    """See the module docstring."""

    def __init__(
        self,
        *,
        free: int = 5,
        base: float = 1.0,
        cap: float = 300.0,
        forget_after: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap = free, base, cap
        self.forget_after, self.max_clients, self.clock = forget_after, max_clients, clock
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before its next try, or ``None`` if it may try now."""
        record = self._clients.get(client)
        if record is None:
            return None
        left = record.locked_until - self.clock()
        return math.ceil(left) if left > 0 else None

    def failed(self, client: str) -> None:
        """Count a wrong key from ``client``."""
        now = self.clock()
        record = self._clients.pop(client, None) or _Record()
        if now - record.last > self.forget_after:
            record = _Record()
        record.failures += 1
        record.last = now
        beyond = record.failures - self.free
        if beyond >= 0:
            record.locked_until = now + min(self.cap, self.base * 2 ** min(beyond, 64))
        self._clients[client] = record
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """A right key from ``client``: its count starts again."""
        self._clients.pop(client, None)
