"""Configuration, read once from the environment into a typed, validated object.

Nothing else in the relay reads ``os.environ``: everything takes a :class:`Settings`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import blocklist
from .guard import CreditsRule, ModerationRule, RuleError, parse_credits_low, parse_moderation

DEFAULT_BASE_URL = "https://api.useapi.net"
JOB_SIGNALS = ("job-submitted", "job-progress", "job-succeeded", "job-failed", "job-cancelled")
ACCOUNT_SIGNALS = ("account-paused", "account-resumed", "account-credits-low", "account-out-of-rotation")
SIGNAL_NAMES = JOB_SIGNALS + ACCOUNT_SIGNALS
# What Slack and Discord post by default: a job's end, and an account that stopped taking creates.
NOTIFY_EVENTS = (
    "job-succeeded",
    "job-failed",
    "account-paused",
    "account-credits-low",
    "account-out-of-rotation",
)
DEFAULT_MODERATION = ModerationRule(3, 3600.0, 3600.0)
DEFAULT_CREDITS_LOW = CreditsRule(10.0, percent=True)


class SettingsError(ValueError):
    """A configuration value is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything the relay is configured with. Secrets are excluded from ``repr``."""

    host: str = "127.0.0.1"
    port: int = 8000
    useapi_token: str | None = field(default=None, repr=False)
    useapi_base_url: str = DEFAULT_BASE_URL
    public_url: str | None = None
    db_path: str = "./relay.db"
    lease_seconds: float = 10.0
    download_dir: Path = Path("./downloads")
    api_key: str | None = field(default=None, repr=False)
    handlers: tuple[str, ...] | None = None
    slack_webhook_url: str | None = field(default=None, repr=False)
    discord_webhook_url: str | None = field(default=None, repr=False)
    forward_url: str | None = field(default=None, repr=False)
    forward_secret: str | None = field(default=None, repr=False)
    exec_command: str | None = None
    resubmit_max: int = 1
    poll_after: float = 60.0
    download_allow_private: bool = False
    accounts: tuple[tuple[str, int], ...] = ()
    sim_step_seconds: float = 1.0
    handler_max_attempts: int = 5
    log_level: str = "INFO"
    log_format: str = "text"
    slack_events: tuple[str, ...] = NOTIFY_EVENTS
    discord_events: tuple[str, ...] = NOTIFY_EVENTS
    exec_timeout: float = 300.0
    download_max_bytes: int = 8 * 1024**3
    cpu: str = "auto"
    upload_max_bytes: int = 100 * 1024**2
    session_hours: float = 12.0
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    sse_max: int = 100
    shutdown_grace: float = 10.0
    moderation: ModerationRule | None = DEFAULT_MODERATION
    credits_low: CreditsRule | None = DEFAULT_CREDITS_LOW
    blocklist: tuple[blocklist.Rule, ...] = ()
    retain_days: float | None = None  # prune finished jobs older than this on a schedule (None: never)
    retain_files: bool = False  # ...and their downloaded files
    # The relay's credential for its own mounted simulator: random per process, never configured.
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False, compare=False)

    @property
    def simulated(self) -> bool:
        """True when no useapi.net token is set: the built-in simulator is the upstream."""
        return not self.useapi_token

    @property
    def own_url(self) -> str:
        """How this process reaches itself over loopback."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def callback_root(self) -> str:
        """The public root the upstream reaches; ``replyUrl`` is built from it."""
        return (self.public_url or self.own_url).rstrip("/")

    @property
    def upstream_root(self) -> str:
        """Where ``/v1/runwayml/...`` lives: useapi.net, or the simulator mounted on this server."""
        if self.simulated and self.useapi_base_url == DEFAULT_BASE_URL:
            return self.own_url
        return self.useapi_base_url.rstrip("/")

    @property
    def upstream_token(self) -> str | None:
        """The bearer sent upstream: ``USEAPI_TOKEN``, or the internal token for the mounted simulator."""
        if self.useapi_token:
            return self.useapi_token
        return self.internal_token if self.upstream_root == self.own_url else None

    @property
    def is_loopback(self) -> bool:
        """True when ``host`` only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, for :func:`runway_relay.logs.register_secrets` at start-up."""
        values = (
            self.useapi_token,
            self.api_key,
            self.slack_webhook_url,
            self.discord_webhook_url,
            self.forward_url,
            self.forward_secret,
            self.internal_token,
        )
        return tuple(value for value in values if value)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with CLI flags applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum or value != value:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got a value that is not")
    return raw


