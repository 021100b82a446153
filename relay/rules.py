"""The model rules of ``POST videos/create``, as one declarative table, and the validator that reads it.

Source of truth: the seed page ``reference/videos-create.txt``. Pure logic, no I/O. The relay calls
:func:`validate` before it stores a job, so a request that breaks a rule is answered 422 here and
never reaches useapi.net (no credit is spent).

Interpretations of the seed page where it is not explicit (each is tested in ``tests/test_rules.py``):

- ``null`` for a field means "not given". An empty or whitespace-only ``text_prompt`` or
  ``multishot_prompt_N`` also counts as missing (and is left out of the body sent upstream).
- Image-to-video (I2V) means ``imageAssetId1`` is given; otherwise the request is text-to-video.
- Reference images are ``imageAssetId1`` (start frame) and ``imageAssetId2`` (end frame). The end frame
  is accepted only by the endFrame models the parameter docs name (Gen-4.5, Kling 3.0 Pro/Standard,
  Veo 3.1), and only together with ``imageAssetId1``. On those models the end frame does not count
  toward the table's reference-image maximum: that is how Gen-4.5 ("0–1", yet listed with endFrame)
  can take the end frame its docs promise; for Kling 3.0 and Veo ("0–2") start + end is the maximum
  anyway. Every other model takes ``imageAssetId1`` only, exactly its maximum of one, so the field
  rules enforce every count and no separate count check is needed.
- With multishot the total length comes from the shots, so ``duration`` is refused alongside it (and no
  default duration is filled in); ``text_prompt`` stays allowed.
- Integers may arrive as integer strings (``"5"``) or integral floats (``5.0``); ``"5.5"``, ``"5.0"``,
  ``5.5`` and booleans are refused. Booleans may be ``true``/``false`` or those words as strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ValidationError

# The seed page writes "all" for Gen-4, Gen-4 Turbo and Gen-4.5 image-to-video without listing them;
# these are the ratios Runway offers for those models.
ALL_ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
_WIDE = ("16:9", "9:16")
_SQUARE = ("16:9", "9:16", "1:1")
_ANIMATE = ("16:9", "9:16", "1:1", "4:3", "3:4")
_RES = ("720p", "1080p")

SEED_RANGE = (1, 4294967294)
MAX_JOBS_RANGE = (1, 10)
REPLY_MAX = 1024
SHOTS = range(1, 6)  # multishot_prompt_1..5 / multishot_duration_1..5
SHOTS_MIN = 2
SHOT_DURATION_RANGE = (3, 12)
SHOTS_TOTAL_MAX = 15
SHOT_PROMPT_MAX = 512

PromptRule = Literal["required", "optional", "unsupported"]
AudioRule = Literal["on", "always", "unsupported"]  # on: default true, may be false; always: true only


@dataclass(frozen=True)
class ModelRule:
    """What one model accepts, transcribed from the seed page's comparison tables."""

    name: str
    label: str
    durations: tuple[int, ...]  # (): not accepted (auto). Default: the first (for a range, its minimum)
    aspect_ratios_t2v: tuple[str, ...]  # (): aspect_ratio not accepted. Default: the first
    aspect_ratios_i2v: tuple[str, ...]
    prompt: PromptRule
    prompt_max: int  # characters; 0 when unsupported
    max_images: int  # reference images, not counting an end frame on endFrame models
    image_required: bool = False  # imageAssetId1 required
    end_frame: bool = False  # imageAssetId2 accepted
    video_required: bool = False  # videoAssetId accepted, and then required
    duration_range: bool = False  # durations is a continuous integer range
    resolutions: tuple[str, ...] = ()  # (): not accepted (auto). Default: the first
    audio: AudioRule = "on"
    seed: bool = False
    explore_mode: bool = True  # False: exploreMode true is refused (false is fine)
    multishot: bool = False

    def durations_text(self) -> str:
        """The allowed durations in words, e.g. ``5, 10`` or ``an integer from 2 to 10``."""
        if self.duration_range:
            return f"an integer from {self.durations[0]} to {self.durations[-1]}"
        return _choices(self.durations)


