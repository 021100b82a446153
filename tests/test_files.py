"""``/files/{job}/{name}``: downloaded artifacts are served so that nothing in them can run as a page."""

from __future__ import annotations

from runway_relay.handlers.download import safe_name

from conftest import RelayProcess

HTML = b"<!doctype html><script>fetch('/api/jobs').then(r => r.text()).then(alert)</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def put(relay: RelayProcess, name: str, data: bytes, job: str = "job-1") -> str:
    folder = relay.downloads / job
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return f"/files/{job}/{name}"


def test_videos_and_images_play_inline_but_cannot_run_script(relay: RelayProcess) -> None:
    for name, media in (("clip.mp4", "video/mp4"), ("still.jpg", "image/jpeg"), ("a.webm", "video/webm")):
        answer = relay.api("GET", put(relay, name, b"\x00\x00\x00\x18ftypmp42"))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"].startswith("sandbox")
        assert "attachment" not in answer.headers.get("content-disposition", "")


def test_anything_else_is_a_sandboxed_download(relay: RelayProcess) -> None:
    for name, data in (("page.html", HTML), ("logo.svg", SVG), ("notes.txt", b"hi"), ("blob", b"x")):
        answer = relay.api("GET", put(relay, name, data))
        assert answer.status_code == 200, name
        assert answer.headers["content-disposition"].startswith("attachment"), name
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"].startswith("sandbox")
        assert not answer.headers["content-type"].startswith(("text/html", "image/svg")), name


def test_a_name_too_long_for_the_file_system_is_404_not_500(relay: RelayProcess) -> None:
    for name in ("a" * 256 + ".mp4", "b" * 5000):
        answer = relay.api("GET", f"/files/job-1/{name}")
        assert answer.status_code == 404, answer.text
        assert answer.json() == {"error": "no such downloaded file"}
    answer = relay.api("GET", f"/files/{'j' * 300}/clip.mp4")
    assert answer.status_code == 404
    assert "Traceback" not in relay.log()


def test_stored_names_keep_only_known_media_extensions() -> None:
    assert safe_name("https://cdn.test/v/clip.mp4", 0) == "clip.mp4"
    assert safe_name("https://cdn.test/v/clip.MOV", 0) == "clip.MOV"
    assert safe_name("https://cdn.test/v/still.jpeg?x=1", 1) == "2-still.jpeg"
    for hostile in ("page.html", "logo.svg", "x.htm", "run.js", "a.xhtml", "noext", "clip.mp4.html"):
        assert safe_name(f"https://cdn.test/v/{hostile}", 0) == "video-1.mp4", hostile
