"""State of the simulated useapi.net Runway upstream: accounts, assets, tasks and their lifecycle.

Pure-ish: no HTTP and no asyncio here, only state and the rules that move it. The HTTP side
(:mod:`runway_relay.simulator.app`) drives :meth:`Engine.step` on a timer and delivers callbacks.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MEDIA_DIR = Path(__file__).resolve().parent
SAMPLE_MP4 = MEDIA_DIR / "sample.mp4"
PREVIEW_JPG = MEDIA_DIR / "preview.jpg"

PENDING, THROTTLED, RUNNING = "PENDING", "THROTTLED", "RUNNING"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
TERMINAL = frozenset({SUCCEEDED, FAILED})

RUNWAY_429 = (
    "You have too many tasks running or pending. Please wait for some of them to finish before starting more."
)
NO_CREDITS = "You do not have enough credits to run this task."
MODERATION_ERROR: dict[str, Any] = {
    "errorMessage": "This generation was blocked by our content moderation system.",
    "reason": "SAFETY.INPUT.TEXT",
    "message": "Your prompt was flagged by moderation",
    "moderation_category": "SEXUAL",
    "tally_asimov": False,
}
TRANSIENT_ERROR = "Internal error, please retry"
_ASSET_RE = re.compile(r"^user:[^:]*-runwayml:(?P<email>.+)-asset:(?P<uuid>[0-9a-fA-F-]{8,})$")
_RATIO_RE = re.compile(r"^\d{1,2}:\d{1,2}$")


@dataclass(frozen=True)
class Chaos:
    """Callback misbehaviour: duplicates, out-of-order delivery, drops and random delays."""

    duplicate: float = 0.0
    shuffle: bool = False
    drop: float = 0.0
    delay_max: float = 0.0


@dataclass(frozen=True)
class ModelRule:
    """The parts of a model's rules (seed page) that the simulator enforces."""

    durations: tuple[int, ...]  # (): "auto", a given duration is ignored
    aspect_ratios: tuple[str, ...] | None = None  # None: any W:H; (): not supported (ignored)
    resolutions: tuple[str, ...] = ()  # (): not supported (ignored)
    prompt_required: bool = False
    prompt_max: int = 5000
    image_required: bool = False
    end_frame: bool = False
    video_required: bool = False
    explore: bool = True


_169, _RES = ("16:9", "9:16"), ("720p", "1080p")
_K3 = ModelRule((5, 10, 15), (*_169, "1:1"), prompt_max=2500, end_frame=True)
_GEN4 = ModelRule((5, 10), None, ("720p",), True, 1000, image_required=True)
MODELS: dict[str, ModelRule] = {
    "gen4.5": ModelRule(tuple(range(2, 11)), None, end_frame=True),  # T2V: 16:9 only
    "gen4": _GEN4,
    "gen4-turbo": _GEN4,
    "kling-3.0-pro": _K3,
    "kling-3.0-standard": _K3,
    "kling-2.6-pro": ModelRule((5, 10), _169, (), True, 2500),
    "kling-2.6-i2v": ModelRule((5, 10), (), (), True, 2500, image_required=True),
    "veo-3.1": ModelRule((4, 6, 8), _169, _RES, end_frame=True, explore=False),
    "sora-2": ModelRule((4, 8, 12), _169, prompt_max=1000),
    "sora-2-pro": ModelRule((4, 8, 12), _169, _RES, prompt_max=1000),
    "wan-2.6-flash": ModelRule((5, 10, 15), (*_169, "1:1"), _RES, True, 1500, image_required=True),
    "wan-2.2-animate": ModelRule(
        (), (*_169, "1:1", "4:3", "3:4"), prompt_max=0, image_required=True, video_required=True
    ),
}


class SimError(Exception):
    """An error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", status))
        self.status = status
        self.body = body


def bad_request(message: str) -> SimError:
    """A 400 in the seed page's shape."""
    return SimError(400, {"error": message, "code": 400})


