"""GET/POST /api/v1/evals/datasets: what a run can use, and registering JSONL tasks like the CLI does."""

from __future__ import annotations

import json

import pytest

from promptyard import keys
from promptyard.errors import Conflict
from promptyard.evals import datasets, runs

ADD = {"task_id": "t/1", "prompt": "def add(a, b):\n", "entry_point": "add",
       "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "canonical_solution": "    return a + b\n"}
DOUBLE = {"task_id": "t/2", "prompt": "Write double(x).", "entry_point": "double",
          "test_list": ["assert double(2) == 4"]}
GOOD = "".join(json.dumps(row) + "\n" for row in (ADD, DOUBLE))


def jsonl(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


@pytest.fixture
def app_config():
    # Generation never starts in these tests; a run only needs a generator to skip the registered-model check.
    return {"PROMPTYARD_EVAL_GENERATE": lambda run, task, index: ("", None)}


def stored(app) -> list[str]:
    """Every file in the instance's dataset folder, partial files included."""
    folder = datasets.custom_dir(app.config["PROMPTYARD_HOME"])
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def listed(client) -> dict[str, dict]:
    body = client.get("/api/v1/evals/datasets").get_json()
    assert body["total"] == len(body["items"])
    return {item["name"]: item for item in body["items"]}


def test_builtins_are_listed_without_the_network(client, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name == "datasets" or name.startswith("datasets."):
            raise AssertionError("listing datasets must not reach for the Hugging Face hub")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    found = listed(client)
    assert list(found) == ["humaneval", "mbpp", "mbpp-full"]
    assert {name: (item["kind"], item["tasks"]) for name, item in found.items()} == {
        "humaneval": ("builtin", 164), "mbpp": ("builtin", None), "mbpp-full": ("builtin", None)}
    assert all(item["description"] for item in found.values())


def test_register_lists_and_runs_a_custom_dataset(app, client):
    response = client.post("/api/v1/evals/datasets", json={"name": "mine", "jsonl": GOOD})
    assert response.status_code == 201
    assert response.get_json() == {"name": "mine", "kind": "custom", "tasks": 2, "description": "Registered from JSONL."}
    assert listed(client)["mine"] == response.get_json()
    # Kept as sent (no partial file left beside it), loaded by name like a CLI-registered one.
    assert stored(app) == ["mine.jsonl"]
    assert (datasets.custom_dir(app.config["PROMPTYARD_HOME"]) / "mine.jsonl").read_text() == GOOD
    assert runs.create_run("mine", "fake", n=3, k=[1], submit=False, params={"temperature": 0.8}).progress_total == 6


def test_a_taken_name_is_409_and_keeps_the_first_tasks(app, client, cli, tmp_path):
    assert client.post("/api/v1/evals/datasets", json={"name": "mine", "jsonl": GOOD}).status_code == 201
    again = client.post("/api/v1/evals/datasets", json={"name": "mine", "jsonl": jsonl(DOUBLE)})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "dataset_exists" and "'mine'" in again.get_json()["error"]["message"]
    assert listed(client)["mine"]["tasks"] == 2
    # The CLI refuses the name the same way (exit 2), and the API refuses a name the CLI registered.
    path = tmp_path / "one.jsonl"
    path.write_text(jsonl(DOUBLE))
    refused = cli("eval", "register-dataset", "mine", str(path))
    assert refused.exit_code == 2 and "already registered" in refused.output
    assert cli("eval", "register-dataset", "from-cli", str(path)).exit_code == 0
    assert client.post("/api/v1/evals/datasets", json={"name": "from-cli", "jsonl": GOOD}).status_code == 409
    assert {name: item["tasks"] for name, item in listed(client).items() if name in ("mine", "from-cli")} == {
        "mine": 2, "from-cli": 1}
    assert stored(app) == ["from-cli.jsonl", "mine.jsonl"]


def test_a_name_taken_while_validating_is_409_and_leaves_no_partial_file(app):
    """Two registrations of one name at once: the second to link its file into place loses, cleanly."""
    home = app.config["PROMPTYARD_HOME"]
    datasets.register_custom_text(home, "mine", GOOD)
    with pytest.raises(Conflict):
        datasets._store_new(home, "mine", jsonl(DOUBLE))
    assert stored(app) == ["mine.jsonl"]
    assert len(datasets.load_dataset("mine", home=home).tasks) == 2


@pytest.mark.parametrize(
    "body, code, line, field",
    [
        ({"name": "m", "jsonl": jsonl(ADD, {"task_id": "t/2", "prompt": "p", "tests": "assert 1"})},
         "invalid_dataset", 2, "entry_point"),
        ({"name": "m", "jsonl": jsonl(ADD, "", "{not json")}, "invalid_dataset", 3, None),
        ({"name": "m", "jsonl": jsonl("[1, 2]")}, "invalid_dataset", 1, None),
        ({"name": "m", "jsonl": jsonl({**ADD, "task_id": 7})}, "invalid_dataset", 1, "task_id"),
        ({"name": "m", "jsonl": jsonl({**ADD, "tests": "assert f() =="})}, "invalid_dataset", 1, "tests"),
        ({"name": "m", "jsonl": jsonl({**ADD, "tests": ["assert 1"]})}, "invalid_dataset", 1, "tests"),
        ({"name": "m", "jsonl": jsonl({**DOUBLE, "test_list": "assert 1"})}, "invalid_dataset", 1, "test_list"),
        ({"name": "m", "jsonl": jsonl({**ADD, "canonical_solution": 5})}, "invalid_dataset", 1, "canonical_solution"),
        ({"name": "m", "jsonl": jsonl(ADD, ADD)}, "invalid_dataset", 2, "task_id"),
        ({"name": "m", "jsonl": ""}, "invalid_dataset", 1, None),
        ({"name": "m", "jsonl": "\n  \n"}, "invalid_dataset", 1, None),
        ({"name": "humaneval", "jsonl": GOOD}, "invalid_dataset_name", None, "name"),
        ({"name": "mbpp-full", "jsonl": GOOD}, "invalid_dataset_name", None, "name"),
        ({"name": "Bad Name", "jsonl": GOOD}, "invalid_dataset_name", None, "name"),
        ({"name": "../escape", "jsonl": GOOD}, "invalid_dataset_name", None, "name"),
        ({"name": "", "jsonl": GOOD}, "invalid_dataset_name", None, "name"),
    ],
)
def test_bad_tasks_or_names_are_422_naming_line_and_field(app, client, body, code, line, field):
    response = client.post("/api/v1/evals/datasets", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["details"].get("line") == line and error["details"].get("field") == field
    if line is not None:
        assert error["message"].startswith(f"jsonl, line {line}: ")
    assert stored(app) == [] and list(listed(client)) == ["humaneval", "mbpp", "mbpp-full"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": 5, "jsonl": GOOD}, "name"),
        ({"name": "m", "jsonl": [ADD, DOUBLE]}, "jsonl"),
        ({"name": "m", "jsonl": None}, "jsonl"),
        ({"name": "m"}, "jsonl"),
        ({"jsonl": GOOD}, "name"),
        ({"name": "m", "jsonl": GOOD, "replace": True}, "replace"),
    ],
)
def test_wrong_types_and_fields_are_422(app, client, body, field):
    response = client.post("/api/v1/evals/datasets", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["error"]["details"]["errors"]] == [field]
    assert stored(app) == []


@pytest.mark.parametrize("data", ["{not json", "", "null", '["m", "x"]', "42", "\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400(app, client, data):
    response = client.post("/api/v1/evals/datasets", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_request"
    assert stored(app) == []


def test_an_oversized_body_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post("/api/v1/evals/datasets", json={"name": "big", "jsonl": jsonl(*[DOUBLE] * 40)})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert stored(app) == []


def test_registering_needs_the_editor_role(app, client):
    _, viewer = keys.create_key("viewer")
    _, editor = keys.create_key("editor")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert client.get("/api/v1/evals/datasets", headers=as_viewer).status_code == 200
    refused = client.post("/api/v1/evals/datasets", json={"name": "mine", "jsonl": GOOD}, headers=as_viewer)
    assert refused.status_code == 403 and stored(app) == []
    accepted = client.post("/api/v1/evals/datasets", json={"name": "mine", "jsonl": GOOD},
                           headers={"Authorization": f"Bearer {editor}"})
    assert accepted.status_code == 201


def test_files_put_in_the_folder_by_hand_are_listed_as_they_load(app, client):
    folder = datasets.custom_dir(app.config["PROMPTYARD_HOME"])
    folder.mkdir(parents=True)
    (folder / "edited.jsonl").write_text(jsonl(ADD, {"task_id": "t/2"}))
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    # A run naming humaneval gets the built-in set, whatever file has that name: the listing says so too.
    (folder / "humaneval.jsonl").write_text(jsonl(ADD))
    found = listed(client)
    assert (found["humaneval"]["kind"], found["humaneval"]["tasks"]) == ("builtin", 164)
    assert sorted(found) == ["binary", "edited", "humaneval", "mbpp", "mbpp-full"]
    assert (found["edited"]["kind"], found["edited"]["tasks"]) == ("custom", None)
    assert "line 2: missing field 'prompt'" in found["edited"]["description"]
    assert found["binary"]["tasks"] is None and "no longer reads" in found["binary"]["description"]
    # A run on it is refused with the same reason, not started.
    assert client.post("/api/v1/evals", json={"dataset": "edited", "model": "fake"}).status_code == 422
    assert runs.list_runs()[1] == 0


MBPP_ROW = {"task_id": 2, "prompt": "Write a function to double a number.", "code": "def double(x):\n    return 2 * x\n",
            "test_list": ["assert double(2) == 4"], "test_imports": []}


def test_mbpp_offline_fails_at_once_and_says_how_to_use_a_local_copy(client, monkeypatch):
    from promptyard.db.eval_models import EvalRun

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    response = client.post("/api/v1/evals", json={"dataset": "mbpp", "model": "m"})
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "dataset_unavailable" and "HF_HUB_OFFLINE is set" in error["message"]
    assert '"dataset_path"' in error["message"] and "register-dataset" in error["message"]
    assert EvalRun.query.count() == 0


def test_a_run_can_name_a_local_copy_on_the_server(client, tmp_path):
    copy = tmp_path / "mbpp.jsonl"
    copy.write_text(jsonl(MBPP_ROW))
    response = client.post("/api/v1/evals", json={"dataset": "mbpp", "model": "m", "dataset_path": str(copy)})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["progress"]["total"] == 1
    missing = client.post("/api/v1/evals", json={"dataset": "mbpp", "model": "m",
                                                 "dataset_path": str(tmp_path / "absent.jsonl")})
    assert missing.status_code == 422 and "does not exist" in missing.get_json()["error"]["message"]
    for bad in (42, "", ["x"]):
        assert client.post("/api/v1/evals", json={"dataset": "mbpp", "model": "m",
                                                  "dataset_path": bad}).status_code == 422
