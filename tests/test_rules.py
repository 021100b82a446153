"""The model rules of videos/create (seed page), checked from the table and by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runway_relay.errors import ValidationError
from runway_relay.rules import (
    ALL_ASPECT_RATIOS,
    FIELDS,
    MODELS,
    ModelRule,
    Problem,
    format_table,
    problems,
    rules_table,
    validate,
)

SEED_ORDER = [
    "gen4.5", "gen4", "gen4-turbo", "kling-3.0-pro", "kling-3.0-standard", "kling-2.6-pro",
    "kling-2.6-i2v", "veo-3.1", "sora-2", "sora-2-pro", "wan-2.6-flash", "wan-2.2-animate",
]  # fmt: skip


def minimal(model: str, **extra: Any) -> dict[str, Any]:
    """The smallest valid request for ``model`` (its required fields), plus ``extra``."""
    rule = MODELS[model]
    body: dict[str, Any] = {"model": model}
    if rule.prompt == "required":
        body["text_prompt"] = "a red fox running through snow"
    if rule.image_required:
        body["imageAssetId1"] = "img-1"
    if rule.video_required:
        body["videoAssetId"] = "vid-1"
    body.update(extra)
    return body


def fields_of(params: dict[str, Any]) -> list[str]:
    return [p.field for p in problems(params)]


def refused(params: dict[str, Any], field: str) -> str:
    """Assert ``field`` has a problem; return its message."""
    found = {p.field: p.message for p in problems(params)}
    assert field in found, f"expected a problem on {field}, got {found}"
    with pytest.raises(ValidationError):
        validate(params)
    return found[field]


def multishot(*shots: tuple[Any, Any], start: int = 1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "kling-3.0-pro", **extra}
    for n, (prompt, duration) in enumerate(shots, start):
        if prompt is not None:
            body[f"multishot_prompt_{n}"] = prompt
        if duration is not None:
            body[f"multishot_duration_{n}"] = duration
    return body


# -- the table itself -------------------------------------------------------------------------


def test_table_has_all_twelve_models_in_seed_order() -> None:
    assert list(MODELS) == SEED_ORDER
    assert all(isinstance(rule, ModelRule) and rule.name == name for name, rule in MODELS.items())
    with pytest.raises(AttributeError):
        MODELS["gen4"].seed = False  # type: ignore[misc]


def test_table_transcribes_the_seed_page() -> None:
    assert MODELS["gen4.5"].durations == tuple(range(2, 11)) and MODELS["gen4.5"].duration_range
    assert MODELS["veo-3.1"].durations == (4, 6, 8)
    assert MODELS["sora-2-pro"].durations == (4, 8, 12)
    assert MODELS["wan-2.2-animate"].durations == ()
    assert MODELS["gen4"].aspect_ratios_t2v == ALL_ASPECT_RATIOS
    assert MODELS["wan-2.2-animate"].aspect_ratios_t2v == ("16:9", "9:16", "1:1", "4:3", "3:4")
    limits = {name: rule.prompt_max for name, rule in MODELS.items()}
    assert limits == {
        "gen4.5": 5000, "gen4": 1000, "gen4-turbo": 1000, "kling-3.0-pro": 2500,
        "kling-3.0-standard": 2500, "kling-2.6-pro": 2500, "kling-2.6-i2v": 2500, "veo-3.1": 5000,
        "sora-2": 1000, "sora-2-pro": 1000, "wan-2.6-flash": 1500, "wan-2.2-animate": 0,
    }  # fmt: skip
    assert {n for n, r in MODELS.items() if r.end_frame} == {
        "gen4.5", "kling-3.0-pro", "kling-3.0-standard", "veo-3.1"
    }  # fmt: skip
    assert {n for n, r in MODELS.items() if r.seed} == {"gen4.5", "gen4", "gen4-turbo"}
    assert {n for n, r in MODELS.items() if r.multishot} == {"kling-3.0-pro", "kling-3.0-standard"}
    assert {n for n, r in MODELS.items() if not r.explore_mode} == {"veo-3.1"}
    assert {n for n, r in MODELS.items() if r.audio == "always"} == {"sora-2", "sora-2-pro"}
    assert {n for n, r in MODELS.items() if r.audio == "unsupported"} == {
        "gen4",
        "gen4-turbo",
        "wan-2.2-animate",
    }
    assert {n for n, r in MODELS.items() if r.resolutions} == {
        "gen4", "gen4-turbo", "veo-3.1", "sora-2-pro", "wan-2.6-flash"
    }  # fmt: skip


def test_rules_table_is_json_and_matches_models() -> None:
    table = rules_table()
    json.dumps(table)
    assert [row["name"] for row in table] == SEED_ORDER
    gen45 = table[0]
    assert gen45["durations"] == list(range(2, 11)) and gen45["duration_range"] == [2, 10]
    assert gen45["aspect_ratios_t2v"] == ["16:9"] and gen45["aspect_ratios_i2v"] == list(ALL_ASPECT_RATIOS)
    assert table[3]["multishot"]["total_max"] == 15 and table[0]["multishot"] is None


def test_format_table_has_one_row_per_model_and_fits() -> None:
    lines = format_table().splitlines()
    assert len(lines) == 2 + len(MODELS)
    assert all(len(line) <= 120 for line in lines)
    for name, line in zip(MODELS, lines[2:], strict=True):
        assert line.split()[0] == name
    assert "multishot" in lines[0] and "explore" in lines[0]


# -- cases generated from the table -----------------------------------------------------------

CASES = [(name, rule) for name, rule in MODELS.items()]


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_minimal_request_is_valid_and_gets_defaults(name: str, rule: ModelRule) -> None:
    body = validate(minimal(name))
    assert body["model"] == name
    assert body.get("duration") == (rule.durations[0] if rule.durations else None)
    ratios = rule.aspect_ratios_i2v if rule.image_required else rule.aspect_ratios_t2v
    assert body.get("aspect_ratio") == (ratios[0] if ratios else None)
    assert body.get("resolution") == (rule.resolutions[0] if rule.resolutions else None)
    assert "replyUrl" not in body and "replyRef" not in body and "audio" not in body


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_every_allowed_duration_validates_and_neighbours_are_refused(name: str, rule: ModelRule) -> None:
    if not rule.durations:
        assert "duration" in refused(minimal(name, duration=5), "duration")
        return
    for value in rule.durations:
        assert validate(minimal(name, duration=value))["duration"] == value
    for value in (min(rule.durations) - 1, max(rule.durations) + 1, 7 if 7 not in rule.durations else 11):
        message = refused(minimal(name, duration=value), "duration")
        assert str(value) in message and name in message


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_every_allowed_aspect_ratio_validates_and_others_are_refused(name: str, rule: ModelRule) -> None:
    t2v, i2v = minimal(name), minimal(name, imageAssetId1="img-1")
    for body, allowed in ((t2v, rule.aspect_ratios_t2v), (i2v, rule.aspect_ratios_i2v)):
        if rule.image_required and body is t2v:
            continue
        for ratio in allowed:
            assert validate({**body, "aspect_ratio": ratio})["aspect_ratio"] == ratio
        for ratio in (*ALL_ASPECT_RATIOS, "2:1"):
            if ratio not in allowed:
                refused({**body, "aspect_ratio": ratio}, "aspect_ratio")


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_every_allowed_resolution_validates_and_others_are_refused(name: str, rule: ModelRule) -> None:
    for resolution in rule.resolutions:
        assert validate(minimal(name, resolution=resolution))["resolution"] == resolution
    for resolution in ("720p", "1080p", "4k"):
        if resolution not in rule.resolutions:
            refused(minimal(name, resolution=resolution), "resolution")


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_required_fields_missing_are_problems(name: str, rule: ModelRule) -> None:
    required = [
        field
        for field, needed in (
            ("text_prompt", rule.prompt == "required"),
            ("imageAssetId1", rule.image_required),
            ("videoAssetId", rule.video_required),
        )
        if needed
    ]
    for field in required:
        body = minimal(name)
        del body[field]
        assert "required" in refused(body, field)


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_unsupported_fields_are_problems(name: str, rule: ModelRule) -> None:
    unsupported = {
        "text_prompt": ("hello", rule.prompt == "unsupported"),
        "audio": (True, rule.audio == "unsupported"),
        "seed": (42, not rule.seed),
        "imageAssetId2": ("img-2", not rule.end_frame),
        "videoAssetId": ("vid-1", not rule.video_required),
        "multishot_prompt_1": ("a", not rule.multishot),
        "resolution": ("720p", not rule.resolutions),
        "duration": (rule.durations[0] if rule.durations else 5, not rule.durations),
    }
    for field, (value, refused_here) in unsupported.items():
        body = minimal(name, imageAssetId1="img-1", **{field: value})
        if refused_here:
            assert "not supported" in refused(body, field)
        else:
            assert field not in fields_of(body)


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_prompt_length_limit(name: str, rule: ModelRule) -> None:
    if rule.prompt == "unsupported":
        return
    assert validate(minimal(name, text_prompt="x" * rule.prompt_max))["text_prompt"] == "x" * rule.prompt_max
    message = refused(minimal(name, text_prompt="x" * (rule.prompt_max + 1)), "text_prompt")
    assert str(rule.prompt_max) in message


# -- hand-written, one rule at a time ---------------------------------------------------------


def test_model_missing_or_unknown_lists_valid_models() -> None:
    for body in ({}, {"model": "gen5"}, {"model": 4}, {"model": None}):
        message = refused(body, "model")
        assert "gen4.5" in message and "wan-2.2-animate" in message


def test_gen45_duration_is_a_continuous_range_with_default_two() -> None:
    assert validate({"model": "gen4.5", "duration": 7})["duration"] == 7
    assert validate({"model": "gen4.5"})["duration"] == 2
    assert "from 2 to 10" in refused({"model": "gen4.5", "duration": 11}, "duration")
    assert "5, 10" in refused(minimal("gen4", duration=7), "duration")


def test_gen45_aspect_ratio_depends_on_image() -> None:
    message = refused({"model": "gen4.5", "aspect_ratio": "9:16"}, "aspect_ratio")
    assert "text-to-video" in message and "16:9" in message
    assert (
        validate({"model": "gen4.5", "aspect_ratio": "9:16", "imageAssetId1": "a"})["aspect_ratio"] == "9:16"
    )
    assert validate({"model": "gen4.5", "imageAssetId1": "a"})["aspect_ratio"] == "16:9"
    assert validate(minimal("gen4", aspect_ratio="21:9"))["aspect_ratio"] == "21:9"


def test_kling_26_i2v_refuses_aspect_ratio() -> None:
    assert "not supported" in refused(minimal("kling-2.6-i2v", aspect_ratio="16:9"), "aspect_ratio")
    assert "aspect_ratio" not in validate(minimal("kling-2.6-i2v"))


def test_resolution_defaults_and_refusals() -> None:
    assert validate({"model": "veo-3.1"})["resolution"] == "720p"
    assert validate({"model": "sora-2-pro", "resolution": "1080p"})["resolution"] == "1080p"
    assert "720p" in refused(minimal("gen4", resolution="1080p"), "resolution")
    refused({"model": "sora-2", "resolution": "720p"}, "resolution")
    refused({"model": "kling-3.0-pro", "resolution": "1080p"}, "resolution")


def test_end_frame_rules() -> None:
    # gen4.5: "0–1" reference images but an endFrame model: start + end frame is accepted.
    body = validate({"model": "gen4.5", "imageAssetId1": "a", "imageAssetId2": "b"})
    assert body["imageAssetId1"] == "a" and body["imageAssetId2"] == "b"
    validate({"model": "veo-3.1", "imageAssetId1": "a", "imageAssetId2": "b"})
    validate({"model": "kling-3.0-standard", "imageAssetId1": "a", "imageAssetId2": "b"})
    assert "imageAssetId1" in refused({"model": "gen4.5", "imageAssetId2": "b"}, "imageAssetId2")
    assert "veo-3.1" in refused(
        {"model": "sora-2", "imageAssetId1": "a", "imageAssetId2": "b"}, "imageAssetId2"
    )
    refused(minimal("gen4", imageAssetId2="b"), "imageAssetId2")
    refused(minimal("kling-2.6-pro", imageAssetId1="a", imageAssetId2="b"), "imageAssetId2")


def test_asset_ids_must_be_non_empty_strings() -> None:
    refused(minimal("gen4", imageAssetId1=""), "imageAssetId1")
    refused(minimal("gen4", imageAssetId1=5), "imageAssetId1")
    refused(minimal("wan-2.2-animate", videoAssetId=["x"]), "videoAssetId")


def test_video_asset_only_for_wan_animate_where_required() -> None:
    assert validate(minimal("wan-2.2-animate"))["videoAssetId"] == "vid-1"
    assert "required" in refused({"model": "wan-2.2-animate", "imageAssetId1": "a"}, "videoAssetId")
    assert "wan-2.2-animate" in refused({"model": "veo-3.1", "videoAssetId": "v"}, "videoAssetId")


def test_text_prompt_required_optional_unsupported_and_blank() -> None:
    assert "required" in refused({"model": "kling-2.6-pro"}, "text_prompt")
    assert "required" in refused({"model": "kling-2.6-pro", "text_prompt": "   "}, "text_prompt")
    assert "text_prompt" not in validate({"model": "sora-2", "text_prompt": " "})
    assert validate({"model": "sora-2", "text_prompt": "fox"})["text_prompt"] == "fox"
    refused(minimal("wan-2.2-animate", text_prompt="dance"), "text_prompt")
    assert "text_prompt" not in validate(minimal("wan-2.2-animate", text_prompt=""))
    refused({"model": "sora-2", "text_prompt": 12}, "text_prompt")


def test_audio_rules() -> None:
    assert validate({"model": "gen4.5", "audio": False})["audio"] is False
    assert validate({"model": "veo-3.1", "audio": "true"})["audio"] is True
    assert validate({"model": "kling-2.6-pro", "text_prompt": "x", "audio": "false"})["audio"] is False
    assert validate({"model": "sora-2", "audio": True})["audio"] is True
    assert "always on" in refused({"model": "sora-2-pro", "audio": False}, "audio")
    refused(minimal("gen4", audio=True), "audio")
    refused({"model": "gen4.5", "audio": 1}, "audio")
    refused({"model": "gen4.5", "audio": "yes"}, "audio")


@pytest.mark.parametrize(("seed", "ok"), [(0, False), (1, True), (4294967294, True), (4294967295, False)])
def test_seed_bounds(seed: int, ok: bool) -> None:
    body = {"model": "gen4.5", "seed": seed}
    if ok:
        assert validate(body)["seed"] == seed
    else:
        assert "1 to 4294967294" in refused(body, "seed")


def test_seed_only_gen4_family() -> None:
    assert validate(minimal("gen4-turbo", seed="77"))["seed"] == 77
    assert "gen4.5, gen4, gen4-turbo" in refused({"model": "veo-3.1", "seed": 5}, "seed")


def test_explore_mode() -> None:
    assert "veo-3.1" in refused({"model": "veo-3.1", "exploreMode": True}, "exploreMode")
    refused({"model": "veo-3.1", "exploreMode": "true"}, "exploreMode")
    assert validate({"model": "veo-3.1", "exploreMode": False})["exploreMode"] is False
    assert validate({"model": "sora-2", "exploreMode": "true"})["exploreMode"] is True
    refused({"model": "sora-2", "exploreMode": "maybe"}, "exploreMode")


def test_email_reply_fields_and_max_jobs() -> None:
    body = validate({"model": "sora-2", "email": "a@b.c", "maxJobs": "3", "replyRef": "r" * 1024})
    assert body["email"] == "a@b.c" and body["maxJobs"] == 3 and len(body["replyRef"]) == 1024
    refused({"model": "sora-2", "email": " "}, "email")
    refused({"model": "sora-2", "email": 3}, "email")
    refused({"model": "sora-2", "replyUrl": "h" * 1025}, "replyUrl")
    refused({"model": "sora-2", "replyRef": "r" * 1025}, "replyRef")
    for jobs in (0, 11, "ten", 2.5, True):
        refused({"model": "sora-2", "maxJobs": jobs}, "maxJobs")
    assert validate({"model": "sora-2", "maxJobs": 10})["maxJobs"] == 10


def test_numbers_as_strings_and_integral_floats_are_coerced() -> None:
    body = validate({"model": "gen4.5", "duration": "5", "seed": " 12 ", "maxJobs": 2.0})
    assert body["duration"] == 5 and body["seed"] == 12 and body["maxJobs"] == 2
    assert isinstance(body["duration"], int)


@pytest.mark.parametrize("value", ["5.5", 5.5, True, False, "five", "", [5], {"n": 5}, "5.0", float("nan")])
def test_non_integers_are_refused(value: Any) -> None:
    assert "integer" in refused({"model": "gen4.5", "duration": value}, "duration")


def test_unknown_fields_are_problems() -> None:
    assert "unknown field" in refused({"model": "sora-2", "duraton": 4}, "duraton")
    assert "1 to 5" in refused(multishot(("a", 3), ("b", 3), multishot_prompt_6="c"), "multishot_prompt_6")
    assert "unknown field" in refused({"model": "sora-2", "handlers": ["x"]}, "handlers")


def test_several_problems_are_reported_together() -> None:
    body = {"model": "gen4", "duration": 7, "seed": 0, "audio": True, "colour": "red"}
    found = fields_of(body)
    assert found == ["text_prompt", "duration", "audio", "seed", "imageAssetId1", "colour"]
    with pytest.raises(ValidationError) as info:
        validate(body)
    err = info.value
    assert err.field == "text_prompt" and err.message == problems(body)[0].message
    assert [p["field"] for p in err.problems] == found
    assert all(set(p) == {"field", "error"} for p in err.problems)
    assert err.to_json()["problems"] == err.problems


def test_null_means_not_given() -> None:
    assert validate({"model": "veo-3.1", "seed": None, "duration": None}) == validate({"model": "veo-3.1"})


def test_valid_request_returns_normalized_body_in_field_order() -> None:
    body = validate({"exploreMode": "false", "duration": "8", "model": "veo-3.1", "text_prompt": "t"})
    assert body == {
        "model": "veo-3.1",
        "text_prompt": "t",
        "duration": 8,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "exploreMode": False,
    }
    assert list(body) == [f for f in FIELDS if f in body]
    assert problems({"model": "veo-3.1"}) == []
    assert problems({}) == [Problem("model", problems({})[0].message)]


# -- multishot --------------------------------------------------------------------------------


def test_multishot_valid() -> None:
    body = validate(multishot(("a", 5), ("b", "5"), ("c", 5), text_prompt="overall"))
    assert body["multishot_duration_2"] == 5 and body["multishot_prompt_3"] == "c"
    assert "duration" not in body and body["text_prompt"] == "overall"
    validate(multishot(("a", 3), ("b", 3), ("c", 3), ("d", 3), ("e", 3), model="kling-3.0-standard"))


def test_multishot_edge_cases() -> None:
    assert "2 to 5 shots" in refused(multishot(("a", 5)), "multishot_prompt_2")
    refused(multishot(*[("p", 3)] * 6), "multishot_prompt_6")
    assert "15" in refused(multishot(("a", 8), ("b", 8)), "multishot_duration_2")
    assert "3 to 12" in refused(multishot(("a", 2), ("b", 5)), "multishot_duration_1")
    refused(multishot(("a", 13), ("b", 2)), "multishot_duration_1")
    assert "512" in refused(multishot(("x" * 513, 5), ("b", 5)), "multishot_prompt_1")
    validate(multishot(("x" * 512, 5), ("b", 5)))
    assert "prompt and a duration" in refused(multishot(("a", None), ("b", 5)), "multishot_duration_1")
    refused(multishot((None, 5), ("b", 5)), "multishot_prompt_1")
    refused(multishot(("  ", 5), ("b", 5)), "multishot_prompt_1")
    refused(multishot(("a", "4.5"), ("b", 5)), "multishot_duration_1")


def test_multishot_gap_in_numbering() -> None:
    body = {"model": "kling-3.0-pro", "multishot_prompt_1": "a", "multishot_duration_1": 4}
    body |= {"multishot_prompt_3": "c", "multishot_duration_3": 4}
    assert "missing" in refused(body, "multishot_prompt_2")
    refused(
        {"model": "kling-3.0-pro", "multishot_prompt_2": "b", "multishot_duration_2": 4}, "multishot_prompt_1"
    )


def test_multishot_refuses_duration_and_other_models() -> None:
    assert "multishot" in refused(multishot(("a", 5), ("b", 5), duration=10), "duration")
    refused(multishot(("a", 5), ("b", 5), model="kling-2.6-pro", text_prompt="x"), "multishot_prompt_1")
    assert "kling-3.0-pro" in refused({"model": "veo-3.1", "multishot_duration_1": 5}, "multishot_duration_1")


# -- never anything but a dict or ValidationError ---------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["5", "5.5", "true", "false", "16:9", "720p", *MODELS, " ", "x" * 600]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEYS = st.sampled_from([*FIELDS, "multishot_prompt_6", "bogus", "handlers"])


@settings(max_examples=400, deadline=None)
@given(
    model=st.one_of(st.sampled_from(list(MODELS)), VALUES),
    params=st.dictionaries(KEYS, VALUES, max_size=10),
)
def test_random_requests_never_crash(model: Any, params: dict[str, Any]) -> None:
    params = {**params, "model": model}
    found = problems(params)
    assert all(isinstance(p, Problem) and p.field and p.message for p in found)
    try:
        body = validate(params)
    except ValidationError as exc:
        assert found and exc.field == found[0].field
    else:
        assert not found and isinstance(body, dict)
        json.dumps(body)
        assert validate(body) == body  # normalized bodies are valid and stable
