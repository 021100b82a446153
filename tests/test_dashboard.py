"""The dashboard in a real headless Chromium (Debian's package) against a real relay process, at a
desktop (1280×800) and a phone (390 px) width, under the CSP the relay's pages carry.

Screenshots land under each test's temporary folder (``screenshots/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import RelayProcess
from ui import IMAGE, Console

WIDTHS = pytest.mark.parametrize("width", ["desktop", "phone"])
DONE = ("succeeded", "failed", "cancelled", "rejected")


def settled(job: dict) -> bool:
    return job["status"] in DONE and all(h["status"] not in ("pending", "running") for h in job["handlers"])


def job_id_of(page: Any) -> str:
    page.wait_for_function("() => location.hash.startsWith('#job=')")
    return str(page.evaluate("() => decodeURIComponent(location.hash.slice(5))"))


def upload(page: Any, name: str, path: Path) -> None:
    page.set_input_files(f"#{name}-file", str(path))
    page.wait_for_function(f"() => document.getElementById('{name}').value.includes('-asset:')")


def label_of(page: Any, field: str) -> str:
    return str(page.inner_text(f"[data-field={field}] > label"))


def submit_and_open(page: Any) -> str:
    page.click("#submit-button")
    job_id = job_id_of(page)
    page.wait_for_selector("#view-job:not([hidden]) #job-prompt")
    return job_id


def fill_model(page: Any, model: str) -> None:
    """Fill the form for ``model`` as a new user would, checking what the form offers on the way."""
    page.select_option("#model", model)
    takes_prompt = model != "wan-2.2-animate"
    assert page.is_visible("#prompt") == takes_prompt
    if model == "wan-2.2-animate":
        assert page.is_visible("#no-prompt") and page.is_visible("#duration-auto")
        assert "required" in label_of(page, "imageAssetId1") and "required" in label_of(page, "videoAssetId")
        upload(page, "imageAssetId1", IMAGE)
        page.click("#videoAssetId-sample")  # the simulator's sample video, for users with none at hand
        page.wait_for_function("() => document.getElementById('videoAssetId').value.includes('-asset:')")
        return
    required = model in ("gen4", "gen4-turbo", "kling-2.6-pro", "kling-2.6-i2v", "wan-2.6-flash")
    assert ("required" in label_of(page, "text_prompt")) == required
    limit = int(page.get_attribute("#prompt", "maxlength") or 0)
    assert limit == {"gen4.5": 5000, "veo-3.1": 5000, "sora-2": 1000, "sora-2-pro": 1000, "gen4": 1000,
                     "gen4-turbo": 1000, "wan-2.6-flash": 1500}.get(model, 2500)  # fmt: skip
    page.fill("#prompt", f"a lighthouse in a storm, by {model}")
    if model == "gen4.5":
        assert page.eval_on_selector_all("#aspect_ratio option", "o => o.length") == 1
        assert page.get_attribute("#duration", "type") == "number"
        page.fill("#duration", "5")
        upload(page, "imageAssetId1", IMAGE)
        assert page.eval_on_selector_all("#aspect_ratio option", "o => o.length") == 6
        page.select_option("#aspect_ratio", "9:16")
        page.fill("#seed", "42")
    elif model in ("gen4", "gen4-turbo", "kling-2.6-i2v", "wan-2.6-flash"):
        assert "required" in label_of(page, "imageAssetId1")
        upload(page, "imageAssetId1", IMAGE)
        if model == "kling-2.6-i2v":
            assert page.is_visible("#aspect-auto")
    elif model == "kling-3.0-pro":
        page.check("#multishot")
        assert not page.is_visible("#duration")
        page.fill("#multishot_prompt_1", "a fox wakes up")
        page.fill("#multishot_prompt_2", "the fox runs through snow")
        page.fill("#multishot_duration_2", "7")
        assert "Total 12 s" in page.inner_text("#shots-total")
    elif model == "kling-3.0-standard":
        assert "optional" in label_of(page, "imageAssetId1")
        upload(page, "imageAssetId1", IMAGE)
        upload(page, "imageAssetId2", IMAGE)
    elif model == "veo-3.1":
        page.select_option("#duration", "8")
        page.select_option("#resolution", "1080p")
        assert page.is_visible("#explore-off")
    elif model.startswith("sora"):
        assert page.is_checked("#audio") and page.is_disabled("#audio")
        if model == "sora-2-pro":
            page.select_option("#resolution", "1080p")


@WIDTHS
def test_every_model_through_the_form(relay: RelayProcess, console: Any, width: str) -> None:
    ui: Console = console(relay, width)
    page = ui.open("new")
    models = page.eval_on_selector_all("#model option", "o => o.map(x => x.value)")
    assert len(models) == 12
    ids = {}
    for model in models:
        ui.go("new")
        page.wait_for_selector("#view-new:not([hidden])")
        fill_model(page, model)
        if model in ("wan-2.2-animate", "kling-3.0-pro"):
            ui.fits()
            ui.shot(f"form-{model}")
        ids[model] = submit_and_open(page)
    for model, job_id in ids.items():
        job = relay.wait_for(job_id, settled)
        assert job["status"] == "succeeded", (model, job)
        assert job["model"] == model
    params = {m: relay.api("GET", f"/api/jobs/{i}").json()["params"] for m, i in ids.items()}
    assert params["gen4.5"]["aspect_ratio"] == "9:16" and params["gen4.5"]["seed"] == 42
    assert params["gen4.5"]["duration"] == 5 and "imageAssetId1" in params["gen4.5"]
    assert params["kling-3.0-pro"]["multishot_duration_2"] == 7 and "duration" not in params["kling-3.0-pro"]
    assert "imageAssetId2" in params["kling-3.0-standard"]
    assert params["veo-3.1"]["resolution"] == "1080p" and params["veo-3.1"]["duration"] == 8
    assert {"imageAssetId1", "videoAssetId"} <= set(params["wan-2.2-animate"])
    ui.go(f"job={ids['wan-2.2-animate']}")
    page.wait_for_selector("#job-video")
    assert "no prompt" in page.inner_text("#job-prompt")
    ui.fits()
    ui.shot("wan-job")


@WIDTHS
def test_every_problem_of_a_refused_submit_is_shown_at_its_field(
    relay: RelayProcess, console: Any, width: str
) -> None:
    ui: Console = console(relay, width)
    page = ui.open("new")
    page.select_option("#model", "gen4")
    page.fill("#seed", "0")
    page.click("#submit-button")
    page.wait_for_selector("#err-text_prompt:not([hidden])")
    for field in ("text_prompt", "imageAssetId1", "seed"):
        assert page.is_visible(f"#err-{field}"), field
    assert "required" in page.inner_text("#err-imageAssetId1")
    assert page.get_attribute("#prompt", "aria-invalid") == "true"
    assert "3 problems" in page.inner_text("#form-error")
    ui.shot("gen4-problems")
    page.select_option("#model", "kling-3.0-pro")
    page.check("#multishot")
    page.click("#shot-add")
    for n, seconds in ((1, "6"), (2, "6"), (3, "6")):
        page.fill(f"#multishot_duration_{n}", seconds)
    page.fill("#multishot_prompt_1", "one")
    page.fill("#multishot_prompt_3", "three")
    assert "over" in (page.get_attribute("#shots-total", "class") or "")
    page.click("#submit-button")
    page.wait_for_selector("#err-multishot_duration_3:not([hidden])")
    assert "15" in page.inner_text("#err-multishot_duration_3")
    assert page.is_visible("#err-multishot_prompt_2")
    ui.fits()
    ui.shot("multishot-problems")
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []
