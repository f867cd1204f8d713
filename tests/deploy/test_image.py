"""The Space image: the Dockerfile passes hadolint, says what a Docker Space needs, and wraps deploy/entrypoint.sh,
which is tested here outside Docker (with a stand-in for `promptyard` at the process boundary)."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.unitproc import ENTRYPOINT, REPO, clean_env

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = str(Path(sys.executable).with_name("hadolint"))


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "info", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_dockerfile_passes_hadolint_without_a_finding():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_hadolint_does_find_problems(tmp_path):
    """The linter is really running: a Dockerfile with known mistakes fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install nginx\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_the_dockerfile_is_a_space_image():
    text = DOCKERFILE.read_text()
    assert re.search(r"^EXPOSE 7860$", text, re.M)
    assert re.search(r"^USER 1000$", text, re.M) and "--uid 1000" in text
    healthcheck = re.search(r"^HEALTHCHECK .*\n?.*", text, re.M).group(0)
    assert "/healthz" in healthcheck
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/promptyard-entrypoint"\]$', text, re.M)
    assert "COPY deploy/entrypoint.sh /usr/local/bin/promptyard-entrypoint" in text
    assert os.stat(ENTRYPOINT).st_mode & stat.S_IXUSR, "COPY keeps the mode: the script must be executable"
    # The variant is a build argument choosing the base stage; the GPU one adds the gpu extra and llama.cpp.
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M) and "FROM base-${VARIANT} AS app" in text
    gpu_stage = text.split("AS base-gpu", 1)[1].split("FROM ", 1)[0]
    assert "nvidia/cuda" in text.split("AS base-gpu")[0].splitlines()[-1]
    assert "PROMPTYARD_EXTRAS=ui,scale,gpu" in gpu_stage and "DGGML_CUDA=on" in text
    # Auth is on: the image listens publicly; no secret is baked in.
    assert "PROMPTYARD_HOST=0.0.0.0" in text and "PORT=7860" in text
    for secret in ("PROMPTYARD_ADMIN_KEY=", "HF_TOKEN=", "DATABASE_URL=", "REDIS_URL="):
        assert secret not in text


def test_dockerignore_keeps_what_the_image_copies():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1:][:4] == ["!pyproject.toml", "!README.md", "!src/", "!deploy/"]
    copied = re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert (REPO / source).exists(), source
            assert source.split("/")[0] in ("pyproject.toml", "README.md", "src", "deploy"), source


def test_readme_front_matter_configures_a_docker_space():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n"), "Spaces read YAML front matter only at the very top of README.md"
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert front["sdk"] == "docker" and front["app_port"] == 7860


FAKE_PROMPTYARD = """#!/usr/bin/env python3
import json, os, sys
keys = ("PROMPTYARD_HOME", "HF_HOME", "PROMPTYARD_STORAGE_EPHEMERAL", "PROMPTYARD_ADMIN_KEY", "HF_TOKEN",
        "DATABASE_URL", "REDIS_URL")
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}))
"""


@pytest.fixture
def entrypoint(tmp_path):
    """Run the entrypoint with `promptyard` replaced by a script that reports its arguments and environment."""
    fake = tmp_path / "fake-promptyard"
    fake.write_text(FAKE_PROMPTYARD)
    fake.chmod(0o755)

    def run(**env: str) -> tuple[dict, str]:
        result = subprocess.run(["bash", str(ENTRYPOINT)], capture_output=True, text=True, timeout=30,
                                env=clean_env(PROMPTYARD_BIN=str(fake), HOME=str(tmp_path / "home"), **env))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout), result.stderr

    return run


def test_entrypoint_keeps_data_under_mounted_storage(entrypoint, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    seen, log = entrypoint(PROMPTYARD_DATA_DIR=str(data), PROMPTYARD_DATA_PERSISTENT="yes", PROMPTYARD_ADMIN_KEY="k")
    assert seen["argv"] == ["up", "--single-port", "7860", "--host", "0.0.0.0", "--workers", "1", "--threads", "16"]
    assert seen["env"]["PROMPTYARD_HOME"] == str(data / "promptyard")
    assert seen["env"]["HF_HOME"] == str(data / "huggingface")
    assert seen["env"]["PROMPTYARD_STORAGE_EPHEMERAL"] is None
    assert (data / "promptyard").is_dir() and "EPHEMERAL" not in log and "WARNING" not in log


def mount_points() -> set[str]:
    return {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if len(line.split()) > 1}


def test_entrypoint_detects_a_mounted_volume(entrypoint, tmp_path):
    """auto: a folder that is a mount point is persistent storage (here /dev/shm stands for the Space's bucket)."""
    if "/dev/shm" not in mount_points() or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm mount to stand for mounted storage")
    seen, log = entrypoint(PROMPTYARD_DATA_DIR="/dev/shm", PROMPTYARD_HOME=str(tmp_path / "home-on-volume"),
                           PROMPTYARD_ADMIN_KEY="k")
    assert seen["env"]["PROMPTYARD_STORAGE_EPHEMERAL"] is None and seen["env"]["HF_HOME"] == "/dev/shm/huggingface"
    assert "EPHEMERAL" not in log


def test_the_images_own_empty_data_folder_is_not_storage(entrypoint, tmp_path):
    """Without a volume, /data is just the image's empty folder: writable, but gone with the container."""
    data = tmp_path / "data"
    data.mkdir()
    assert str(data) not in mount_points()
    seen, log = entrypoint(PROMPTYARD_DATA_DIR=str(data), PROMPTYARD_ADMIN_KEY="k")
    assert seen["env"]["PROMPTYARD_STORAGE_EPHEMERAL"] == "1" and "storage is EPHEMERAL" in log


def test_entrypoint_warns_when_storage_is_ephemeral(entrypoint, tmp_path):
    seen, log = entrypoint(PROMPTYARD_DATA_DIR=str(tmp_path / "not-mounted"), PROMPTYARD_ADMIN_KEY="k",
                           PROMPTYARD_STORAGE_EPHEMERAL="")
    assert "storage is EPHEMERAL" in log
    assert seen["env"]["PROMPTYARD_STORAGE_EPHEMERAL"] == "1"
    assert seen["env"]["PROMPTYARD_HOME"] == str(tmp_path / "home" / "promptyard")


def test_entrypoint_passes_secrets_and_settings_through(entrypoint, tmp_path):
    secrets = {"PROMPTYARD_ADMIN_KEY": "admin-secret", "HF_TOKEN": "hf_x", "DATABASE_URL": "postgresql://db/x",
               "REDIS_URL": "redis://cache:6379/0"}
    seen, log = entrypoint(PROMPTYARD_DATA_DIR=str(tmp_path), PROMPTYARD_DATA_PERSISTENT="yes", PORT="8080",
                           PROMPTYARD_WORKERS="3",
                           PROMPTYARD_THREADS="4", **secrets)
    assert seen["argv"][:3] == ["up", "--single-port", "8080"] and seen["argv"][-4:] == ["--workers", "3",
                                                                                            "--threads", "4"]
    assert {k: seen["env"][k] for k in secrets} == secrets
    assert "admin-secret" not in log, "a secret must never be echoed to the log"


def test_entrypoint_warns_without_an_admin_key(entrypoint, tmp_path):
    _, log = entrypoint(PROMPTYARD_DATA_DIR=str(tmp_path))
    assert "PROMPTYARD_ADMIN_KEY is not set" in log


def test_up_logs_the_ephemeral_warning(monkeypatch, caplog):
    from promptyard.cli.up import warn_if_ephemeral

    monkeypatch.setenv("PROMPTYARD_STORAGE_EPHEMERAL", "1")
    with caplog.at_level(logging.WARNING, logger="promptyard.up"):
        warn_if_ephemeral()
    assert "Storage is ephemeral" in caplog.text
    caplog.clear()
    monkeypatch.delenv("PROMPTYARD_STORAGE_EPHEMERAL")
    with caplog.at_level(logging.WARNING, logger="promptyard.up"):
        warn_if_ephemeral()
    assert caplog.text == ""


def test_the_ui_shows_the_ephemeral_warning(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.deploy.unitproc import free_port
    from tests.ui.ui_helpers import APP

    monkeypatch.setenv("PROMPTYARD_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing there: no API needed
    monkeypatch.setenv("PROMPTYARD_STORAGE_EPHEMERAL", "1")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert any("Storage is ephemeral" in box.value for box in at.sidebar.warning)
    monkeypatch.delenv("PROMPTYARD_STORAGE_EPHEMERAL")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not any("ephemeral" in box.value for box in at.sidebar.warning)
