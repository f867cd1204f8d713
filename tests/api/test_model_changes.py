"""Fixing and removing registered models: PATCH and DELETE, refusals while executions name a model, archiving."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import ModelConfig
from promptyard.models.service import get_manager
from promptyard.plugins.function import FunctionPlugin
from tests.api.test_models import echo_plugin, register  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.usefixtures("echo_plugin")


def stored(name="m1") -> dict:
    db.session.expire_all()
    row = db.session.scalar(select(ModelConfig).where(ModelConfig.name == name))
    return None if row is None else {c: getattr(row, c) for c in ("source", "revision", "quantization", "params",
                                                                    "pricing", "options", "archived")}


def test_patch_changes_only_the_fields_given_and_drops_the_loaded_copy(client):
    register(client, params={"max_new_tokens": 8}, options={"model": "wrong"}, pricing={"gpu_hour": 1})
    assert client.post("/api/v1/models/m1/load").get_json()["status"] == "loaded"
    response = client.patch("/api/v1/models/m1", json={"options": {"model": "served"}, "source": "other/model",
                                                       "pricing": {"input_per_1k": 0.5}})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["options"] == {"model": "served"} and body["source"] == "other/model"
    assert body["pricing"] == {"input_per_1k": 0.5} and body["params"] == {"max_new_tokens": 8}  # untouched
    assert body["status"] != "loaded" and not get_manager().is_loaded("m1")
    client.patch("/api/v1/models/m1", json={"params": {"temperature": 0.5}, "quantization": "8bit"})
    client.patch("/api/v1/models/m1", json={"quantization": None, "revision": "v2"})
    assert stored()["params"] == {"temperature": 0.5} and stored()["quantization"] is None
    assert stored()["revision"] == "v2"


@pytest.mark.parametrize("body, code", [
    ({"name": "renamed"}, "validation_error"),
    ({"plugin": "transformers"}, "validation_error"),
    ({"quantization": "3bit"}, "validation_error"),
    ({"params": {"temperature": "hot"}}, "invalid_params"),
    ({"params": {"nonsense": 1}}, "invalid_params"),
    ({"pricing": {"gpu_hour": -1}}, "validation_error"),
    ({"pricing": {"per_token": 1}}, "validation_error"),
    ({"options": []}, "validation_error"),
    ({"source": ""}, "validation_error"),
    ({}, "empty_change"),
])
def test_bad_changes_are_refused_and_change_nothing(client, body, code):
    register(client, params={"max_new_tokens": 8})
    before = stored()
    response = client.patch("/api/v1/models/m1", json=body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code != "validation_error":
        assert error["code"] == code
    assert stored() == before


def test_patch_and_delete_of_an_unknown_model_are_404(client):
    assert client.patch("/api/v1/models/nope", json={"source": "x"}).status_code == 404
    assert client.delete("/api/v1/models/nope").status_code == 404


def test_delete_removes_an_unused_model_and_the_name_can_be_registered_again(client):
    register(client)
    response = client.delete("/api/v1/models/m1")
    assert response.status_code == 200 and response.get_json() == {"name": "m1", "deleted": True, "archived": False}
    assert stored() is None and client.get("/api/v1/models/m1").status_code == 404
    assert register(client).status_code == 201


def test_a_model_executions_name_is_refused_unless_archived(client, app):
    from promptyard.models.service import install_plugin

    install_plugin("used", FunctionPlugin(lambda p, params: "ok", source="fake/used"))
    assert client.post("/api/v1/executions", json={"model": "used", "input": "x"}).status_code == 201
    refused = client.delete("/api/v1/models/used")
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "model_in_use" and "archive" in error["message"]
    assert stored("used")["archived"] is False
    archived = client.delete("/api/v1/models/used?archive=true")
    assert archived.status_code == 200 and archived.get_json()["archived"] is True
    assert "used" not in [m["name"] for m in client.get("/api/v1/models").get_json()["items"]]
    assert "used" in [m["name"] for m in client.get("/api/v1/models?archived=true").get_json()["items"]]
    run = client.post("/api/v1/executions", json={"model": "used", "input": "x"})
    assert run.status_code == 409 and run.get_json()["error"]["code"] == "model_archived"
    assert client.get("/api/v1/executions?model=used").get_json()["total"] == 1  # history kept, the refusal not run
    assert client.patch("/api/v1/models/used", json={"source": "y"}).status_code == 409
    restored = client.post("/api/v1/models", json={"name": "used", "plugin": "echo", "source": "again"})
    assert restored.status_code == 201 and restored.get_json()["archived"] is False


def test_changes_need_an_admin_key(client, app):
    from promptyard import keys

    register(client)
    _, viewer = keys.create_key("viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    assert client.patch("/api/v1/models/m1", json={"source": "x"}, headers=headers).status_code == 403
    assert client.delete("/api/v1/models/m1", headers=headers).status_code == 403
    assert stored()["source"] == "some/model"


def test_settings_the_plugin_refuses_are_a_422_before_anything_is_saved(client, unreachable_port):
    url = f"http://127.0.0.1:{unreachable_port}/v1"
    response = client.post("/api/v1/models", json={"name": "remote", "plugin": "openai-compatible", "source": url})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "model_name_required"
    assert stored("remote") is None
    created = client.post("/api/v1/models", json={"name": "remote", "plugin": "openai-compatible", "source": url,
                                                  "options": {"model": "served"}})
    assert created.status_code == 201
    broken = client.patch("/api/v1/models/remote", json={"options": {}})
    assert broken.status_code == 422 and stored("remote")["options"] == {"model": "served"}


def test_an_unreachable_model_says_why(client, unreachable_port):
    url = f"http://127.0.0.1:{unreachable_port}/v1"
    client.post("/api/v1/models", json={"name": "remote", "plugin": "openai-compatible", "source": url,
                                        "options": {"model": "served"}})
    shown = client.get("/api/v1/models/remote").get_json()
    assert shown["status"] == "error"
    assert shown["error"] and url in shown["error"] and "could not be reached" in shown["error"]


@pytest.fixture
def unreachable_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_not_downloaded_error_names_the_model_to_pull(client):
    client.post("/api/v1/models", json={"name": "ghost", "plugin": "transformers",
                                        "source": "nobody/not-downloaded-anywhere"})
    response = client.post("/api/v1/models/ghost/load")
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert "`promptyard models pull ghost`" in message and "<model>" not in message
