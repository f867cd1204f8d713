"""`promptyard models list|register|pull`, including pulling with the hub unreachable (it is, here)."""

from __future__ import annotations

import pytest

from promptyard.models import service
from promptyard.plugins.function import FunctionPlugin


class StandIn(FunctionPlugin):
    """Built from a source like a real backend; stands in for `transformers` when that is not installed."""

    name = "standin"
    description = "Stand-in backend."

    def __init__(self, source, *, revision=None, quantization=None, options=None):
        super().__init__(lambda prompt, params: "ok", source=source)


@pytest.fixture
def plugins(app):
    from promptyard.plugins.registry import get_registry

    registry = get_registry()
    registry.register("standin", StandIn)
    return registry


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    """Nothing cached, so a pull has to reach the hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_register_then_list(cli, plugins):
    result = cli("models", "register", "coder", "--plugin", "standin", "--source", "org/coder",
                 "--param", "max_new_tokens=32", "--param", "stop=[\"\\n\\n\"]", "--pricing", "gpu_hour=2.5",
                 "--option", "trust_remote_code=true")
    assert result.exit_code == 0, result.output
    assert "Registered coder" in result.output
    row = service.get_model("coder")
    assert row.params == {"max_new_tokens": 32, "stop": ["\n\n"]}
    assert row.pricing == {"gpu_hour": 2.5} and row.options == {"trust_remote_code": True}
    listed = cli("models", "list")
    assert listed.exit_code == 0
    assert "coder\tstandin\tavailable\torg/coder" in listed.output


def test_list_when_empty_says_how_to_add(cli):
    result = cli("models", "list")
    assert result.exit_code == 0 and "promptyard models register" in result.output


@pytest.mark.parametrize(
    "args, says",
    [
        (["--plugin", "standin", "--param", "temperature=hot"], "temperature"),
        (["--plugin", "standin", "--param", "no-equals-sign"], "KEY=VALUE"),
        (["--plugin", "standin", "--pricing", "per_token=1"], "per_token"),
        (["--plugin", "nope"], "nope"),
    ],
)
def test_register_bad_input_exits_2_with_one_line(cli, plugins, args, says):
    result = cli("models", "register", "coder", "--source", "org/coder", *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert service.list_models() == []


def test_register_duplicate_exits_2(cli, plugins):
    assert cli("models", "register", "coder", "--plugin", "standin", "--source", "a").exit_code == 0
    result = cli("models", "register", "coder", "--plugin", "standin", "--source", "b")
    assert result.exit_code == 2 and "already registered" in result.output


def test_pull_with_the_hub_offline_says_so_and_how_to_fix(cli, plugins, monkeypatch, empty_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    service.register_model("tiny", "transformers", "promptyard-test/does-not-exist-anywhere")
    result = cli("models", "pull", "tiny")
    assert result.exit_code == 2, result.output
    assert "HF_HUB_OFFLINE is set" in result.output
    assert "Unset HF_HUB_OFFLINE" in result.output
    assert "promptyard models register tiny-local --plugin transformers --source /path/to/folder" in result.output


def test_pull_with_the_hub_unreachable_says_so_and_how_to_fix(cli, plugins, monkeypatch, empty_hub_cache):
    from huggingface_hub import constants

    # A closed local port: the connection is refused at once, whatever the network does.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    service.register_model("tiny", "transformers", "promptyard-test/does-not-exist-anywhere")
    result = cli("models", "pull", "tiny")
    assert result.exit_code == 2, result.output
    assert "cannot be reached from this machine" in result.output
    assert "http://127.0.0.1:9" in result.output
    assert "HF_ENDPOINT" in result.output and "promptyard models register tiny" in result.output


def test_pull_unknown_model_exits_2(cli):
    result = cli("models", "pull", "ghost")
    assert result.exit_code == 2 and "No model named 'ghost'" in result.output


def test_pull_an_api_backend_has_nothing_to_pull(cli, plugins):
    service.register_model("remote", "standin", "http://127.0.0.1:8000/v1")
    result = cli("models", "pull", "remote")
    assert result.exit_code == 2 and "no weights to pull" in result.output


def test_pull_a_local_folder_needs_no_download(cli, plugins, tiny_gpt2_dir):
    service.register_model("local", "transformers", str(tiny_gpt2_dir))
    result = cli("models", "pull", "local")
    assert result.exit_code == 0, result.output
    assert f"weights in {tiny_gpt2_dir}" in result.output


def test_update_fixes_a_model_and_remove_deletes_or_archives(cli, plugins):
    cli("models", "register", "coder", "--plugin", "standin", "--source", "org/wrong", "--pricing", "gpu_hour=1")
    result = cli("models", "update", "coder", "--source", "org/right", "--option", "model=served",
                 "--param", "max_new_tokens=16", "--no-pricing")
    assert result.exit_code == 0, result.output
    assert "Updated coder" in result.output
    row = service.get_model("coder")
    assert (row.source, row.options, row.params, row.pricing) == ("org/right", {"model": "served"},
                                                                   {"max_new_tokens": 16}, {})
    bad = cli("models", "update", "coder", "--param", "temperature=hot")
    assert bad.exit_code == 2 and "temperature" in bad.output and "Traceback" not in bad.output
    assert service.get_model("coder").params == {"max_new_tokens": 16}
    assert cli("models", "update", "coder").exit_code == 2  # nothing to change

    from promptyard.execution.pipeline import ExecutionRequest, execute

    execute(ExecutionRequest(model="coder", input="x"))
    refused = cli("models", "remove", "coder")
    assert refused.exit_code == 2 and "--archive" in refused.output
    archived = cli("models", "remove", "coder", "--archive")
    assert archived.exit_code == 0 and "Archived coder" in archived.output
    assert "coder" not in cli("models", "list").output

    cli("models", "register", "spare", "--plugin", "standin", "--source", "org/spare")
    deleted = cli("models", "remove", "spare")
    assert deleted.exit_code == 0 and "Deleted spare" in deleted.output
    assert cli("models", "remove", "spare").exit_code == 2
