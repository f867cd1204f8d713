"""How OpenAI requests map onto promptyard: prompt references, variables from messages, default models."""

from __future__ import annotations

import pytest

from promptyard.api import openai_shapes as shapes
from promptyard.errors import Unprocessable


@pytest.mark.parametrize(
    "model, expected",
    [
        ("codet5p-220m", None),
        ("prompt:fix-bug", shapes.PromptTarget("fix-bug")),
        ("prompt:fix-bug@production", shapes.PromptTarget("fix-bug", label="production")),
        ("prompt:fix-bug@v3", shapes.PromptTarget("fix-bug", version=3)),
        ("prompt:fix-bug@vnext", shapes.PromptTarget("fix-bug", label="vnext")),
    ],
)
def test_prompt_targets(model, expected):
    assert shapes.parse_prompt_target(model) == expected


@pytest.mark.parametrize("model", ["prompt:", "prompt:Fix Bug", "prompt:x@", "prompt:x@a b", "prompt:x@@y"])
def test_bad_prompt_targets_are_422(model):
    with pytest.raises(Unprocessable) as err:
        shapes.parse_prompt_target(model)
    assert err.value.details["param"] == "model"


def test_variables_from_a_json_object():
    declared = [{"name": "code"}, {"name": "language"}]
    assert shapes.prompt_variables('{"code": "x = 1", "language": "python"}', declared) == {
        "code": "x = 1", "language": "python"}


def test_a_single_variable_takes_the_whole_text():
    assert shapes.prompt_variables("def f(): pass", [{"name": "code"}]) == {"code": "def f(): pass"}
    # A JSON object still wins, so a single-variable prompt can be sent explicitly too.
    assert shapes.prompt_variables('{"code": "y"}', [{"name": "code"}]) == {"code": "y"}
    # Text that only looks like JSON is the variable's value.
    assert shapes.prompt_variables("{ not json", [{"name": "code"}]) == {"code": "{ not json"}


def test_several_variables_need_a_json_object():
    with pytest.raises(Unprocessable) as err:
        shapes.prompt_variables("just text", [{"name": "code"}, {"name": "language"}])
    assert "code, language" in err.value.message


def test_a_prompt_without_variables_takes_none():
    assert shapes.prompt_variables("anything", []) == {}


def test_default_model_from_version_params_then_config():
    assert shapes.default_model({"model": "m1", "temperature": 0}, "fallback", "p") == "m1"
    assert shapes.default_model({}, "fallback", "p") == "fallback"
    with pytest.raises(Unprocessable) as err:
        shapes.default_model({}, None, "p")
    assert err.value.code == "no_default_model" and "'model' key" in err.value.message


def test_last_user_text_skips_assistant_turns():
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"}]
    assert shapes.last_user_text(messages) == "first"
    with pytest.raises(Unprocessable):
        shapes.last_user_text([{"role": "system", "content": "only system"}])


def test_message_text_joins_text_parts():
    parts = [{"type": "text", "text": "a "}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "b"}]
    assert shapes.message_text(parts) == "a b"
    assert shapes.message_text(None) == ""
