"""The httpx client against the real API: served by waitress (and through WSGITransport), never mocked."""

from __future__ import annotations

import socket

import httpx
import pytest

from promptyard.client import PromptyardAPIError, PromptyardClient, PromptyardConnectionError
from promptyard.plugins.function import FunctionPlugin


def install_echo_model(app, name: str = "echo") -> None:
    """Register a FunctionPlugin model that answers with the words of its prompt, reversed."""
    from promptyard.models.service import install_plugin

    with app.app_context():
        install_plugin(name, FunctionPlugin(lambda prompt, params: " ".join(reversed(str(prompt).split()))))


@pytest.fixture
def api(live_api):
    app, url = live_api
    with PromptyardClient(url) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_through_a_real_server(api):
    assert api.health() == {"status": "ok"}


def test_unreachable_api_raises_a_connection_error():
    client = PromptyardClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(PromptyardConnectionError) as caught:
        client.list_prompts()
    assert "not reachable" in str(caught.value)
    assert caught.value.base_url.startswith("http://127.0.0.1:")


def test_api_errors_are_typed_with_status_code_message_and_details(api):
    with pytest.raises(PromptyardAPIError) as caught:
        api.get_model("no-such-model")
    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message

    with pytest.raises(PromptyardAPIError) as caught:
        api.register_model("Bad Name!", "function", "x")
    assert caught.value.status == 422
    assert caught.value.code == "validation_error"
    assert caught.value.details["errors"][0]["field"] == "name"


def test_wsgi_transport_works_for_plain_calls(live_api):
    app, _ = live_api
    client = PromptyardClient("http://testserver", transport=httpx.WSGITransport(app=app))
    assert client.health() == {"status": "ok"}
    assert client.list_models()["total"] == 0


def test_keys_turn_auth_on_and_the_key_is_sent(api, live_api):
    created = api.create_key("editor", name="ci")
    assert created["role"] == "editor" and created["key"]
    with pytest.raises(PromptyardAPIError) as caught:
        api.list_models()
    assert caught.value.status == 401 and caught.value.code == "missing_api_key"

    with PromptyardClient(live_api[1], api_key=created["key"]) as editor:
        assert editor.list_models()["items"] == []
        with pytest.raises(PromptyardAPIError) as caught:
            editor.list_keys()
        assert caught.value.status == 403 and caught.value.code == "insufficient_role"


def test_key_lifecycle(api, live_api):
    admin = api.create_key("admin", name="root")
    with PromptyardClient(live_api[1], api_key=admin["key"]) as client:
        listed = client.list_keys()["items"]
        assert [k["name"] for k in listed] == ["root"]
        assert "key" not in listed[0]
        viewer = client.create_key("viewer")
        client.delete_key(viewer["id"])
        assert [k["id"] for k in client.list_keys()["items"]] == [admin["id"]]


def test_models_plugins_load_and_unload(api, live_api):
    install_echo_model(live_api[0])
    models = api.list_models()["items"]
    assert [m["name"] for m in models] == ["echo"]
    assert "status" in models[0]
    assert isinstance(api.list_plugins()["items"], list)
    assert api.unload_model("echo")["name"] == "echo"
    with pytest.raises(PromptyardAPIError) as caught:
        api.load_model("missing")
    assert caught.value.status == 404