def _accounts(raw: str, source: str = "RELAY_ACCOUNTS") -> tuple[tuple[str, int], ...]:
    """Parse ``RELAY_ACCOUNTS=a@x.com:2,b@y.com:3`` (capacity defaults to 2); ``source`` names the
    setting or flag in errors."""
    accounts: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        email, _, capacity = item.partition(":")
        local, at, domain = email.strip().partition("@")
        if not (local and at and domain) or any(c.isspace() for c in email.strip()):
            raise SettingsError(f"{source} entry {item!r}: expected email:maxJobs, e.g. a@x.com:2")
        try:
            max_jobs = int(capacity) if capacity else 2
        except ValueError:
            raise SettingsError(f"{source} entry {item!r}: maxJobs must be a whole number 1-10") from None
        if not 1 <= max_jobs <= 10:
            raise SettingsError(f"{source} entry {item!r}: maxJobs must be 1-10")
        accounts.append((email.strip(), max_jobs))
    return tuple(accounts)


def _events(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of signal names, e.g. ``RELAY_SLACK_EVENTS=job-succeeded,job-failed``."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [n for n in names if n not in SIGNAL_NAMES]
    if unknown:
        raise SettingsError(f"{name}: unknown event(s) {', '.join(unknown)}; use {', '.join(SIGNAL_NAMES)}")
    return names


def _cpu(env: Mapping[str, str]) -> str:
    """``RELAY_CPU``: ``auto`` (default), ``off``, or the number of the CPU ``serve`` runs on."""
    raw = (env.get("RELAY_CPU") or "auto").strip().lower()
    if raw in ("auto", "off") or raw.isdigit():
        return raw
    raise SettingsError(f"RELAY_CPU={raw!r}: use auto, off, or a CPU number such as 0")


def _log_format(env: Mapping[str, str]) -> str:
    """``RELAY_LOG_FORMAT``: ``text`` (default) or ``json`` (one object per line)."""
    raw = (env.get("RELAY_LOG_FORMAT") or "text").strip().lower()
    if raw not in ("text", "json"):
        raise SettingsError(f"RELAY_LOG_FORMAT={raw!r}: use text or json")
    return raw


def _forward_secret(env: Mapping[str, str]) -> str | None:
    """``RELAY_FORWARD_SECRET``: required with ``RELAY_FORWARD_URL``, a ``whsec_`` + base64 key."""
    secret = (env.get("RELAY_FORWARD_SECRET") or "").strip()
    if not secret:
        if (env.get("RELAY_FORWARD_URL") or "").strip():
            raise SettingsError(
                "RELAY_FORWARD_URL is set but RELAY_FORWARD_SECRET is not: forwarded events are always "
                "signed; set RELAY_FORWARD_SECRET to whsec_ followed by base64 of 24-64 random bytes"
            )
        return None
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise SettingsError(
            "RELAY_FORWARD_SECRET must be whsec_ followed by base64 of at least 16 random bytes"
        )
    return secret


def _db(env: Mapping[str, str]) -> str:
    """``RELAY_DB``: a SQLite file path, or a ``postgresql://`` URL."""
    raw = (env.get("RELAY_DB") or "./relay.db").strip()
    scheme = raw.partition("://")[0].lower() if "://" in raw else ""
    if scheme and scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"RELAY_DB: {scheme}:// is not supported; use a SQLite file path or a postgresql:// URL"
        )
    return raw


def _moderation(env: Mapping[str, str]) -> ModerationRule | None:
    """``RELAY_MODERATION_PAUSE=N/WINDOW`` (default ``3/1h``; ``off``) and ``RELAY_MODERATION_PAUSE_FOR``."""
    raw = env.get("RELAY_MODERATION_PAUSE")
    pause_for = env.get("RELAY_MODERATION_PAUSE_FOR")
    try:
        if raw is None or not raw.strip():
            return parse_moderation(str(DEFAULT_MODERATION), pause_for)
        return parse_moderation(raw, pause_for)
    except RuleError as exc:
        name = (
            "RELAY_MODERATION_PAUSE_FOR"
            if pause_for and "N/WINDOW" not in str(exc)
            else "RELAY_MODERATION_PAUSE"
        )
        raise SettingsError(f"{name}: {exc}") from None


def _credits_low(env: Mapping[str, str]) -> CreditsRule | None:
    """``RELAY_CREDITS_LOW``: credits (``200``) or a percentage of the plan (``10%``, the default)."""
    raw = env.get("RELAY_CREDITS_LOW")
    if raw is None or not raw.strip():
        return DEFAULT_CREDITS_LOW
    try:
        return parse_credits_low(raw)
    except RuleError as exc:
        raise SettingsError(f"RELAY_CREDITS_LOW: {exc}") from None