def now_iso() -> str:
    """Current UTC time as Runway writes it: ``2026-03-05T10:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_ratio(value: float) -> str:
    """A progress ratio as the string Runway uses (``"0"``, ``"0.25"``, ``"1"``)."""
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def dimensions(aspect_ratio: str, resolution: str | None) -> tuple[int, int]:
    """Plausible output width and height for an aspect ratio at 720p or 1080p."""
    short = 1080 if resolution == "1080p" else 720
    try:
        a, b = (int(x) for x in aspect_ratio.split(":"))
    except ValueError:
        a, b = 16, 9
    if a >= b:
        return round(short * a / b / 2) * 2, short
    return short, round(short * b / a / 2) * 2


def email_of_asset(asset_id: str) -> str | None:
    """The account email embedded in an ``assetId``, or None if it is not one."""
    match = _ASSET_RE.match(asset_id)
    return match["email"] if match else None


@dataclass
class SimTask:
    """One simulated Runway task."""

    task_id: str
    id: str
    email: str
    seq: int
    model: str
    options: dict[str, Any]
    reply_url: str | None
    reply_ref: str | None
    explore: bool
    seconds: int
    base_url: str
    running_steps: int
    fail_kind: str | None
    created_at: str
    updated_at: str
    status: str = PENDING
    progress: float = 0.0
    progress_text: str | None = None
    error: Any = None
    eta: int = 0
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    steps_done: int = 0
    history: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """SUCCEEDED or FAILED."""
        return self.status in TERMINAL

    @property
    def active(self) -> bool:
        """Holds an account slot: neither finished nor deleted from the scheduler."""
        return not self.deleted and not self.terminal

    def summary(self) -> dict[str, Any]:
        """The ``{taskId, replyUrl, replyRef}`` entry of ``GET scheduler/``."""
        return {"taskId": self.task_id, "replyUrl": self.reply_url, "replyRef": self.reply_ref}

    def model_json(self) -> dict[str, Any]:
        """The task Model of the seed page (progressRatio as a string, as Runway sends it)."""
        return {
            "id": self.id,
            "name": self.options["name"],
            "image": None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "taskType": self.model,
            "options": dict(self.options),
            "status": self.status,
            "error": self.error,
            "progressText": self.progress_text,
            "progressRatio": format_ratio(self.progress),
            "estimatedTimeToStartSeconds": self.eta,
            "artifacts": [dict(a) for a in self.artifacts],
            "sharedAsset": None,
            "sourceAssetId": None,
            "taskId": self.task_id,
            "replyUrl": self.reply_url,
            "replyRef": self.reply_ref,
            "code": 200,
        }

    def _set(self, status: str, progress: float, text: str | None) -> None:
        self.status, self.progress, self.progress_text = status, progress, text
        self.updated_at = now_iso()
        self.history.append((status, progress, time.monotonic()))


def _as_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"Parameter {key} must be an integer") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class Engine:
    """Accounts, assets and tasks of the simulated upstream, with the rules that move them."""

    def __init__(self, accounts: dict[str, int], *, rng: random.Random, runway_429_rate: float = 0.0) -> None:
        if not accounts:
            raise ValueError("the simulator needs at least one account")
        self.accounts: dict[str, int] = {email: int(n) for email, n in accounts.items()}
        self.rng = rng
        self.runway_429_rate = runway_429_rate
        self.tasks: dict[str, SimTask] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.artifact_ids: set[str] = set()
        self.creates: list[dict[str, Any]] = []
        self.create_attempts = 0
        self.rejected_429 = 0
        self._seq = 0

    # -- accounts and capacity -------------------------------------------------------------
    def active_on(self, email: str) -> list[SimTask]:
        """Tasks holding a slot of ``email``, oldest first."""
        return [t for t in self.tasks.values() if t.email == email and t.active]

    def _pick_account(self, body: dict[str, Any]) -> str:
        email = str(body["email"]) if body.get("email") else None
        for key in ("imageAssetId1", "imageAssetId2", "videoAssetId"):
            asset_id = body.get(key)
            if not asset_id:
                continue
            owner = email_of_asset(str(asset_id))
            if owner is None or owner not in self.accounts:
                raise bad_request(f"Unable to locate asset {asset_id} ({key})")
            if email and owner != email:
                raise bad_request(f"{key} {asset_id} belongs to another account than {email}")
            email = owner
        if email:
            if email not in self.accounts:
                raise bad_request(f"Runway account {email} not found")
            return str(email)

        def load(e: str) -> tuple[bool, int]:
            busy = len(self.active_on(e))
            return busy >= self.accounts[e], busy

        return min(self.accounts, key=load)

    # -- create ----------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any]) -> tuple[int, str, str | None]:
        model = body.get("model")
        rule = MODELS.get(str(model)) if model else None
        if rule is None:
            raise bad_request(f"Parameter model ({model}) must be one of {', '.join(MODELS)}")
        if _as_bool(body.get("exploreMode")) and not rule.explore:
            raise bad_request(f"Model {model} does not support exploreMode")
        duration = _as_int(body, "duration")
        if duration is not None and rule.durations and duration not in rule.durations:
            raise bad_request(f"Parameter duration ({duration}) is not supported by {model}")
        seconds = (duration or rule.durations[0]) if rule.durations else 5
        prompt = body.get("text_prompt") or ""
        if not isinstance(prompt, str):
            raise bad_request("Parameter text_prompt must be a string")
        if rule.prompt_required and not prompt.strip():
            raise bad_request(f"Parameter text_prompt is required for {model}")
        if rule.prompt_max and len(prompt) > rule.prompt_max:
            raise bad_request(f"Parameter text_prompt is longer than {rule.prompt_max} characters")
        if rule.image_required and not body.get("imageAssetId1"):
            raise bad_request(f"Parameter imageAssetId1 is required for {model}")
        if body.get("imageAssetId2") and not rule.end_frame:
            raise bad_request(f"Parameter imageAssetId2 is not supported by {model}")
        if rule.video_required and not body.get("videoAssetId"):
            raise bad_request(f"Parameter videoAssetId is required for {model}")
        ratio = body.get("aspect_ratio") or None
        if model == "gen4.5" and ratio not in (None, "16:9") and not body.get("imageAssetId1"):
            raise bad_request("Parameter aspect_ratio must be 16:9 for gen4.5 text-to-video")
        if ratio is not None and rule.aspect_ratios is None and not _RATIO_RE.match(str(ratio)):
            raise bad_request(f"Parameter aspect_ratio ({ratio}) is not valid")
        if ratio is not None and rule.aspect_ratios and ratio not in rule.aspect_ratios:
            raise bad_request(f"Parameter aspect_ratio ({ratio}) is not supported by {model}")
        resolution = body.get("resolution") or None
        if resolution is not None and rule.resolutions and resolution not in rule.resolutions:
            raise bad_request(f"Parameter resolution ({resolution}) is not supported by {model}")
        max_jobs = _as_int(body, "maxJobs")
        if max_jobs is not None and not 1 <= max_jobs <= 10:
            raise bad_request("Parameter maxJobs must be between 1 and 10")
        for key in ("replyUrl", "replyRef"):
            if len(str(body.get(key) or "")) > 1024:
                raise bad_request(f"Parameter {key} is longer than 1024 characters")
        return seconds, str(ratio or "16:9"), resolution

    def create(self, body: dict[str, Any], base_url: str) -> SimTask:
        """Accept a ``videos/create`` body or raise :class:`SimError` (400/402/429)."""
        self.create_attempts += 1
        seconds, ratio, resolution = self._validate(body)
        prompt = str(body.get("text_prompt") or "")
        if "[reject]" in prompt:
            raise bad_request("Prompt rejected by the simulator ([reject] marker)")
        if "[nocredits]" in prompt:
            raise SimError(402, {"error": NO_CREDITS})
        email = self._pick_account(body)
        limit = _as_int(body, "maxJobs") or self.accounts[email]
        running = self.active_on(email)
        if len(running) >= limit:
            self.rejected_429 += 1
            entries = [{"email": email, "id": t.id, **t.summary()} for t in running]
            message = f"Account {email} is busy executing {limit} tasks"
            raise SimError(429, {"error": message, "runningTasks": {email: entries}, "code": 429})
        if self.runway_429_rate and self.rng.random() < self.runway_429_rate:
            self.rejected_429 += 1
            raise SimError(429, {"error": RUNWAY_429})
        return self._accept(body, email, base_url, seconds, dimensions(ratio, resolution))

    def _accept(
        self, body: dict[str, Any], email: str, base_url: str, seconds: int, size: tuple[int, int]
    ) -> SimTask:
        model, explore = str(body["model"]), _as_bool(body.get("exploreMode"))
        prompt, (width, height) = str(body.get("text_prompt") or ""), size
        seed = _as_int(body, "seed") or self.rng.randint(1, 4294967294)
        name = f"{model} {prompt}".strip()[:100]
        options = {
            "name": name,
            "text_prompt": prompt,
            "seconds": seconds,
            "seed": seed,
            "watermark": False,
            "route": "i2v" if body.get("imageAssetId1") else "t2v",
            "width": width,
            "height": height,
            "assetGroupId": str(uuid.uuid4()),
            "creationSource": "tool-mode",
            "exploreMode": explore,
            "recordingEnabled": True,
        }
        fail_kind = "moderate" if "[moderate]" in prompt else "fail" if "[fail]" in prompt else None
        self._seq += 1
        stamp = now_iso()
        task = SimTask(
            task_id=f"user:sim-runwayml:{email}-task:{uuid.uuid4()}",
            id=str(uuid.uuid4()),
            email=email,
            seq=self._seq,
            model=model,
            options=options,
            reply_url=str(body["replyUrl"]) if body.get("replyUrl") else None,
            reply_ref=str(body["replyRef"]) if body.get("replyRef") else None,
            explore=explore,
            seconds=seconds,
            base_url=base_url.rstrip("/"),
            running_steps=max(3, round(2 + seconds / 5)),
            fail_kind=fail_kind,
            created_at=stamp,
            updated_at=stamp,
        )
        task.history.append((PENDING, 0.0, time.monotonic()))
        self.tasks[task.task_id] = task
        self.creates.append(dict(body))
        return task

    # -- lifecycle -------------------------------------------------------------------------
    def explore_blocked(self, task: SimTask) -> bool:
        """An explore task waits while an older explore task of its account holds a slot."""
        return task.explore and any(
            t.explore and t.seq < task.seq for t in self.active_on(task.email) if t is not task
        )

    def step(self, task: SimTask) -> bool:
        """Move ``task`` one step forward; True when its visible state changed."""
        if task.terminal:
            return False
        n = task.running_steps
        if task.status in (PENDING, THROTTLED):
            if self.explore_blocked(task):
                if task.status == THROTTLED:
                    return False
                task.eta = 60
                task._set(THROTTLED, 0.0, "Waiting for another Explore mode generation")
                return True
            task.eta, task.steps_done = 0, 1
            task._set(RUNNING, 1 / (n + 1), f"Generating ({format_ratio(1 / (n + 1))})")
            return True
        if task.fail_kind == "moderate":
            task.error = dict(MODERATION_ERROR)
            task._set(FAILED, task.progress, None)
        elif task.fail_kind == "fail" and task.steps_done >= max(1, n // 2):
            task.error = TRANSIENT_ERROR
            task._set(FAILED, task.progress, None)
        elif task.steps_done < n:
            task.steps_done += 1
            ratio = task.steps_done / (n + 1)
            task._set(RUNNING, ratio, f"Generating ({format_ratio(ratio)})")
        else:
            task.artifacts = [self._artifact(task)]
            task._set(SUCCEEDED, 1.0, None)
        return True

    def _artifact(self, task: SimTask) -> dict[str, Any]:
        art = str(uuid.uuid4())
        self.artifact_ids.add(art)
        return {
            "id": art,
            "assetId": f"user:sim-runwayml:{task.email}-asset:{art}",
            "url": f"{task.base_url}/sim/artifacts/{art}.mp4",
            "previewUrls": [f"{task.base_url}/sim/artifacts/{art}.jpg"],
            "fileSize": str(SAMPLE_MP4.stat().st_size),
            "filename": f"{art}.mp4",
            "metadata": {
                "frameRate": 24,
                "duration": task.seconds,
                "dimensions": [task.options["width"], task.options["height"]],
            },
        }

    # -- scheduler, accounts, assets -------------------------------------------------------
    def scheduler(self) -> list[dict[str, Any]]:
        """``GET scheduler/``: tasks still running and tracked."""
        return [t.summary() for t in self.tasks.values() if t.active]

    def delete(self, task_id: str) -> SimTask:
        """``DELETE scheduler/{taskId}``: stop tracking; the slot is free at once."""
        task = self.tasks.get(task_id)
        if task is None or not task.active:
            raise SimError(404, {"error": f"Unable to locate running {task_id}"})
        task.deleted = True
        return task

    def accounts_json(self) -> dict[str, Any]:
        """``GET accounts/`` in the real shape, fake secrets included (clients must drop them)."""
        secrets = {"password": "sim-secret-password", "jwt": {"token": "sim-jwt"}}
        return {e: {"email": e, "maxJobs": n, **secrets} for e, n in self.accounts.items()}

    def add_asset(self, name: str, media_type: str, size: int, email: str | None = None) -> dict[str, Any]:
        """Register an uploaded asset on ``email`` or the account holding the fewest assets."""
        if email is not None and email not in self.accounts:
            raise bad_request(f"Runway account {email} not found")
        if email is None:
            counts = {e: 0 for e in self.accounts}
            for asset in self.assets.values():
                counts[asset["email"]] += 1
            email = min(counts, key=lambda e: counts[e])
        art = str(uuid.uuid4())
        asset = {
            "assetId": f"user:sim-runwayml:{email}-asset:{art}",
            "id": art,
            "email": email,
            "name": name,
            "mediaType": media_type,
            "fileSize": str(size),
            "createdAt": now_iso(),
        }
        self.assets[asset["assetId"]] = asset
        return asset

    def list_assets(self, media_type: str | None) -> list[dict[str, Any]]:
        """``GET assets/``, optionally filtered by ``image``/``video``."""
        return [a for a in self.assets.values() if media_type in (None, a["mediaType"])]
