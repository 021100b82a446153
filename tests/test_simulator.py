"""The useapi.net Runway simulator, exercised over real loopback HTTP (uvicorn in threads)."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from runway_relay.simulator import SAMPLE_MP4, Chaos, SimError, Simulator, create_app
from runway_relay.simulator.engine import MODELS, Engine

from .servers import serve_in_thread

API = "/v1/runwayml"
STEP = 0.04


class Receiver:
    """A callback sink: records every JSON body posted to ``/cb/{name}``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = 0
        self.app = Starlette(routes=[Route("/cb/{name}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=503)
        self.calls.append((request.path_params["name"], body))
        return Response(status_code=200)

    def raw(self, name: str) -> list[dict[str, Any]]:
        return [body for n, body in self.calls if n == name]

    def tasks(self, name: str) -> list[dict[str, Any]]:
        return [unwrap(body) for body in self.raw(name)]


def unwrap(body: dict[str, Any]) -> dict[str, Any]:
    task = body.get("task")
    return task if isinstance(task, dict) else body


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    sink = Receiver()
    with serve_in_thread(sink.app) as url:
        yield sink, url


@contextlib.contextmanager
def simulator(**kwargs: Any) -> Iterator[tuple[Simulator, httpx.Client]]:
    kwargs.setdefault("step_seconds", STEP)
    app = create_app(**kwargs)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield app.state.simulator, client


def create(client: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("model", "gen4.5")
    body.setdefault("text_prompt", "a lighthouse at dusk")
    return client.post(f"{API}/videos/create", json=body)


def finished(client: httpx.Client, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = client.get(f"{API}/tasks/{task_id}").json()
        return task if task["status"] in ("SUCCEEDED", "FAILED") else None

    return wait_for(done)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
_KEYS = "model email text_prompt duration aspect_ratio resolution exploreMode maxJobs seed"
_keys = st.sampled_from([*_KEYS.split(), "imageAssetId1", "imageAssetId2", "videoAssetId"])


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from([*MODELS, "nope"]),
    extra=st.dictionaries(_keys, _json | st.sampled_from(["16:9", "720p", "5", "", "true"])),
)
def test_engine_create_never_crashes(model: str, extra: dict[str, Any]) -> None:
    """Whatever the body, the engine accepts it as a well-formed task or answers a SimError."""
    engine = Engine({"a@example.com": 1}, rng=random.Random(0))
    try:
        task = engine.create({"model": model, **extra}, "http://sim")
    except SimError as exc:
        assert exc.status in (400, 402, 429) and isinstance(exc.body["error"], str)
        return
    model_json = task.model_json()
    assert model_json["status"] == "PENDING" and model_json["taskType"] == model
    assert isinstance(model_json["options"]["seconds"], int)
    while engine.step(task):
        pass
    assert task.status in ("SUCCEEDED", "FAILED")


@pytest.mark.slow
def test_lifecycle_callbacks_and_artifact_download(receiver: tuple[Receiver, str]) -> None:
    sink, url = receiver
    with simulator(seed=7) as (sim, client):
        answer = create(client, replyUrl=f"{url}/cb/life", replyRef="job-1:1", duration=5)
        assert answer.status_code == 200
        task = answer.json()["task"]
        assert task["status"] == "PENDING" and task["progressRatio"] == "0"
        assert task["taskId"].startswith("user:sim-runwayml:sim-1@example.com-task:")
        assert task["replyRef"] == "job-1:1" and task["code"] == 200
        assert task["options"]["seconds"] == 5 and task["options"]["width"] == 1280
        wait_for(lambda: any(t["status"] == "SUCCEEDED" for t in sink.tasks("life")))
        calls = sink.tasks("life")
        assert [c["status"] for c in calls] == ["PENDING", *["RUNNING"] * 3, "SUCCEEDED"]
        assert [float(c["progressRatio"]) for c in calls] == [0, 0.25, 0.5, 0.75, 1]
        assert {c["replyRef"] for c in calls} == {"job-1:1"}
        assert {c["taskId"] for c in calls} == {task["taskId"]}
        raw = sink.raw("life")
        assert any("task" in b for b in raw) and any("task" not in b for b in raw)
        kinds = {type(c["progressRatio"]) for c in calls}
        assert kinds == {str, float} or kinds == {str, float, int}

        got = client.get(f"{API}/tasks/{task['taskId']}").json()
        assert got["status"] == "SUCCEEDED" and "task" not in got
        (art,) = got["artifacts"]
        size = SAMPLE_MP4.stat().st_size
        assert art["fileSize"] == str(size)
        assert art["metadata"] == {"frameRate": 24, "duration": 5, "dimensions": [1280, 720]}
        assert art["url"].startswith(str(client.base_url).rstrip("/") + "/sim/artifacts/")
        whole = httpx.get(art["url"])
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        assert whole.headers["content-length"] == str(size)
        assert whole.content == SAMPLE_MP4.read_bytes()
        assert whole.content[4:8] == b"ftyp"
        part = httpx.get(art["url"], headers={"Range": "bytes=1000-"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"
        assert whole.content[:1000] + part.content == whole.content
        preview = httpx.get(art["previewUrls"][0])
        assert preview.headers["content-type"] == "image/jpeg"
        assert preview.content[:2] == b"\xff\xd8"
        assert httpx.get(art["url"].rsplit("/", 1)[0] + "/nope.mp4").status_code == 404
        assert len(sim.creates) == 1 and sim.create_attempts == 1


@pytest.mark.slow
def test_busy_429_and_slot_freed_after_completion() -> None:
    with simulator(accounts={"a@example.com": 1}) as (sim, client):
        first = create(client, replyRef="r1", replyUrl="http://127.0.0.1:9/cb").json()["task"]
        busy = create(client)
        assert busy.status_code == 429
        assert busy.json() == {
            "error": "Account a@example.com is busy executing 1 tasks",
            "runningTasks": {
                "a@example.com": [
                    {
                        "email": "a@example.com",
                        "taskId": first["taskId"],
                        "id": first["id"],
                        "replyUrl": "http://127.0.0.1:9/cb",
                        "replyRef": "r1",
                    }
                ]
            },
            "code": 429,
        }
        assert create(client, maxJobs=2).status_code == 200  # the request's maxJobs wins
        assert sim.rejected_429 == 1 and len(sim.creates) == 2
        finished(client, first["taskId"])
        assert create(client, maxJobs=2).status_code == 200
    with simulator(runway_429_rate=1.0) as (sim, client):
        answer = create(client)
        assert answer.status_code == 429
        assert answer.json()["error"].startswith("You have too many tasks running or pending.")


@pytest.mark.slow
def test_failures_and_rejections() -> None:
    with simulator(accounts={"a@example.com": 4}) as (_sim, client):
        moderated = create(client, text_prompt="[moderate] something").json()["task"]
        transient = create(client, text_prompt="[fail] something", duration=10).json()["task"]
        got = finished(client, moderated["taskId"])
        assert got["status"] == "FAILED"
        assert got["error"]["reason"] == "SAFETY.INPUT.TEXT"
        assert got["error"]["moderation_category"] == "SEXUAL"
        assert "moderation" in got["error"]["message"]
        got = finished(client, transient["taskId"])
        assert got["status"] == "FAILED" and got["error"] == "Internal error, please retry"
        assert got["artifacts"] == []
        cases = [
            ({"text_prompt": "[reject]"}, 400),
            ({"text_prompt": "[nocredits]"}, 402),
            ({"model": "gen9"}, 400),
            ({"model": "veo-3.1", "exploreMode": True}, 400),
            ({"model": "gen4", "text_prompt": "x"}, 400),  # reference image required
            ({"duration": 11}, 400),
            ({"email": "nobody@example.com"}, 400),
        ]
        for body, status in cases:
            answer = create(client, **body)
            assert answer.status_code == status, body
            assert "error" in answer.json()
        assert create(client, text_prompt="[nocredits]").json() == {
            "error": "You do not have enough credits to run this task."
        }
        form = client.post(f"{API}/videos/create", data={"model": "sora-2", "duration": "8"})
        assert form.status_code == 200
        assert form.json()["task"]["options"]["seconds"] == 8


@pytest.mark.slow
def test_scheduler_tasks_and_accounts() -> None:
    accounts = {"a@example.com": 1, "b@example.com": 3}
    with simulator(accounts=accounts, step_seconds=0.5) as (_sim, client):
        # held: still running (listed, holding a's only slot) however slow this machine is
        one = create(client, replyRef="one", email="a@example.com", text_prompt="[hold] 1").json()["task"]
        two = create(client, replyRef="two", text_prompt="[hold] 2").json()["task"]
        assert "b@example.com" in two["taskId"]  # least busy account
        listed = client.get(f"{API}/scheduler/").json()
        assert {(t["taskId"], t["replyRef"]) for t in listed} == {
            (one["taskId"], "one"),
            (two["taskId"], "two"),
        }
        assert create(client, email="a@example.com").status_code == 429
        gone = client.delete(f"{API}/scheduler/{one['taskId']}")
        assert gone.status_code == 200 and gone.json()["taskId"] == one["taskId"]
        assert [t["taskId"] for t in client.get(f"{API}/scheduler/").json()] == [two["taskId"]]
        assert create(client, email="a@example.com").status_code == 200  # slot freed
        again = client.delete(f"{API}/scheduler/{one['taskId']}")
        assert again.status_code == 404
        assert again.json() == {"error": f"Unable to locate running {one['taskId']}"}
        missing = client.get(f"{API}/tasks/user:sim-runwayml:a@example.com-task:nope")
        assert missing.status_code == 404 and missing.json()["code"] == 404
        got = client.get(f"{API}/accounts/").json()
        assert set(got) == set(accounts)
        assert got["b@example.com"]["email"] == "b@example.com"
        assert got["b@example.com"]["maxJobs"] == 3


@pytest.mark.slow
def test_assets_pin_the_account() -> None:
    accounts = {"a@example.com": 2, "b@example.com": 2}
    with simulator(accounts=accounts) as (_sim, client):
        files = {"file": ("start.jpg", b"\xff\xd8fakejpeg", "image/jpeg")}
        image = client.post(f"{API}/assets/?email=b@example.com", files=files).json()
        assert image["assetId"].startswith("user:sim-runwayml:b@example.com-asset:")
        assert image["mediaType"] == "image"
        video = client.post(f"{API}/assets/", params={"name": "ref.mp4"}, content=b"0" * 64)
        assert video.json()["mediaType"] == "video"
        images = client.get(f"{API}/assets/", params={"mediaType": "image"}).json()["assets"]
        assert [a["assetId"] for a in images] == [image["assetId"]]
        task = create(client, model="gen4", imageAssetId1=image["assetId"]).json()["task"]
        assert "-runwayml:b@example.com-task:" in task["taskId"]
        assert task["options"]["route"] == "i2v"
        wrong = create(client, model="gen4", email="a@example.com", imageAssetId1=image["assetId"])
        assert wrong.status_code == 400


def test_hold_keeps_a_task_running_until_released() -> None:
    engine = Engine({"a@example.com": 1}, rng=random.Random(0))
    task = engine.create({"model": "gen4.5", "text_prompt": "[hold] a long one"}, "http://sim")
    for _ in range(100):
        engine.step(task)
    assert task.status == "RUNNING" and task.active
    engine.release(task.task_id)
    while engine.step(task):
        pass
    assert task.status == "SUCCEEDED"
    with pytest.raises(SimError) as missing:
        engine.release("user:sim-runwayml:a@example.com-task:nope")
    assert missing.value.status == 404


@pytest.mark.slow
def test_release_over_http() -> None:
    with simulator() as (_sim, client):
        task = create(client, text_prompt="[hold] until told").json()["task"]
        wait_for(lambda: client.get(f"{API}/tasks/{task['taskId']}").json()["status"] == "RUNNING")
        released = client.post(f"/sim/release/{task['taskId']}")
        assert released.status_code == 200 and released.json()["released"] is True
        assert finished(client, task["taskId"])["status"] == "SUCCEEDED"
        assert client.post("/sim/release/user:sim-runwayml:x-task:nope").status_code == 404


@pytest.mark.slow
def test_token_required() -> None:
    with simulator(token="s3cret") as (_sim, client):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = client.get(f"{API}/scheduler/", headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {"error": "Unauthorized", "code": 401}
        ok = client.get(f"{API}/scheduler/", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == []


@pytest.mark.slow
def test_explore_mode_waits_for_the_running_explore_job() -> None:
    with simulator() as (sim, client):
        first = create(client, exploreMode=True).json()["task"]
        second = create(client, exploreMode=True).json()["task"]
        finished(client, second["taskId"])
        a, b = sim.tasks[first["taskId"]], sim.tasks[second["taskId"]]
        assert "THROTTLED" in [s for s, _, _ in b.history]
        done_a = next(t for s, _, t in a.history if s == "SUCCEEDED")
        run_b = next(t for s, _, t in b.history if s == "RUNNING")
        assert run_b >= done_a


@pytest.mark.slow
def test_callback_retries_and_unreachable_receiver(receiver: tuple[Receiver, str]) -> None:
    sink, url = receiver
    with simulator() as (sim, client):
        sink.fail_next = 2
        task = create(client, replyUrl=f"{url}/cb/retry", replyRef="r").json()["task"]
        lost = create(client, replyUrl="http://127.0.0.1:9/cb/closed").json()["task"]
        wait_for(lambda: any(t["status"] == "SUCCEEDED" for t in sink.tasks("retry")))
        assert sink.tasks("retry")[0]["status"] == "PENDING"
        assert finished(client, lost["taskId"])["status"] == "SUCCEEDED"
        assert finished(client, task["taskId"])["status"] == "SUCCEEDED"
        retried = [d for d in sim.deliveries if d["taskId"] == task["taskId"]]
        assert retried[0]["ok"] is True and retried[0]["attempts"] == 3
        wait_for(lambda: any(d["ok"] is False for d in sim.deliveries))


@pytest.mark.slow
def test_chaos_duplicates_shuffles_and_drops(receiver: tuple[Receiver, str]) -> None:
    sink, url = receiver
    expected = [("PENDING", 0.0), ("RUNNING", 0.25), ("RUNNING", 0.5), ("RUNNING", 0.75)]
    expected.append(("SUCCEEDED", 1.0))
    chaos = Chaos(duplicate=1.0, shuffle=True, delay_max=0.2)
    with simulator(chaos=chaos, seed=3) as (_sim, client):
        create(client, replyUrl=f"{url}/cb/chaos", duration=5)
        wait_for(lambda: len(sink.tasks("chaos")) == 10)
        got = [(t["status"], float(t["progressRatio"])) for t in sink.tasks("chaos")]
        assert sorted(got) == sorted(expected * 2)
    with simulator(chaos=Chaos(drop=1.0)) as (_sim, client):
        task = create(client, replyUrl=f"{url}/cb/drop").json()["task"]
        finished(client, task["taskId"])
        wait_for(lambda: sink.tasks("drop"))
        time.sleep(0.1)
        assert [t["status"] for t in sink.tasks("drop")] == ["SUCCEEDED"]


@pytest.mark.slow
def test_mounted_in_a_host_app() -> None:
    sim = Simulator(step_seconds=STEP)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.aclose()  # Mount does not run the sub-app's lifespan: the host closes it

    async def health(request: Request) -> Response:
        return Response("ok")

    routes = [Route("/healthz", health), Mount("/", sim.app)]
    host = Starlette(routes=routes, lifespan=lifespan)
    with serve_in_thread(host) as url, httpx.Client(base_url=url) as client:
        assert client.get("/healthz").text == "ok"
        task = create(client).json()["task"]
        art = finished(client, task["taskId"])["artifacts"][0]
        assert art["url"].startswith(f"{url}/sim/artifacts/")
        assert client.get(art["url"]).content == SAMPLE_MP4.read_bytes()
