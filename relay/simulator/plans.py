"""The simulated accounts' plans and sessions: credits that creates spend, and sessions that break. Pure.

Each account has a plan of ``permitted`` credits, of which it has ``used`` some. An accepted create
that is not in explore mode spends :data:`CREDITS_PER_SECOND` per second of video (a simulated price,
the same for every model); one that costs more than is left is answered 402 with the seed page's
message. ``GET features/`` reports both numbers. An account whose session is broken answers every
create and ``GET features/`` with 401, until it is mended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .validation import SimError

CREDITS_PER_SECOND = 10
DEFAULT_PLAN = 1_000_000  # enough that nothing runs out unless a test or a user says so
NO_CREDITS = "You do not have enough credits to run this task."


def broken_session(email: str) -> SimError:
    """What useapi.net answers when it cannot log in to the account's Runway session."""
    message = f"Unable to refresh the Runway session of {email}: wrong username/password combination"
    return SimError(401, {"error": message, "code": 401})


@dataclass
class Plan:
    """One account's credits and session."""

    permitted: float = DEFAULT_PLAN
    used: float = 0.0
    broken: bool = False

    @property
    def left(self) -> float:
        """Credits still to spend."""
        return max(0.0, self.permitted - self.used)


@dataclass
class Plans:
    """Every account's plan, by email."""

    plans: dict[str, Plan] = field(default_factory=dict)

    @classmethod
    def of(
        cls, emails: list[str], credits: dict[str, float] | None = None, broken: set[str] | None = None
    ) -> Plans:
        """Plans for ``emails``: ``credits`` permitted where given, sessions in ``broken`` broken."""
        credits, broken = credits or {}, broken or set()
        return cls({e: Plan(float(credits.get(e, DEFAULT_PLAN)), 0.0, e in broken) for e in emails})

    def plan(self, email: str) -> Plan:
        """The account's plan (made on first sight)."""
        return self.plans.setdefault(email, Plan())

    def check_session(self, email: str) -> None:
        """Raise the 401 of a broken session."""
        if self.plan(email).broken:
            raise broken_session(email)

    @staticmethod
    def cost(seconds: int, explore: bool) -> float:
        """What a create of ``seconds`` costs (explore mode: nothing)."""
        return 0.0 if explore else float(CREDITS_PER_SECOND * seconds)

    def check_credits(self, email: str, seconds: int, explore: bool) -> None:
        """Raise 402 when the account cannot pay for the create."""
        if self.cost(seconds, explore) > self.plan(email).left:
            raise SimError(402, {"error": NO_CREDITS})

    def spend(self, email: str, seconds: int, explore: bool) -> None:
        """An accepted create spends its credits."""
        self.plan(email).used += self.cost(seconds, explore)

    def features(self, email: str) -> dict[str, Any]:
        """The ``GET features/`` answer of the account (trimmed like useapi.net's own example)."""
        self.check_session(email)
        plan = self.plan(email)
        return {
            "permitted": {"storageGB": 500, "numPlanCredits": plan.permitted},
            "used": {"numPlanCredits": plan.used},
            "teams": [{"id": 1, "currentPlan": "standard", "planExpiration": "2099-01-01T00:00:00Z"}],
        }

    def update(self, email: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``POST /sim/accounts/{email}``: set ``permitted``, ``used`` or ``broken``; the plan after."""
        plan = self.plan(email)
        for key in ("permitted", "used"):
            if key in changes:
                value = changes[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise SimError(
                        400, {"error": f"{key} must be a number of credits, 0 or more", "code": 400}
                    )
                setattr(plan, key, float(value))
        if "broken" in changes:
            if not isinstance(changes["broken"], bool):
                raise SimError(400, {"error": "broken must be true or false", "code": 400})
            plan.broken = changes["broken"]
        return {"email": email, "permitted": plan.permitted, "used": plan.used, "broken": plan.broken}
