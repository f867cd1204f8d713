"""Pulling a model's weights through the API: start it, follow its progress, and every way it refuses or fails."""

from __future__ import annotations

import threading
import time

import pytest

from promptyard import keys
from promptyard.plugins.function import FunctionPlugin


class WeightsPlugin(FunctionPlugin):
    """A plugin with weights to fetch: download reports bytes (after `gate` opens, when set) and returns a folder."""

    name = "weights"
    gate: threading.Event | None = None

    def __init__(self, source, *, revision=None, quantization=None, options=None):
        super().__init__(lambda prompt, params: "", source=source)

    def status(self):
        return "not_downloaded"

    def download(self, progress=True):
        if self.gate is not None and not self.gate.wait(30):
            raise RuntimeError("the test never opened the gate")
        progress(512, 2048)
        progress(2048, 2048)
        return "/weights/folder"


@pytest.fixture
def weights_plugin(app):
    from promptyard.plugins.registry import get_registry

    get_registry().register("weights", WeightsPlugin, version="1.0")
    yield WeightsPlugin
    if WeightsPlugin.gate is not None:
        WeightsPlugin.gate.set()
    WeightsPlugin.gate = None


def register(client, name, plugin, source, **extra):
    response = client.post("/api/v1/models", json={"name": name, "plugin": plugin, "source": source, **extra})
    assert response.status_code == 201, response.get_json()


def wait_until_ended(client, name):
    """Poll the status endpoint until the background pull ends (the job runs on the app's thread pool)."""
    for _ in range(600):
        body = client.get(f"/api/v1/models/{name}/pull").get_json()
        if body["state"] != "running":
            return body
        time.sleep(0.05)
    raise AssertionError(f"the pull of {name} never ended: {body}")


def test_a_model_never_pulled_is_idle(client, weights_plugin):
    register(client, "w1", "weights", "org/w1")
    body = client.get("/api/v1/models/w1/pull").get_json()
    assert body == {"model": "w1", "state": "idle", "downloaded_bytes": 0, "total_bytes": None, "error": None,
                    "started_at": None, "finished_at": None}


def test_a_pull_reports_bytes_and_succeeds(client, weights_plugin):
    register(client, "w1", "weights", "org/w1")
    response = client.post("/api/v1/models/w1/pull")
    assert response.status_code == 202
    started = response.get_json()
    assert started["state"] == "running" and started["started_at"] and started["finished_at"] is None
    ended = wait_until_ended(client, "w1")
    assert ended["state"] == "succeeded" and ended["error"] is None
    assert (ended["downloaded_bytes"], ended["total_bytes"]) == (2048, 2048)
    assert ended["finished_at"] >= ended["started_at"]


def test_a_second_pull_while_one_runs_is_409(client, weights_plugin):
    weights_plugin.gate = threading.Event()
    register(client, "w1", "weights", "org/w1")
    assert client.post("/api/v1/models/w1/pull").status_code == 202
    again = client.post("/api/v1/models/w1/pull")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "pull_running"
    assert client.get("/api/v1/models/w1/pull").get_json()["state"] == "running"
    weights_plugin.gate.set()
    assert wait_until_ended(client, "w1")["state"] == "succeeded"
    assert client.post("/api/v1/models/w1/pull").status_code == 202
    assert wait_until_ended(client, "w1")["state"] == "succeeded"


def test_offline_hub_fails_the_pull_with_the_cli_message(client, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    register(client, "remote", "transformers", "promptyard-test/not-downloaded")
    assert client.post("/api/v1/models/remote/pull").status_code == 202
    ended = wait_until_ended(client, "remote")
    assert ended["state"] == "failed" and ended["finished_at"]
    assert ended["error"]["code"] == "hub_unreachable"
    assert "HF_HUB_OFFLINE is set" in ended["error"]["message"]
    assert "promptyard models register remote-local" in ended["error"]["message"]


def test_a_url_served_model_has_nothing_to_pull(client):
    register(client, "remote-api", "openai-compatible", "http://127.0.0.1:9/v1", options={"model": "coder"})
    response = client.post("/api/v1/models/remote-api/pull")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "nothing_to_pull"
    assert client.get("/api/v1/models/remote-api/pull").get_json()["state"] == "idle"


@pytest.mark.parametrize("name", ["ghost", "Not A Name", "x" * 300])
def test_unknown_models_are_404(client, name):
    for method in ("post", "get"):
        response = getattr(client, method)(f"/api/v1/models/{name}/pull", json={"garbage": True})
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "model_not_found"


def test_pulling_needs_the_admin_role(client, weights_plugin):
    register(client, "w1", "weights", "org/w1")
    _, editor = keys.create_key("editor")
    _, viewer = keys.create_key("viewer")
    assert client.post("/api/v1/models/w1/pull", headers={"Authorization": f"Bearer {editor}"}).status_code == 403
    following = client.get("/api/v1/models/w1/pull", headers={"Authorization": f"Bearer {viewer}"})
    assert following.status_code == 200 and following.get_json()["state"] == "idle"
