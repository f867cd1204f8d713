"""The plugins and models endpoints: list, register, show, load and unload, and bad input for each write."""

from __future__ import annotations

import pytest

from promptyard import keys
from promptyard.plugins.function import FunctionPlugin


class EchoPlugin(FunctionPlugin):
    """A function-backed plugin the registry can build from a source, like a real backend."""

    name = "echo"
    description = "Echoes the prompt."

    def __init__(self, source, *, revision=None, quantization=None, options=None):
        super().__init__(lambda prompt, params: f"echo {prompt}", source=source)
        self.options = dict(options or {})

    def status(self):
        return self.options.get("status", "available")


@pytest.fixture
def echo_plugin(app):
    from promptyard.plugins.registry import get_registry

    get_registry().register("echo", EchoPlugin, version="9.9")


def register(client, **body):
    payload = {"name": "m1", "plugin": "echo", "source": "some/model", **body}
    return client.post("/api/v1/models", json=payload)


def test_plugins_are_listed_with_kind_version_and_status(client, echo_plugin):
    response = client.get("/api/v1/plugins")
    assert response.status_code == 200
    body = response.get_json()
    echo = next(p for p in body["items"] if p["name"] == "echo")
    assert {k: echo[k] for k in ("kind", "version", "status", "error")} == {
        "kind": "llm", "version": "9.9", "status": "ok", "error": None}
    assert body["total"] == len(body["items"])


def test_register_show_and_list(client, echo_plugin):
    response = register(client, params={"max_new_tokens": 16, "temperature": 0}, pricing={"gpu_hour": 1.5},
                        options={"status": "not_downloaded"}, description="a test model")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["name"] == "m1" and created["plugin"] == "echo"
    assert created["params"] == {"max_new_tokens": 16, "temperature": 0}
    assert created["pricing"] == {"gpu_hour": 1.5}
    assert created["status"] == "not_downloaded"
    assert client.get("/api/v1/models/m1").get_json() == created
    listing = client.get("/api/v1/models").get_json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "m1"


def test_list_paginates(client, echo_plugin):
    for n in range(3):
        assert register(client, name=f"m{n}").status_code == 201
    page = client.get("/api/v1/models?limit=2&offset=1").get_json()
    assert page["total"] == 3 and [m["name"] for m in page["items"]] == ["m1", "m2"]
    assert client.get("/api/v1/models?limit=501").status_code == 422


def test_load_and_unload_change_the_status(client, echo_plugin):
    register(client)
    loaded = client.post("/api/v1/models/m1/load")
    assert loaded.status_code == 200 and loaded.get_json()["status"] == "loaded"
    assert client.get("/api/v1/models/m1").get_json()["status"] == "loaded"
    unloaded = client.post("/api/v1/models/m1/unload")
    assert unloaded.status_code == 200 and unloaded.get_json()["status"] == "available"


def test_loading_a_model_without_weights_says_how_to_get_them(client, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    created = register(client, name="remote", plugin="transformers", source="promptyard-test/not-downloaded")
    assert created.status_code == 201 and created.get_json()["status"] == "not_downloaded"
    response = client.post("/api/v1/models/remote/load")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "model_not_downloaded"
    assert "not downloaded" in error["message"] and "promptyard models pull" in error["message"]
    assert client.get("/api/v1/models/remote").get_json()["status"] == "not_downloaded"


def test_unknown_model_is_404_everywhere(client):
    for method, path in [("get", "/api/v1/models/ghost"), ("post", "/api/v1/models/ghost/load"),
                         ("post", "/api/v1/models/ghost/unload")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "model_not_found"


def test_unknown_plugin_is_404(client, echo_plugin):
    response = register(client, plugin="nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "plugin_not_found"


def test_duplicate_is_409(client, echo_plugin):
    assert register(client).status_code == 201
    response = register(client, source="other")
    assert response.status_code == 409
    assert client.get("/api/v1/models/m1").get_json()["source"] == "some/model"


@pytest.mark.parametrize(
    "body, named",
    [
        ({"name": "Has Space"}, "name"),
        ({"name": "-dash-first"}, "name"),
        ({"quantization": "2bit"}, "quantization"),
        ({"params": {"temperature": "hot"}}, "temperature"),
        ({"params": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"params": {"num_beams": 4}}, "num_beams"),
        ({"params": "greedy"}, "params"),
        ({"pricing": {"per_token": 1}}, "per_token"),
        ({"pricing": {"gpu_hour": -2}}, "gpu_hour"),
        ({"source": ""}, "source"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_are_422_naming_the_field_and_change_nothing(client, echo_plugin, body, named):
    response = register(client, **body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert named in error["message"]
    assert client.get("/api/v1/models").get_json()["total"] == 0


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"'])
def test_malformed_body_is_400(client, echo_plugin, payload):
    response = client.post("/api/v1/models", data=payload, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_request"


def test_writes_need_the_admin_role(client, echo_plugin):
    _, editor = keys.create_key("editor")
    _, admin = keys.create_key("admin")
    as_editor = {"Authorization": f"Bearer {editor}"}
    response = client.post("/api/v1/models", json={"name": "m1", "plugin": "echo", "source": "x"}, headers=as_editor)
    assert response.status_code == 403
    response = client.post("/api/v1/models", json={"name": "m1", "plugin": "echo", "source": "x"},
                           headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 201
    assert client.post("/api/v1/models/m1/load", headers=as_editor).status_code == 403
    assert client.post("/api/v1/models/m1/unload", headers=as_editor).status_code == 403
    assert client.get("/api/v1/models/m1", headers=as_editor).status_code == 200
