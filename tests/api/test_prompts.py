"""The Prompts endpoints of API.md: success and failure paths, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import yaml

from promptyard.keys import create_key

BASE = "/api/v1/prompts"


def create(client, name="greet", template="Hello {{ who }}", **extra):
    return client.post(BASE, json={"name": name, "template": template, **extra})


def error(response, status):
    assert response.status_code == status, response.get_json()
    body = response.get_json()["error"]
    assert set(body) == {"code", "message", "details"} and body["message"]
    return body


def snapshot(client):
    return client.get(f"{BASE}/export").get_json()


def test_create_and_get(client):
    response = create(client, description="d", tags=["x"], task_type="chat", params={"temperature": 0.2}, message="first",
                      variables=[{"name": "who", "description": "person"}])
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) >= {"name", "description", "tags", "task_type", "archived", "created_at", "updated_at", "latest_version", "labels"}
    version = body["latest_version"]
    assert set(version) == {"version", "template", "variables", "params", "message", "author", "created_at"}
    assert version["version"] == 1 and version["author"] == "local" and version["params"] == {"temperature": 0.2}
    assert version["variables"] == [{"name": "who", "type": "string", "required": True, "default": None, "description": "person"}]
    assert client.get(f"{BASE}/greet").get_json() == body


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"name": "Bad Name", "template": "x"}, 422),
        ({"name": "ok", "template": "{% if %}"}, 422),
        ({"name": "ok", "template": "{{ a }}", "variables": [{"name": "b"}]}, 422),
        ({"name": "ok", "template": "x", "colour": "red"}, 422),
        ({"name": "ok", "template": 5}, 422),
        ({"name": "ok", "template": "x", "variables": [{"name": "x", "type": "float"}]}, 422),
        ({"name": "ok", "template": "x", "tags": "nope"}, 422),
        ({"name": "export", "template": "x"}, 422),
        ({"template": "x"}, 422),
    ],
)
def test_create_refuses_bad_input_and_changes_nothing(client, payload, status):
    before = snapshot(client)
    error(client.post(BASE, json=payload), status)
    assert snapshot(client) == before


def test_invalid_template_reports_the_line(client):
    body = error(create(client, template="ok\n{{ x "), 422)
    assert body["details"]["line"] == 2 and body["details"]["reason"]


def test_malformed_json_and_duplicates(client):
    body = error(client.post(BASE, data="{not json", content_type="application/json"), 400)
    assert body["code"] == "malformed_request"
    error(client.post(BASE, data="[1, 2]", content_type="application/json"), 400)
    create(client)
    before = snapshot(client)
    assert error(create(client), 409)["code"] == "prompt_exists"
    assert snapshot(client) == before


def test_list_search_and_pagination(client):
    create(client, "alpha", "Write SQL for {{ q }}", tags=["sql"])
    create(client, "beta", "Explain {{ code }}", description="explainer")
    create(client, "gamma", "Other")
    client.delete(f"{BASE}/gamma")
    listing = client.get(BASE).get_json()
    assert listing["total"] == 2 and [p["name"] for p in listing["items"]] == ["alpha", "beta"]
    assert [p["name"] for p in client.get(f"{BASE}?q=sql").get_json()["items"]] == ["alpha"]
    assert [p["name"] for p in client.get(f"{BASE}?q=EXPLAINER").get_json()["items"]] == ["beta"]
    assert [p["name"] for p in client.get(f"{BASE}?tag=sql").get_json()["items"]] == ["alpha"]
    assert client.get(f"{BASE}?archived=true").get_json()["total"] == 3
    page = client.get(f"{BASE}?limit=1&offset=1").get_json()
    assert page["total"] == 2 and [p["name"] for p in page["items"]] == ["beta"]
    error(client.get(f"{BASE}?limit=501"), 422)
    error(client.get(f"{BASE}?offset=-1"), 422)


def test_patch_and_archive(client):
    create(client)
    response = client.patch(f"{BASE}/greet", json={"description": "new", "tags": ["a"]})
    assert response.status_code == 200 and response.get_json()["description"] == "new"
    before = snapshot(client)
    error(client.patch(f"{BASE}/greet", json={"name": "x"}), 422)
    error(client.patch(f"{BASE}/greet", json={"tags": [1]}), 422)
    error(client.patch(f"{BASE}/greet", data="{", content_type="application/json"), 400)
    error(client.patch(f"{BASE}/nope", json={"description": "x"}), 404)
    assert snapshot(client) == before
    assert client.delete(f"{BASE}/greet").status_code == 204
    assert client.get(f"{BASE}/greet").get_json()["archived"] is True
    assert error(client.patch(f"{BASE}/greet", json={"description": "x"}), 409)["code"] == "prompt_archived"
    error(client.delete(f"{BASE}/nope"), 404)
    restored = create(client, template="Hi {{ who }}")
    assert restored.status_code == 201 and restored.get_json()["latest_version"]["version"] == 2


def test_versions_endpoints(client):
    create(client)
    response = client.post(f"{BASE}/greet/versions", json={"template": "Hi {{ who }}", "message": "shorter"})
    assert response.status_code == 201 and response.get_json()["version"] == 2
    same = client.post(f"{BASE}/greet/versions", json={"template": "Hi {{ who }}"})
    assert same.status_code == 200 and same.get_json()["version"] == 2
    listing = client.get(f"{BASE}/greet/versions").get_json()
    assert [v["version"] for v in listing["items"]] == [2, 1] and listing["total"] == 2
    assert client.get(f"{BASE}/greet/versions/1").get_json()["template"] == "Hello {{ who }}"
    before = snapshot(client)
    error(client.get(f"{BASE}/greet/versions/9"), 404)
    error(client.get(f"{BASE}/nope/versions"), 404)
    error(client.post(f"{BASE}/nope/versions", json={"template": "x"}), 404)
    error(client.post(f"{BASE}/greet/versions", json={"template": "{{ x"}), 422)
    error(client.post(f"{BASE}/greet/versions", json={"template": "x", "extra": 1}), 422)
    error(client.post(f"{BASE}/greet/versions", json={"template": "x", "params": []}), 422)
    # Generation params are checked when saved, not first when a run uses them; other settings are kept as given.
    for bad in ({"temperature": "0.2"}, {"max_new_tokens": 0}, {"do_sample": "yes"}, {"stop": "\n"}):
        body = error(client.post(f"{BASE}/greet/versions", json={"template": "x", "params": bad}), 422)
        assert body["details"]["param"] == next(iter(bad))
    error(client.post(f"{BASE}/greet/versions", data="nope", content_type="application/json"), 400)
    assert snapshot(client) == before


def test_diff(client):
    create(client)
    client.post(f"{BASE}/greet/versions", json={"template": "Hi {{ who }}"})
    text = client.get(f"{BASE}/greet/diff?from=1&to=2").get_json()["diff"]
    assert "-Hello {{ who }}" in text and "+Hi {{ who }}" in text
    assert client.get(f"{BASE}/greet/diff").get_json()["diff"] == text
    error(client.get(f"{BASE}/greet/diff?from=1&to=5"), 404)
    error(client.get(f"{BASE}/greet/diff?from=x"), 422)
    error(client.get(f"{BASE}/nope/diff"), 404)


def test_labels_and_rollback(client):
    create(client)
    client.post(f"{BASE}/greet/versions", json={"template": "Hi {{ who }}"})
    assert client.put(f"{BASE}/greet/labels/production", json={"version": 1}).get_json()["version"] == 1
    moved = client.put(f"{BASE}/greet/labels/production", json={"version": 2}).get_json()
    assert moved["label"] == "production" and moved["version"] == 2
    assert [(h["from"], h["to"], h["action"]) for h in moved["history"]] == [(None, 1, "set"), (1, 2, "set")]
    assert set(moved["history"][0]) >= {"from", "to", "action", "at"}
    assert client.get(f"{BASE}/greet").get_json()["labels"] == {"production": 2}
    back = client.post(f"{BASE}/greet/labels/production/rollback")
    assert back.status_code == 200 and back.get_json()["version"] == 1
    assert error(client.post(f"{BASE}/greet/labels/production/rollback"), 409)["code"] == "no_previous_target"
    before = snapshot(client)
    error(client.post(f"{BASE}/greet/labels/staging/rollback"), 404)
    error(client.put(f"{BASE}/greet/labels/production", json={"version": 7}), 404)
    error(client.put(f"{BASE}/greet/labels/production", json={"version": "two"}), 422)
    error(client.put(f"{BASE}/greet/labels/production", json={"version": 1, "x": 1}), 422)
    error(client.put(f"{BASE}/greet/labels/Bad Label", json={"version": 1}), 422)
    error(client.put(f"{BASE}/nope/labels/production", json={"version": 1}), 404)
    error(client.put(f"{BASE}/greet/labels/production", data="{", content_type="application/json"), 400)
    assert snapshot(client) == before
    assert client.get(f"{BASE}/greet/labels/production").get_json()["version"] == 1


def test_render(client):
    create(client, variables=[{"name": "who"}, {"name": "n", "type": "integer", "required": False, "default": 2}], template="Hello {{ who }} x{{ n }}")
    client.post(f"{BASE}/greet/versions", json={"template": "Hi {{ who }}"})
    client.put(f"{BASE}/greet/labels/production", json={"version": 1})
    assert client.post(f"{BASE}/greet/render", json={"variables": {"who": "Ada"}}).get_json() == {"text": "Hi Ada", "version": 2}
    by_label = client.post(f"{BASE}/greet/render", json={"variables": {"who": "Ada", "n": 3}, "label": "production"}).get_json()
    assert by_label == {"text": "Hello Ada x3", "version": 1}
    assert client.post(f"{BASE}/greet/render", json={"variables": {"who": "A"}, "version": 1}).get_json()["text"] == "Hello A x2"
    missing = error(client.post(f"{BASE}/greet/render", json={"variables": {"whom": "A"}}), 422)
    assert missing["details"] == {"missing": ["who"], "undeclared": ["whom"]}
    typed = error(client.post(f"{BASE}/greet/render", json={"variables": {"who": "A", "n": "3"}, "version": 1}), 422)
    assert typed["details"]["variable"] == "n"
    error(client.post(f"{BASE}/greet/render", json={"variables": {}, "version": 1, "label": "production"}), 422)
    error(client.post(f"{BASE}/greet/render", json={"variables": {}, "label": "staging"}), 404)
    error(client.post(f"{BASE}/greet/render", json={"variables": {}, "version": 5}), 404)
    error(client.post(f"{BASE}/greet/render", json={"variables": "nope"}), 422)
    error(client.post(f"{BASE}/greet/render", data="{", content_type="application/json"), 400)
    error(client.post(f"{BASE}/nope/render", json={"variables": {}}), 404)


def test_sandbox_escape_is_never_a_500(client):
    error(create(client, "evil", "{{ ''.__class__.__mro__ }}"), 422)
    create(client, "evil", "{{ x|attr('__class__') }}")
    body = error(client.post(f"{BASE}/evil/render", json={"variables": {"x": "s"}}), 422)
    assert body["code"] in {"template_unsafe", "render_failed"}


def test_export_and_import_json_and_yaml(client):
    create(client, tags=["t"])
    client.put(f"{BASE}/greet/labels/production", json={"version": 1})
    exported = client.get(f"{BASE}/export").get_json()
    assert exported["prompts"][0]["labels"] == {"production": 1}
    as_yaml = client.get(f"{BASE}/export?format=yaml")
    assert as_yaml.mimetype == "application/x-yaml"
    assert yaml.safe_load(as_yaml.data) == exported
    error(client.get(f"{BASE}/export?format=xml"), 422)
    same = client.post(f"{BASE}/import", json=exported).get_json()
    assert same["prompts_created"] == 0 and same["versions_skipped"] == 1
    exported["prompts"][0]["name"] = "copy"
    created = client.post(f"{BASE}/import", data=yaml.safe_dump(exported), content_type="application/x-yaml").get_json()
    assert created["prompts_created"] == 1 and created["versions_created"] == 1
    assert client.get(f"{BASE}/copy").get_json()["labels"] == {"production": 1}


def test_yaml_import_with_one_bad_prompt_in_the_middle_imports_nothing(client):
    create(client)
    before = snapshot(client)
    document = {
        "prompts": [
            {"name": "first", "versions": [{"version": 1, "template": "A"}]},
            {"name": "broken", "versions": [{"version": 1, "template": "{% for %}"}]},
            {"name": "last", "versions": [{"version": 1, "template": "C"}]},
        ]
    }
    body = error(client.post(f"{BASE}/import", data=yaml.safe_dump(document), content_type="text/yaml"), 422)
    assert body["details"]["prompt"] == "broken" and "broken" in body["message"]
    assert snapshot(client) == before


def test_import_refuses_malformed_bodies(client):
    before = snapshot(client)
    error(client.post(f"{BASE}/import", data="prompts: [", content_type="application/x-yaml"), 400)
    error(client.post(f"{BASE}/import", data="{", content_type="application/json"), 400)
    error(client.post(f"{BASE}/import", json={"prompts": [{"name": "x"}]}), 422)
    error(client.post(f"{BASE}/import", json=[1]), 422)
    conflicting = {"prompts": [{"name": "greet", "versions": [{"version": 1, "template": "different"}]}]}
    create(client)
    before = snapshot(client)
    assert error(client.post(f"{BASE}/import", json=conflicting), 409)["code"] == "import_conflict"
    assert snapshot(client) == before


def test_oversized_body_is_413(client, app):
    huge = json.dumps({"name": "big", "template": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    error(client.post(BASE, data=huge, content_type="application/json"), 413)


def test_roles_and_author(client):
    _, viewer = create_key("viewer", "reader")
    _, editor = create_key("editor", "writer")
    error(create(client), 401)
    assert client.post(BASE, json={"name": "p", "template": "x"}, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    made = client.post(BASE, json={"name": "p", "template": "x"}, headers={"Authorization": f"Bearer {editor}"})
    assert made.status_code == 201 and made.get_json()["latest_version"]["author"] == "writer"
    assert client.get(f"{BASE}/p", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200


def test_openapi_lists_the_prompt_routes(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in (BASE, f"{BASE}/export", f"{BASE}/import", f"{BASE}/{{name}}/render", f"{BASE}/{{name}}/labels/{{label}}/rollback"):
        assert path in paths
