"""The httpx client against the real API: served by waitress (and through WSGITransport), never mocked."""

from __future__ import annotations

import json
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


def test_pull_model_and_pull_status(api, live_api, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api.register_model("ghost", "transformers", "nobody/not-downloaded-anywhere")
    assert api.pull_status("ghost")["state"] == "idle"
    assert api.pull_model("ghost")["state"] == "running"
    for _ in range(600):
        pull = api.pull_status("ghost")
        if pull["state"] != "running":
            break
        time.sleep(0.05)
    assert pull["state"] == "failed" and pull["error"]["code"] == "hub_unreachable"
    api.register_model("served", "openai-compatible", "http://127.0.0.1:9/v1", options={"model": "coder"})
    with pytest.raises(PromptyardAPIError) as caught:
        api.pull_model("served")
    assert (caught.value.status, caught.value.code) == (422, "nothing_to_pull")
    with pytest.raises(PromptyardAPIError) as caught:
        api.pull_status("missing")
    assert caught.value.status == 404


@pytest.fixture
def library(api, live_api):
    """A prompt with two versions and the echo model."""
    install_echo_model(live_api[0])
    api.create_prompt("greet", "Say hello to {{ who }}", description="greeting", tags=["demo"], message="first")
    api.create_version("greet", "Say hi to {{ who }} now", message="shorter")
    return api


def test_prompts_versions_diff_labels_and_render(library):
    api = library
    prompt = api.get_prompt("greet")
    assert prompt["latest_version"]["version"] == 2
    assert [p["name"] for p in api.list_prompts(tag="demo")["items"]] == ["greet"]
    assert api.list_prompts(q="nothing-like-this")["total"] == 0
    assert [v["version"] for v in api.list_versions("greet")["items"]] == [2, 1]
    assert api.get_version("greet", 1)["template"] == "Say hello to {{ who }}"
    diff = api.diff("greet", 1, 2)
    assert "-Say hello to {{ who }}" in diff and "+Say hi to {{ who }} now" in diff
    api.set_label("greet", "production", 1)
    moved = api.set_label("greet", "production", 2)
    assert moved["version"] == 2 and len(moved["history"]) >= 2
    assert api.rollback_label("greet", "production")["version"] == 1
    assert api.get_label("greet", "production")["version"] == 1
    assert api.render("greet", {"who": "Ada"}, label="production") == {"text": "Say hello to Ada", "version": 1}
    assert api.update_prompt("greet", description="new words")["description"] == "new words"
    with pytest.raises(PromptyardAPIError) as caught:
        api.render("greet", {})
    assert caught.value.status == 422


def test_export_then_import_into_another_instance(library, tmp_path):
    import yaml

    from promptyard import create_app
    from promptyard.db import db

    other_app = create_app({"TESTING": True, "PROMPTYARD_HOME": str(tmp_path / "other"), "PROMPTYARD_ADMIN_KEY": None,
                            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'other.db'}"})
    with other_app.app_context():
        db.create_all()
    exported = library.export_prompts()
    with PromptyardClient("http://testserver", transport=httpx.WSGITransport(app=other_app)) as other:
        other.import_prompts(yaml.safe_dump(exported))
        assert [v["template"] for v in other.list_versions("greet")["items"]] == [
            "Say hi to {{ who }} now", "Say hello to {{ who }}"]
        with pytest.raises(PromptyardAPIError) as caught:
            other.import_prompts("{ this is: [not yaml")
        assert 400 <= caught.value.status < 500
    library.delete_prompt("greet")
    assert library.list_prompts()["total"] == 0


def test_execute_stream_feedback_history_export_and_analytics(library):
    api = library
    record = api.execute("echo", "greet", variables={"who": "Ada"}, version=1)
    assert record["status"] == "succeeded" and record["output"] == "Ada to hello Say"
    with api.stream("echo", "greet", variables={"who": "Bob"}) as stream:
        deltas = list(stream)
    assert "".join(deltas) == "now Bob to hi Say"
    assert len(deltas) > 1
    assert stream.execution["output"] == "now Bob to hi Say" and stream.execution["version"] == 2
    raw = api.execute("echo", input="a b c", cache=False)
    assert raw["output"] == "c b a"

    assert api.feedback(record["id"], 5, "great")["rating"] == 5
    with pytest.raises(PromptyardAPIError) as caught:
        api.feedback(record["id"], 9)
    assert caught.value.status == 422

    assert api.list_executions()["total"] == 3
    assert [e["id"] for e in api.list_executions(prompt="greet", version=1)["items"]] == [record["id"]]
    assert api.get_execution(record["id"])["output"] == "Ada to hello Say"
    csv_text = api.export_executions("csv", prompt="greet").decode()
    assert csv_text.count("\n") >= 3 and "greet" in csv_text
    lines = api.export_executions("jsonl").decode().strip().splitlines()
    assert len(lines) == 3
    groups = api.analytics(group_by="model")["items"]
    assert groups and groups[0]["count"] == 3
    assert set(api.cache_stats()) >= {"entries", "hits", "misses", "hit_rate"}


def test_stream_errors_before_the_first_event_are_typed(library):
    with pytest.raises(PromptyardAPIError) as caught:
        list(library.stream("no-such-model", "greet", variables={"who": "x"}))
    assert caught.value.status == 404 and caught.value.code == "model_not_found"


def test_experiments(library):
    api = library
    created = api.create_experiment("greet-ab", "greet", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}])
    assert created["name"] == "greet-ab"
    assert [e["name"] for e in api.list_experiments()["items"]] == ["greet-ab"]
    first = api.assign("greet-ab", "user-1")["version"]
    assert api.assign("greet-ab", "user-1")["version"] == first
    results = api.experiment_results("greet-ab")
    assert [arm["version"] for arm in results["arms"]] == [1, 2]
    assert results["winner"] is None


def test_list_and_register_datasets(api):
    task = {"task_id": "t/1", "prompt": "Write one().", "entry_point": "one", "test_list": ["assert one() == 1"]}
    before = {d["name"]: d for d in api.list_datasets()["items"]}
    assert before["humaneval"]["tasks"] == 164 and "mine" not in before
    registered = api.register_dataset("mine", json.dumps(task) + "\n")
    assert (registered["name"], registered["kind"], registered["tasks"]) == ("mine", "custom", 1)
    assert registered in api.list_datasets()["items"]
    with pytest.raises(PromptyardAPIError) as caught:
        api.register_dataset("mine", json.dumps(task) + "\n")
    assert (caught.value.status, caught.value.code) == (409, "dataset_exists")
    with pytest.raises(PromptyardAPIError) as caught:
        api.register_dataset("other", json.dumps({**task, "entry_point": None}) + "\n")
    assert caught.value.status == 422
    assert (caught.value.details["line"], caught.value.details["field"]) == (1, "entry_point")
    assert [d["name"] for d in api.list_datasets()["items"]] == ["humaneval", "mbpp", "mbpp-full", "mine"]
