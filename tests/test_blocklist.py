"""The prompt pre-check (``relay/blocklist.py``) and its settings: pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from runway_relay.blocklist import BlocklistError, check, parse
from runway_relay.errors import ValidationError
from runway_relay.settings import SettingsError, load_settings

RULES = parse("# comment\n\n  gore  \nblood bath\nre:\\bnsfw\\d*\\b\n")


def refused(prompt: str, field: str = "text_prompt") -> str | None:
    try:
        check({"model": "gen4.5", field: prompt}, RULES)
    except ValidationError as exc:
        assert exc.field == field
        return exc.message
    return None


def test_words_match_whole_words_in_any_case() -> None:
    assert refused("GORE!") is not None and refused("a gore-soaked set") is not None
    assert refused("gorgeous") is None and refused("gored") is None


def test_phrases_match_across_any_spacing() -> None:
    assert refused("a blood   bath") is not None and refused("blood\nbath") is not None
    assert refused("bloodbath") is None


def test_regular_expressions_match_anywhere() -> None:
    message = refused("this is NSFW42 stuff")
    assert message is not None and '"re:\\bnsfw\\d*\\b" (line 5 of RELAY_BLOCKLIST_FILE)' in message
    assert 'at "NSFW42"' in message and "not sent to Runway" in message


def test_every_prompt_field_is_checked_and_other_fields_are_not() -> None:
    assert refused("gore", "multishot_prompt_3") is not None
    check({"model": "gen4.5", "seed": "gore", "email": "gore@x.com"}, RULES)
    check({"model": "gen4.5", "text_prompt": "gore"}, ())  # no file: no check


def test_bad_lines_are_named() -> None:
    with pytest.raises(BlocklistError, match="line 2: 're:' needs a regular expression"):
        parse("fine\nre:   \n")
    with pytest.raises(BlocklistError, match="line 1: '\\(' is not a regular expression"):
        parse("re:(")


def test_the_setting_reads_the_file_once_and_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("gore\n")
    assert [r.text for r in load_settings({"RELAY_BLOCKLIST_FILE": str(path)}).blocklist] == ["gore"]
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings({"RELAY_BLOCKLIST_FILE": str(tmp_path / "missing.txt")})
    path.write_text("re:[\n")
    with pytest.raises(SettingsError, match="RELAY_BLOCKLIST_FILE line 1"):
        load_settings({"RELAY_BLOCKLIST_FILE": str(path)})


def test_guard_settings() -> None:
    default = load_settings({})
    assert str(default.moderation) == "3/1h" and str(default.credits_low) == "10%"
    custom = load_settings(
        {"RELAY_MODERATION_PAUSE": "5/30m", "RELAY_MODERATION_PAUSE_FOR": "2h", "RELAY_CREDITS_LOW": "300"}
    )
    assert (
        custom.moderation is not None and custom.moderation.pause == 7200 and str(custom.credits_low) == "300"
    )
    off = load_settings({"RELAY_MODERATION_PAUSE": "off", "RELAY_CREDITS_LOW": "off"})
    assert off.moderation is None and off.credits_low is None
    with pytest.raises(SettingsError, match="RELAY_MODERATION_PAUSE: 'x' is not N/WINDOW"):
        load_settings({"RELAY_MODERATION_PAUSE": "x"})
    with pytest.raises(SettingsError, match="RELAY_MODERATION_PAUSE_FOR: 'soon' is not a duration"):
        load_settings({"RELAY_MODERATION_PAUSE_FOR": "soon"})
    with pytest.raises(SettingsError, match="RELAY_CREDITS_LOW"):
        load_settings({"RELAY_CREDITS_LOW": "many"})
    with pytest.raises(SettingsError, match="unknown event"):
        load_settings({"RELAY_SLACK_EVENTS": "account-exploded"})
    assert load_settings({"RELAY_SLACK_EVENTS": "account-paused"}).slack_events == ("account-paused",)
