"""The simulated upstream's checks of a ``videos/create`` body: the model rules of the seed page it
enforces, and its error answers. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_RATIO_RE = re.compile(r"^\d{1,2}:\d{1,2}$")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


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


def as_int(body: dict[str, Any], key: str) -> int | None:
    """An integer field, ``None`` when absent; anything else not an integer is a 400."""
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"Parameter {key} must be an integer") from None


def as_bool(value: Any) -> bool:
    """A boolean field as useapi.net reads it (form fields arrive as strings)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def validate(body: dict[str, Any]) -> tuple[int, str, str | None]:
    """Check a create body against the model rules: (seconds, aspect ratio, resolution) or a 400."""
    model = body.get("model")
    rule = MODELS.get(str(model)) if model else None
    if rule is None:
        raise bad_request(f"Parameter model ({model}) must be one of {', '.join(MODELS)}")
    if as_bool(body.get("exploreMode")) and not rule.explore:
        raise bad_request(f"Model {model} does not support exploreMode")
    duration = as_int(body, "duration")
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
    max_jobs = as_int(body, "maxJobs")
    if max_jobs is not None and not 1 <= max_jobs <= 10:
        raise bad_request("Parameter maxJobs must be between 1 and 10")
    for key in ("replyUrl", "replyRef"):
        if len(str(body.get(key) or "")) > 1024:
            raise bad_request(f"Parameter {key} is longer than 1024 characters")
    return seconds, str(ratio or "16:9"), resolution


def reply_url_under(url: str, root: str) -> bool:
    """True when ``url`` is ``{root}{token}``: same scheme and host, one plain segment after ``root``.

    The simulator mounted in a relay posts only to that relay's ``/callbacks/``, never to a URL a
    caller chose (which would make the relay an open HTTP client).
    """
    given, base = urlsplit(url), urlsplit(root)
    if (given.scheme, given.netloc) != (base.scheme, base.netloc) or given.query or given.fragment:
        return False
    rest = given.path.removeprefix(base.path)
    return given.path.startswith(base.path) and _TOKEN_RE.fullmatch(rest) is not None
