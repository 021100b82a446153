"""State of the simulated useapi.net Runway upstream: accounts, assets, tasks and their lifecycle.

Pure-ish: no HTTP and no asyncio here, only state and the rules that move it (the create body's checks
are in :mod:`.validation`). The HTTP side
(:mod:`runway_relay.simulator.app`) drives :meth:`Engine.step` on a timer and delivers callbacks.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tasks import FAILED, PENDING, RUNNING, SUCCEEDED, THROTTLED, SimTask, format_ratio, now_iso
from .validation import MODELS as MODELS  # re-exported: the rules the simulator enforces
from .validation import ModelRule as ModelRule
from .validation import SimError, as_bool, as_int, bad_request, validate

MEDIA_DIR = Path(__file__).resolve().parent
SAMPLE_MP4 = MEDIA_DIR / "sample.mp4"
PREVIEW_JPG = MEDIA_DIR / "preview.jpg"

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
SERVER_ERROR = "Internal Server Error (simulated)"
_ASSET_RE = re.compile(r"^user:[^:]*-runwayml:(?P<email>.+)-asset:(?P<uuid>[0-9a-fA-F-]{8,})$")


@dataclass(frozen=True)
class Chaos:
    """Callback misbehaviour: duplicates, out-of-order delivery, drops and random delays."""

    duplicate: float = 0.0
    shuffle: bool = False
    drop: float = 0.0
    delay_max: float = 0.0


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


class Engine:
    """Accounts, assets and tasks of the simulated upstream, with the rules that move them."""

    def __init__(
        self,
        accounts: dict[str, int],
        *,
        rng: random.Random,
        runway_429_rate: float = 0.0,
        runway_capacity: int | None = None,
    ) -> None:
        if not accounts:
            raise ValueError("the simulator needs at least one account")
        self.accounts: dict[str, int] = {email: int(n) for email, n in accounts.items()}
        self.rng = rng
        self.runway_429_rate = runway_429_rate
        self.runway_capacity = runway_capacity
        self.create_log: list[dict[str, Any]] = []  # every create request: at, email, replyRef, status
        self._once: set[tuple[str, str]] = set()
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
    def create(self, body: dict[str, Any], base_url: str) -> SimTask:
        """Accept a ``videos/create`` body or raise :class:`SimError` (400/402/429/500)."""
        self.create_attempts += 1
        entry: dict[str, Any] = {"at": time.monotonic(), "email": None, "replyRef": body.get("replyRef")}
        self.create_log.append(entry)
        try:
            task = self._create(body, base_url, entry)
        except SimError as exc:
            entry["status"] = exc.status
            raise
        entry["status"] = 500 if task.lost_answer else 200
        return task

    def _first_time(self, marker: str, body: dict[str, Any]) -> bool:
        """True the first time ``marker`` is seen for this replyRef (or prompt): "once" markers."""
        key = (marker, str(body.get("replyRef") or body.get("text_prompt")))
        if key in self._once:
            return False
        self._once.add(key)
        return True

    def _create(self, body: dict[str, Any], base_url: str, entry: dict[str, Any]) -> SimTask:
        seconds, ratio, resolution = validate(body)
        prompt = str(body.get("text_prompt") or "")
        if "[reject]" in prompt:
            raise bad_request("Prompt rejected by the simulator ([reject] marker)")
        if "[nocredits]" in prompt:
            raise SimError(402, {"error": NO_CREDITS})
        if "[error500]" in prompt and self._first_time("error500", body):
            raise SimError(500, {"error": SERVER_ERROR, "code": 500})
        email = entry["email"] = self._pick_account(body)
        limit = as_int(body, "maxJobs") or self.accounts[email]
        running = self.active_on(email)
        if len(running) >= limit:
            self.rejected_429 += 1
            entries = [{"email": email, "id": t.id, **t.summary()} for t in running]
            message = f"Account {email} is busy executing {limit} tasks"
            raise SimError(429, {"error": message, "runningTasks": {email: entries}, "code": 429})
        if self._runway_refuses(body, prompt, len(running)):
            self.rejected_429 += 1
            raise SimError(429, {"error": RUNWAY_429})
        task = self._accept(body, email, base_url, seconds, dimensions(ratio, resolution))
        task.lost_answer = "[accept500]" in prompt and self._first_time("accept500", body)
        return task

    def _runway_refuses(self, body: dict[str, Any], prompt: str, running: int) -> bool:
        """Runway's own 429: its dynamic limit, a random refusal, or the ``[throttle]`` marker (once)."""
        if self.runway_capacity is not None and running >= self.runway_capacity:
            return True
        if "[throttle]" in prompt and self._first_time("throttle", body):
            return True
        return bool(self.runway_429_rate) and self.rng.random() < self.runway_429_rate

    def _accept(
        self, body: dict[str, Any], email: str, base_url: str, seconds: int, size: tuple[int, int]
    ) -> SimTask:
        model, explore = str(body["model"]), as_bool(body.get("exploreMode"))
        prompt, (width, height) = str(body.get("text_prompt") or ""), size
        seed = as_int(body, "seed") or self.rng.randint(1, 4294967294)
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
        fail_kind = "stall" if "[stall]" in prompt else fail_kind  # stays RUNNING until cancelled
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
        if task.fail_kind == "stall":
            return False
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
    def stats(self) -> dict[str, Any]:
        """``GET /sim/stats``: what reached the simulator, for checks from another process."""
        return {
            "creates": [c.get("replyRef") for c in self.creates],
            "create_attempts": self.create_attempts,
            "create_log": [{k: v for k, v in e.items() if k != "at"} for e in self.create_log],
            "rejected_429": self.rejected_429,
            "tasks": [
                {
                    "taskId": t.task_id,
                    "email": t.email,
                    "replyRef": t.reply_ref,
                    "status": t.status,
                    "deleted": t.deleted,
                }
                for t in self.tasks.values()
            ],
        }

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
