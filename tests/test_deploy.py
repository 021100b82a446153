"""deploy/: the image recipe runs what this suite runs, the compose files hang together, and the
systemd unit and Caddyfiles pass their own tools' checks (when those tools are installed).

No container engine runs here, so the Dockerfile's commands are run outside a container instead:
its ``serve`` command with its environment, and its HEALTHCHECK against that server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import free_port, relay_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVE = ["runway-relay", "serve", "--host", "0.0.0.0", "--port", "8000"]
CADDYFILES = ("Caddyfile", "Caddyfile.compose", "Caddyfile.postgres")


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in stage:
        if op == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def _healthcheck() -> list[str]:
    (args,) = [args for op, args in _final_stage() if op == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3 :])


def test_the_image_is_multi_stage_non_root_with_a_volume_and_a_healthcheck() -> None:
    steps = _instructions()
    assert sum(op == "FROM" for op, _ in steps) >= 2
    final = _final_stage()
    (user,) = [args for op, args in final if op == "USER"]
    assert user not in ("root", "0")
    (volume,) = [json.loads(args) for op, args in final if op == "VOLUME"]
    env = _env(final)
    assert all(env[name].startswith(volume[0] + "/") for name in ("RELAY_DB", "RELAY_DOWNLOAD_DIR"))
    assert "/healthz" in " ".join(_healthcheck())
    (cmd,) = [json.loads(args) for op, args in final if op == "CMD"]
    assert cmd == SERVE
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    assert installs == ['/opt/runway-relay/bin/pip install ".${EXTRAS}"']  # `pip install .`, extras optional


def test_the_image_copies_every_package_folder_and_what_pip_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {
        source
        for op, args in _instructions()
        if op == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied
    assert {"pyproject.toml", project["project"]["readme"]} <= copied


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(log.read_text())


def test_the_image_command_and_healthcheck_work_outside_a_container(tmp_path: Path) -> None:
    """CMD with the image's ENV (its /data moved into tmp), then the HEALTHCHECK command against it."""
    port = str(free_port())
    env = relay_env(tmp_path)
    image_env = _env(_final_stage())
    for name in ("RELAY_DB", "RELAY_DOWNLOAD_DIR"):
        env[name] = str(tmp_path / image_env[name].removeprefix("/data/"))
    command = [str(Path(sys.executable).parent / SERVE[0]), *SERVE[1:-1], port]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert refused.returncode == 2 and "RELAY_API_KEY" in refused.stderr
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env={**env, "RELAY_API_KEY": "image-key"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, log)
        probe = [
            sys.executable if arg == "python" else arg.replace(":8000/", f":{port}/")
            for arg in _healthcheck()
        ]
        assert subprocess.run(probe, timeout=30).returncode == 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/jobs", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert (tmp_path / "relay.db").exists()


@pytest.mark.slow
def test_pip_install_dot_builds_a_wheel_with_the_package_data(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("runway_relay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "runway_relay/cli.py",
        "runway_relay/metrics.py",
        "runway_relay/receiver/openapi.py",
        "runway_relay/receiver/templates/dashboard.html",
        "runway_relay/receiver/static/js/main.js",
        "runway_relay/receiver/static/app.css",
        "runway_relay/simulator/sample.mp4",
        "runway_relay/storage/migrations.py",
        "runway_relay/py.typed",
    ):
        assert needed in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "runway-relay = runway_relay.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# -- compose ------------------------------------------------------------------------------------


def _compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def _relay_checks(service: dict[str, Any]) -> dict[str, Any]:
    assert service["build"]["context"] == ".."
    assert (
        DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]
    ).resolve() == DEPLOY / "Dockerfile"
    env = service["environment"]
    assert "RELAY_API_KEY" in env["RELAY_API_KEY"] and "USEAPI_TOKEN" in env["USEAPI_TOKEN"]
    assert env["RELAY_PUBLIC_URL"].startswith("https://${RELAY_DOMAIN")
    assert service["healthcheck"]["test"] == ["CMD", *_healthcheck()]
    assert "ports" not in service  # only Caddy faces the network
    return env


