"""The prompt library pushed to a Hub dataset repository, through huggingface_hub against a local stand-in."""

from __future__ import annotations

import json

import pytest
import yaml

from promptyard.prompts.library import create_prompt
from tests.fixtures.hub_server import serve_hub


@pytest.fixture
def hub(monkeypatch):
    found, stop = serve_hub()
    monkeypatch.setenv("HF_ENDPOINT", found.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield found
    stop()


def test_cli_pushes_the_library_as_a_dataset(app, cli, hub):
    create_prompt("explain", "Explain {{ code }}", description="Explain code")
    create_prompt("fix", "Fix {{ code }}")
    result = cli("prompts", "push", "acme/prompts")
    assert result.exit_code == 0, result.output
    assert "Pushed 2 prompts (2 versions) to acme/prompts" in result.output
    files = hub.repos["acme/prompts"]
    assert set(files) == {"prompts.jsonl", "promptyard-library.yaml", "README.md"}
    lines = [json.loads(line) for line in files["prompts.jsonl"].decode().splitlines()]
    assert [p["name"] for p in lines] == ["explain", "fix"]
    assert lines[0]["versions"][0]["template"] == "Explain {{ code }}"
    assert [p["name"] for p in yaml.safe_load(files["promptyard-library.yaml"])["prompts"]] == ["explain", "fix"]
    assert hub.commits[0]["kind"] == "datasets"
    assert hub.validated[0]["configs"][0]["data_files"] == "prompts.jsonl"


def test_bad_pushes_are_refused(app, client, hub, monkeypatch):
    empty = client.post("/api/v1/hub/prompts", json={"repo": "acme/prompts"})
    assert empty.status_code == 422 and empty.get_json()["error"]["code"] == "empty_library"
    create_prompt("explain", "Explain {{ code }}")
    bad = client.post("/api/v1/hub/prompts", json={"repo": "no-slash"})
    assert bad.status_code == 422 and bad.get_json()["error"]["details"]["field"] == "repo"
    assert client.post("/api/v1/hub/prompts", json={}).status_code == 422
    assert hub.repos == {}
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    down = client.post("/api/v1/hub/prompts", json={"repo": "acme/prompts"})
    assert down.status_code == 503 and down.get_json()["error"]["code"] == "hub_push_failed"