def _blocklist(env: Mapping[str, str]) -> tuple[blocklist.Rule, ...]:
    """``RELAY_BLOCKLIST_FILE``: read and checked once, at start-up."""
    raw = (env.get("RELAY_BLOCKLIST_FILE") or "").strip()
    if not raw:
        return ()
    try:
        content = Path(raw).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"RELAY_BLOCKLIST_FILE={raw!r} cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return blocklist.parse(content)
    except blocklist.BlocklistError as exc:
        raise SettingsError(str(exc)) from None


def _retain_days(env: Mapping[str, str]) -> float | None:
    """``RELAY_RETAIN_DAYS``: days a finished job's history is kept (unset, ``off`` or ``0``: forever)."""
    raw = (env.get("RELAY_RETAIN_DAYS") or "").strip().lower()
    if raw in ("", "off", "0"):
        return None
    try:
        days = float(raw)
    except ValueError:
        raise SettingsError(f"RELAY_RETAIN_DAYS={raw!r} is not a number of days; use 30, or off") from None
    if not days > 0 or days == float("inf"):
        raise SettingsError(f"RELAY_RETAIN_DAYS={raw!r} must be more than 0 days (or off)")
    return days


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    handlers = env.get("RELAY_HANDLERS")
    base_url = _url(env, "USEAPI_BASE_URL") or DEFAULT_BASE_URL
    return Settings(
        useapi_token=env.get("USEAPI_TOKEN") or None,
        useapi_base_url=base_url,
        public_url=_url(env, "RELAY_PUBLIC_URL"),
        db_path=_db(env),
        lease_seconds=_number(env, "RELAY_LEASE_SECONDS", 10.0, 1.0),
        download_dir=Path(env.get("RELAY_DOWNLOAD_DIR") or "./downloads"),
        api_key=env.get("RELAY_API_KEY") or None,
        handlers=(
            tuple(h.strip() for h in handlers.split(",") if h.strip()) if handlers is not None else None
        ),
        slack_webhook_url=_url(env, "RELAY_SLACK_WEBHOOK_URL"),
        discord_webhook_url=_url(env, "RELAY_DISCORD_WEBHOOK_URL"),
        forward_url=_url(env, "RELAY_FORWARD_URL"),
        forward_secret=_forward_secret(env),
        exec_command=env.get("RELAY_EXEC") or None,
        resubmit_max=int(_number(env, "RELAY_RESUBMIT_MAX", 1, 0)),
        poll_after=_number(env, "RELAY_POLL_AFTER", 60.0, 0.05),
        download_allow_private=_bool(env, "RELAY_DOWNLOAD_ALLOW_PRIVATE", False),
        accounts=_accounts(env.get("RELAY_ACCOUNTS", "")),
        sim_step_seconds=_number(env, "RELAY_SIM_STEP_SECONDS", 1.0, 0.001),
        handler_max_attempts=int(_number(env, "RELAY_HANDLER_MAX_ATTEMPTS", 5, 1)),
        log_level=(env.get("RELAY_LOG_LEVEL") or "INFO").upper(),
        log_format=_log_format(env),
        slack_events=_events(env, "RELAY_SLACK_EVENTS", NOTIFY_EVENTS),
        discord_events=_events(env, "RELAY_DISCORD_EVENTS", NOTIFY_EVENTS),
        exec_timeout=_number(env, "RELAY_EXEC_TIMEOUT", 300.0, 0.01),
        download_max_bytes=int(_number(env, "RELAY_DOWNLOAD_MAX_BYTES", 8 * 1024**3, 1)),
        cpu=_cpu(env),
        upload_max_bytes=int(_number(env, "RELAY_UPLOAD_MAX_BYTES", 100 * 1024**2, 1)),
        session_hours=_number(env, "RELAY_SESSION_HOURS", 12.0, 0.01),
        max_connections=int(_number(env, "RELAY_MAX_CONNECTIONS", 1000, 1)),
        header_timeout=_number(env, "RELAY_HEADER_TIMEOUT", 10.0, 0.1),
        body_timeout=_number(env, "RELAY_BODY_TIMEOUT", 30.0, 0.1),
        sse_max=int(_number(env, "RELAY_SSE_MAX", 100, 1)),
        shutdown_grace=_number(env, "RELAY_SHUTDOWN_GRACE", 10.0, 0.0),
        moderation=_moderation(env),
        credits_low=_credits_low(env),
        blocklist=_blocklist(env),
        retain_days=_retain_days(env),
        retain_files=_bool(env, "RELAY_RETAIN_FILES", False),
    )
