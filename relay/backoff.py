"""Retry delays: pure functions, so the schedule can be stored and survive a restart.

Handler runs and upstream retries are retried *durably* (the next try time is a column), which an
in-process retry loop such as stamina's cannot give; these functions only compute the delays.
"""

from __future__ import annotations

import random


def exponential(attempt: int, *, base: float = 2.0, cap: float = 600.0, rand: float | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base·2^(attempt-1)``, capped, with jitter.

    The jitter keeps 50–100 % of the step, so retries of many runs spread out but the first retry
    still comes within ``base`` seconds (2 s by default, well inside the contract's 10 s).
    """
    step = min(cap, base * 2 ** max(0, min(attempt - 1, 30)))
    fraction = random.random() if rand is None else rand
    return step * (0.5 + 0.5 * fraction)


def busy_wait(rand: float | None = None, low: float = 10.0, high: float = 30.0) -> float:
    """How long to leave an account alone after a 429: 10–30 s, as the seed page asks."""
    fraction = random.random() if rand is None else rand
    return low + (high - low) * fraction