def _caddy_checks(compose: dict[str, Any], caddyfile: str, relays: list[str]) -> None:
    caddy = compose["services"]["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert f"./{caddyfile}:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert any(v.endswith(":/data") for v in caddy["volumes"])  # certificates survive restarts
    assert {name: c["condition"] for name, c in caddy["depends_on"].items()} == dict.fromkeys(
        relays, "service_healthy"
    )
    text = (DEPLOY / caddyfile).read_text()
    assert "{$RELAY_DOMAIN}" in text and all(f"{name}:8000" in text for name in relays)
    named = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert {n for n in named if not n.startswith(".")} <= set(compose["volumes"])


def test_compose_runs_one_relay_behind_caddy() -> None:
    compose = _compose("compose.yaml")
    relay = compose["services"]["relay"]
    env = _relay_checks(relay)
    assert env["RELAY_DB"].startswith("/data/") and env["RELAY_DOWNLOAD_DIR"].startswith("/data/")
    assert "relay-data:/data" in relay["volumes"]
    _caddy_checks(compose, "Caddyfile.compose", ["relay"])


def test_the_postgres_compose_runs_two_relays_on_one_database_and_one_downloads_volume() -> None:
    compose = _compose("compose.postgres.yaml")
    services = compose["services"]
    relays = [services["relay1"], services["relay2"]]
    envs = [_relay_checks(relay) for relay in relays]
    assert {env["RELAY_DB"] for env in envs} == {"postgresql://relay@postgres:5432/relay"}
    assert len({env["RELAY_PUBLIC_URL"] for env in envs}) == 1
    assert len({env["RELAY_DOWNLOAD_DIR"] for env in envs}) == 1
    mounts = [
        {v for v in relay["volumes"] if v.endswith(":" + env["RELAY_DOWNLOAD_DIR"])}
        for relay, env in zip(relays, envs, strict=True)
    ]
    assert len(mounts[0]) == 1 and mounts[0] == mounts[1]
    assert all(relay["build"]["args"]["EXTRAS"] == "[postgres]" for relay in relays)
    assert all(relay["depends_on"]["postgres"]["condition"] == "service_healthy" for relay in relays)
    postgres = services["postgres"]
    assert (
        postgres["environment"]["POSTGRES_USER"] == "relay"
        and postgres["environment"]["POSTGRES_DB"] == "relay"
    )
    assert "pg_isready" in postgres["healthcheck"]["test"]
    _caddy_checks(compose, "Caddyfile.postgres", ["relay1", "relay2"])


def test_every_variable_the_compose_files_need_is_in_env_example() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    for name in ("compose.yaml", "compose.postgres.yaml"):
        needed = set(re.findall(r"\$\{(\w+)", (DEPLOY / name).read_text()))
        assert needed <= documented, name


# -- the tools' own checks ------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (.ci/run unpacks it from its Debian package)")
    return found


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified as written, with ExecStart pointed at this install of the same console script."""
    analyze = _tool("systemd-analyze")
    unit = (DEPLOY / "runway-relay.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(\S+) (.*)$", unit, re.MULTILINE)
    assert exec_start[0].endswith("/bin/runway-relay")
    assert exec_start[1] == "serve --host 127.0.0.1 --port 8000"
    here = Path(sys.executable).parent / "runway-relay"
    (tmp_path / "runway-relay.service").write_text(unit.replace(exec_start[0], str(here)))
    checked = subprocess.run(
        [analyze, "verify", str(tmp_path / "runway-relay.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and "runway-relay.service" not in checked.stderr, checked.stderr


@pytest.mark.parametrize("name", CADDYFILES)
def test_the_caddyfiles_pass_caddy_validate(name: str, tmp_path: Path) -> None:
    caddy = _tool("caddy")
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "RELAY_DOMAIN": "relay.example.com",
    }
    checked = subprocess.run(
        [caddy, "validate", "--config", str(DEPLOY / name), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = subprocess.run([caddy, "fmt", str(DEPLOY / name)], capture_output=True, text=True, env=env)
    assert formatted.stdout == (DEPLOY / name).read_text(), f"run: caddy fmt --overwrite deploy/{name}"