# The seed page's comparison tables, one entry per model, in the page's order.
# fmt: off
_TABLE: tuple[ModelRule, ...] = (
    ModelRule("gen4.5", "Gen-4.5", durations=tuple(range(2, 11)), duration_range=True,
              aspect_ratios_t2v=("16:9",), aspect_ratios_i2v=ALL_ASPECT_RATIOS,
              prompt="optional", prompt_max=5000, max_images=1, end_frame=True, seed=True),
    ModelRule("gen4", "Gen-4", durations=(5, 10),
              aspect_ratios_t2v=ALL_ASPECT_RATIOS, aspect_ratios_i2v=ALL_ASPECT_RATIOS, resolutions=("720p",),
              prompt="required", prompt_max=1000, max_images=1, image_required=True,
              audio="unsupported", seed=True),
    ModelRule("gen4-turbo", "Gen-4 Turbo", durations=(5, 10),
              aspect_ratios_t2v=ALL_ASPECT_RATIOS, aspect_ratios_i2v=ALL_ASPECT_RATIOS, resolutions=("720p",),
              prompt="required", prompt_max=1000, max_images=1, image_required=True,
              audio="unsupported", seed=True),
    ModelRule("kling-3.0-pro", "Kling 3.0 Pro", durations=(5, 10, 15),
              aspect_ratios_t2v=_SQUARE, aspect_ratios_i2v=_SQUARE,
              prompt="optional", prompt_max=2500, max_images=2, end_frame=True, multishot=True),
    ModelRule("kling-3.0-standard", "Kling 3.0 Standard", durations=(5, 10, 15),
              aspect_ratios_t2v=_SQUARE, aspect_ratios_i2v=_SQUARE,
              prompt="optional", prompt_max=2500, max_images=2, end_frame=True, multishot=True),
    ModelRule("kling-2.6-pro", "Kling 2.6 Pro", durations=(5, 10),
              aspect_ratios_t2v=_WIDE, aspect_ratios_i2v=_WIDE,
              prompt="required", prompt_max=2500, max_images=1),
    ModelRule("kling-2.6-i2v", "Kling 2.6 I2V", durations=(5, 10),
              aspect_ratios_t2v=(), aspect_ratios_i2v=(),
              prompt="required", prompt_max=2500, max_images=1, image_required=True),
    ModelRule("veo-3.1", "Veo 3.1", durations=(4, 6, 8),
              aspect_ratios_t2v=_WIDE, aspect_ratios_i2v=_WIDE, resolutions=_RES,
              prompt="optional", prompt_max=5000, max_images=2, end_frame=True, explore_mode=False),
    ModelRule("sora-2", "Sora 2", durations=(4, 8, 12),
              aspect_ratios_t2v=_WIDE, aspect_ratios_i2v=_WIDE,
              prompt="optional", prompt_max=1000, max_images=1, audio="always"),
    ModelRule("sora-2-pro", "Sora 2 Pro", durations=(4, 8, 12),
              aspect_ratios_t2v=_WIDE, aspect_ratios_i2v=_WIDE, resolutions=_RES,
              prompt="optional", prompt_max=1000, max_images=1, audio="always"),
    ModelRule("wan-2.6-flash", "Wan 2.6 Flash", durations=(5, 10, 15),
              aspect_ratios_t2v=_SQUARE, aspect_ratios_i2v=_SQUARE, resolutions=_RES,
              prompt="required", prompt_max=1500, max_images=1, image_required=True),
    ModelRule("wan-2.2-animate", "Wan 2.2 Animate", durations=(),
              aspect_ratios_t2v=_ANIMATE, aspect_ratios_i2v=_ANIMATE,
              prompt="unsupported", prompt_max=0, max_images=1, image_required=True,
              video_required=True, audio="unsupported"),
)
# fmt: on
MODELS: dict[str, ModelRule] = {rule.name: rule for rule in _TABLE}

_SHOT_FIELDS = tuple(f"multishot_{kind}_{n}" for n in SHOTS for kind in ("prompt", "duration"))
FIELDS: tuple[str, ...] = (
    "model", "email", "text_prompt", "duration", "aspect_ratio", "resolution", "audio", "seed",
    "imageAssetId1", "imageAssetId2", "videoAssetId", *_SHOT_FIELDS, "exploreMode", "replyUrl",
    "replyRef", "maxJobs",
)  # fmt: skip
_ORDER = {name: i for i, name in enumerate(FIELDS)}
_BLANK_IS_MISSING = {"text_prompt", *(f"multishot_prompt_{n}" for n in SHOTS)}

# Which rule field decides whether a model accepts a field at all.
_ACCEPTS: dict[str, Callable[[ModelRule], bool]] = {
    "text_prompt": lambda r: r.prompt != "unsupported",
    "duration": lambda r: bool(r.durations),
    "aspect_ratio": lambda r: bool(r.aspect_ratios_t2v or r.aspect_ratios_i2v),
    "resolution": lambda r: bool(r.resolutions),
    "audio": lambda r: r.audio != "unsupported",
    "seed": lambda r: r.seed,
    "imageAssetId2": lambda r: r.end_frame,
    "videoAssetId": lambda r: r.video_required,
    **{name: (lambda r: r.multishot) for name in _SHOT_FIELDS},
}


@dataclass(frozen=True)
class Problem:
    """One broken rule: the field and a message saying what is wrong and what is allowed."""

    field: str
    message: str


class _Bad(Exception):
    """A value of the wrong type; the message completes "<field> must be ..."."""


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _choices(values: Any) -> str:
    values = list(values)
    return str(values[0]) if len(values) == 1 else f"one of {_join(values)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad("an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if digits.isascii() and digits.isdecimal() and len(digits) <= 30:
            return int(text)
    raise _Bad(f"an integer, got {_show(value)}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Bad(f"true or false, got {_show(value)}")


@dataclass
class _Run:
    """One validation pass: the input, the problems found and the normalized body built so far."""

    params: Mapping[str, Any]
    found: list[Problem] = field(default_factory=list)
    out: dict[str, Any] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # fields already reported, never reported twice

    def present(self, name: str) -> bool:
        value = self.params.get(name)
        if isinstance(value, str) and name in _BLANK_IS_MISSING:
            return bool(value.strip())
        return value is not None

    def add(self, name: str, message: str) -> None:
        if name not in self.done:
            self.done.add(name)
            self.found.append(Problem(name, message))

    def coerce(self, name: str, convert: Callable[[Any], Any]) -> Any:
        """The converted value (stored in the body), or None after reporting a type problem."""
        try:
            value = self.out[name] = convert(self.params[name])
        except _Bad as exc:
            self.add(name, f"{name} must be {exc}")
            return None
        return value

    def integer(self, name: str, low: int, high: int, what: str = "") -> int | None:
        value = self.coerce(name, _as_int)
        if value is not None and not low <= value <= high:
            self.add(name, f"{name} {value} is out of range{what}; use an integer from {low} to {high}")
            return None
        return value

    def text(self, name: str, max_len: int | None = None, what: str = "") -> str | None:
        value = self.params[name]
        if not isinstance(value, str) or not value.strip():
            self.add(name, f"{name} must be a non-empty string, got {_show(value)}")
        elif max_len is not None and len(value) > max_len:
            self.add(name, f"{name} is {len(value)} characters; at most {max_len} allowed{what}")
        else:
            self.out[name] = value
            return value
        return None


def _unsupported(name: str, rule: ModelRule) -> str:
    """The message for a field this model does not take; names the models that do when they are few."""
    takers = [model for model, other in MODELS.items() if _ACCEPTS[name](other)]
    hint = f"models that take it: {_join(takers)}" if len(takers) <= len(MODELS) // 2 else "leave it out"
    return f"{name} is not supported by {rule.name}; {hint}"


def _check_model(run: _Run) -> ModelRule | None:
    value = run.params.get("model")
    rule = MODELS.get(value) if isinstance(value, str) else None
    if rule is not None:
        run.out["model"] = value
        return rule
    problem = "model is required" if value is None else f"model {_show(value)} is not supported"
    run.add("model", f"{problem}; use {_choices(MODELS)}")
    return None


def _check_fields(run: _Run, rule: ModelRule | None) -> None:
    """Unknown fields, and known fields that this model does not accept."""
    for key in run.params:
        name = str(key)
        if name not in _ORDER:
            hint = f"multishot shots are numbered 1 to {SHOTS[-1]}; " if name.startswith("multishot_") else ""
            run.add(name, f"unknown field {name}; {hint}allowed fields: {_join(FIELDS)}")
        elif rule is not None and name in _ACCEPTS and run.present(name) and not _ACCEPTS[name](rule):
            run.add(name, _unsupported(name, rule))


def _check_common(run: _Run) -> None:
    """Fields every model takes: email, replyUrl, replyRef, maxJobs."""
    for name, max_len in (("email", None), ("replyUrl", REPLY_MAX), ("replyRef", REPLY_MAX)):
        if run.present(name):
            run.text(name, max_len)
    if run.present("maxJobs"):
        run.integer("maxJobs", *MAX_JOBS_RANGE)


def _check_prompt(run: _Run, rule: ModelRule) -> None:
    if run.present("text_prompt"):
        run.text("text_prompt", rule.prompt_max, f" by {rule.name}")
    elif rule.prompt == "required":
        run.add("text_prompt", f"text_prompt is required by {rule.name} (up to {rule.prompt_max} characters)")


def _check_duration(run: _Run, rule: ModelRule, multishot: bool) -> None:
    if not rule.durations:
        return
    if multishot and run.present("duration"):
        run.add("duration", "duration cannot be combined with multishot; the shot durations set the length")
    elif run.present("duration"):
        value = run.coerce("duration", _as_int)
        if value is not None and value not in rule.durations:
            allowed = rule.durations_text()
            run.add("duration", f"duration {value} is not supported by {rule.name}; use {allowed}")
    elif not multishot:
        # "Default is the first supported value for the model": for Gen-4.5's range 2–10 that is 2.
        run.out["duration"] = rule.durations[0]


def _check_choice(run: _Run, rule: ModelRule, name: str, allowed: tuple[str, ...], mode: str) -> None:
    """A field with a fixed list of string values (aspect_ratio, resolution); the default is the first."""
    if not allowed:
        if run.present(name):
            run.add(name, f"{name} is not supported by {rule.name}{mode}")
    elif not run.present(name):
        run.out[name] = allowed[0]
    elif run.params[name] in allowed:
        run.out[name] = run.params[name]
    else:
        given = _show(run.params[name])
        run.add(name, f"{name} {given} is not supported by {rule.name}{mode}; use {_choices(allowed)}")


def _check_frames(run: _Run, rule: ModelRule) -> None:
    """imageAssetId1 (start frame / reference image), imageAssetId2 (end frame), videoAssetId."""
    for name in ("imageAssetId1", "imageAssetId2", "videoAssetId"):
        if run.present(name):
            run.text(name)
    if rule.image_required and not run.present("imageAssetId1"):
        run.add("imageAssetId1", f"imageAssetId1 (a reference image) is required by {rule.name}")
    if run.present("imageAssetId2") and not run.present("imageAssetId1"):
        run.add("imageAssetId2", "imageAssetId2 (end frame) needs imageAssetId1 (start frame) as well")
    if rule.video_required and not run.present("videoAssetId"):
        run.add("videoAssetId", f"videoAssetId (a reference video) is required by {rule.name}")


def _check_switches(run: _Run, rule: ModelRule) -> None:
    """audio, seed and exploreMode."""
    if run.present("audio") and run.coerce("audio", _as_bool) is False and rule.audio == "always":
        run.add("audio", f"audio is always on for {rule.name}; leave it out or send true")
    if run.present("seed"):
        run.integer("seed", *SEED_RANGE)
    if run.present("exploreMode") and run.coerce("exploreMode", _as_bool) and not rule.explore_mode:
        run.add("exploreMode", f"exploreMode true is not supported by {rule.name}; omit it or send false")


def _check_multishot(run: _Run, rule: ModelRule) -> bool:
    """multishot_prompt_N / multishot_duration_N; True when the request uses multishot."""
    shots = [n for n in SHOTS if any(run.present(f"multishot_{kind}_{n}") for kind in ("prompt", "duration"))]
    if not rule.multishot or not shots:
        return False
    total = 0
    for n in shots:
        prompt, duration = f"multishot_prompt_{n}", f"multishot_duration_{n}"
        for name, other in ((prompt, duration), (duration, prompt)):
            if not run.present(name):
                run.add(name, f"shot {n} has {other} but no {name}; each shot needs a prompt and a duration")
        if run.present(prompt):
            run.text(prompt, SHOT_PROMPT_MAX, " per shot")
        if run.present(duration):
            total += run.integer(duration, *SHOT_DURATION_RANGE, " for a shot") or 0
    gaps = [n for n in range(1, shots[-1]) if n not in shots]
    if gaps:
        gap = gaps[0]
        run.add(f"multishot_prompt_{gap}", f"shot {gap} is missing; number the shots 1, 2, 3… without gaps")
    if len(shots) < SHOTS_MIN:
        nxt = f"multishot_prompt_{min(n for n in SHOTS if n not in shots)}"
        run.add(nxt, f"multishot needs {SHOTS_MIN} to {len(SHOTS)} shots; got {len(shots)}")
    if total > SHOTS_TOTAL_MAX:
        last = f"multishot_duration_{shots[-1]}"
        run.add(last, f"multishot shots total {total} s; at most {SHOTS_TOTAL_MAX} s allowed")
    return True


def _run(params: Mapping[str, Any]) -> _Run:
    run = _Run(params)
    if not isinstance(params, Mapping):
        run.add("body", "the request body must be an object of videos/create fields")
        return run
    rule = _check_model(run)
    _check_fields(run, rule)
    _check_common(run)
    if rule is not None:
        _check_prompt(run, rule)
        i2v = run.present("imageAssetId1")
        ratios = rule.aspect_ratios_i2v if i2v else rule.aspect_ratios_t2v
        same = rule.aspect_ratios_i2v == rule.aspect_ratios_t2v
        mode = "" if same else f" for {'image' if i2v else 'text'}-to-video"
        _check_choice(run, rule, "aspect_ratio", ratios, mode)
        _check_choice(run, rule, "resolution", rule.resolutions, "")
        _check_frames(run, rule)
        _check_switches(run, rule)
        _check_duration(run, rule, _check_multishot(run, rule))
    run.found.sort(key=lambda p: _ORDER.get(p.field, len(_ORDER)))
    return run


def problems(params: Mapping[str, Any]) -> list[Problem]:
    """Every rule the request breaks (not just the first), in field order; ``[]`` when it is valid."""
    return _run(params).found


def validate(params: Mapping[str, Any]) -> dict[str, Any]:
    """The normalized videos/create body, or :class:`ValidationError` listing every problem.

    The body has coerced types and defaults for ``duration``, ``aspect_ratio`` and ``resolution`` where
    the model takes them; other fields not given are left out. ``replyUrl``/``replyRef`` are never added.
    """
    run = _run(params)
    if run.found:
        first = run.found[0]
        listed = [{"field": p.field, "error": p.message} for p in run.found]
        raise ValidationError(first.message, field=first.field, problems=listed)
    return {name: run.out[name] for name in FIELDS if name in run.out}


_MULTISHOT = {
    "shots": [SHOTS_MIN, len(SHOTS)],
    "shot_duration": list(SHOT_DURATION_RANGE),
    "total_max": SHOTS_TOTAL_MAX,
    "prompt_max": SHOT_PROMPT_MAX,
}


def _describe(rule: ModelRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "label": rule.label,
        "durations": list(rule.durations),
        "duration_range": [rule.durations[0], rule.durations[-1]] if rule.duration_range else None,
        "default_duration": rule.durations[0] if rule.durations else None,
        "aspect_ratios_t2v": list(rule.aspect_ratios_t2v),
        "aspect_ratios_i2v": list(rule.aspect_ratios_i2v),
        "resolutions": list(rule.resolutions),
        "max_images": rule.max_images,
        "image_required": rule.image_required,
        "end_frame": rule.end_frame,
        "video_required": rule.video_required,
        "text_prompt": rule.prompt,
        "prompt_max": rule.prompt_max,
        "audio": rule.audio,
        "seed": rule.seed,
        "seed_range": list(SEED_RANGE) if rule.seed else None,
        "explore_mode": rule.explore_mode,
        "multishot": dict(_MULTISHOT) if rule.multishot else None,
    }


def rules_table() -> list[dict[str, Any]]:
    """A JSON-able description of every model, in seed order (for ``GET /api/models`` and the dashboard)."""
    return [_describe(rule) for rule in MODELS.values()]


_HEADER = ("model", "durations", "aspect ratios", "resolution", "images", "prompt", "audio", "seed",
           "explore", "multishot")  # fmt: skip


def _ratios(values: tuple[str, ...]) -> str:
    return "all" if values == ALL_ASPECT_RATIOS else ",".join(values) or "-"


def _row(rule: ModelRule) -> list[str]:
    if rule.duration_range:
        durations = f"{rule.durations[0]}-{rule.durations[-1]}"
    else:
        durations = ",".join(map(str, rule.durations)) or "auto"
    t2v, i2v = _ratios(rule.aspect_ratios_t2v), _ratios(rule.aspect_ratios_i2v)
    images = f"{int(rule.image_required)}-{rule.max_images}" + ("+end" if rule.end_frame else "")
    images += "+video" if rule.video_required else ""
    prompt = "-" if rule.prompt == "unsupported" else f"{rule.prompt[:3]} {rule.prompt_max}"
    yes_no = {True: "yes", False: "no"}
    audio = "-" if rule.audio == "unsupported" else rule.audio
    ratios = t2v if t2v == i2v else f"t2v {t2v}; i2v {i2v}"
    resolutions = ",".join(rule.resolutions) or "auto"
    multishot = f"{SHOTS_MIN}-{len(SHOTS)}" if rule.multishot else "-"
    explore = yes_no[rule.explore_mode]
    return [rule.name, durations, ratios, resolutions, images, prompt, audio, yes_no[rule.seed], explore,
            multishot]  # fmt: skip


def format_table() -> str:
    """A plain-text table of the model rules (one row per model) for ``runway-relay models``."""
    rows = [list(_HEADER), *(_row(rule) for rule in MODELS.values())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
