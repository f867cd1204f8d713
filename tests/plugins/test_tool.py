"""An LLM plugin is also an agent tool: execute(prompt=..., params=...) checks its input like input_schema says."""

from __future__ import annotations

import pytest

from promptyard.errors import Unprocessable
from promptyard.plugins.base import GenerationParams, LLMPlugin
from promptyard.plugins.function import FunctionPlugin, prompt_text
from promptyard.plugins.transformers_backend import TransformersPlugin


@pytest.fixture
def echo():
    seen = []

    def fn(prompt, params):
        seen.append(params)
        return "echo " + prompt_text(prompt)

    plugin = FunctionPlugin(fn)
    plugin.seen = seen
    return plugin


def test_execute_is_generate_with_its_result_as_a_dict(echo):
    result = echo.execute(prompt="one two", params={"max_new_tokens": 5, "stop": ["x"]})
    assert result["text"] == "echo one two" and result["tokens_in"] == 2 and result["finish_reason"] == "stop"
    assert (echo.seen[-1].max_new_tokens, echo.seen[-1].stop) == (5, ["x"])
    chat = echo.execute(prompt=[{"role": "user", "content": "hi"}])
    assert chat["text"] == "echo user: hi" and echo.seen[-1].max_new_tokens == 256  # the defaults


@pytest.mark.parametrize("kwargs, field", [
    ({}, "prompt"),
    ({"params": {"max_new_tokens": 5}}, "prompt"),
    ({"prompt": "x", "temperature": 0.5}, "temperature"),
])
def test_a_missing_or_unknown_input_is_a_422_naming_it(echo, kwargs, field):
    with pytest.raises(Unprocessable) as raised:
        echo.execute(**kwargs)
    assert raised.value.details["field"] == field and f"'{field}'" in raised.value.message
    assert echo.seen == []


@pytest.mark.parametrize("prompt", [42, None, {"role": "user"}, [], ["hi"], [{"role": "user"}],
                                    [{"role": "user", "content": 5}], [{"role": 1, "content": "x"}]])
def test_a_prompt_that_is_neither_text_nor_messages_is_a_422(echo, prompt):
    with pytest.raises(Unprocessable) as raised:
        echo.execute(prompt=prompt)
    assert raised.value.code in ("invalid_prompt", "invalid_messages")
    assert echo.seen == []


@pytest.mark.parametrize("params, param", [
    ({"max_new_tokens": "5"}, "max_new_tokens"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"do_sample": "yes"}, "do_sample"),
    ({"beams": 2}, "beams"),
    ("greedy", "params"),
    (None, "params"),
])
def test_bad_params_are_promptyards_422_naming_the_param(echo, params, param):
    with pytest.raises(Unprocessable) as raised:
        echo.execute(prompt="x", params=params)
    assert raised.value.code == "invalid_params" and raised.value.details["param"] == param
    assert echo.seen == []


def test_the_input_schema_says_what_execute_accepts():
    schema = LLMPlugin.input_schema
    assert schema["required"] == ["prompt"] and schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"prompt", "params"}
    assert schema["properties"]["params"]["additionalProperties"] is False


def test_the_tiny_gpt2_as_a_tool(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    result = plugin.execute(prompt="def add(a, b):", params={"max_new_tokens": 4})
    assert result["text"] == plugin.generate("def add(a, b):", GenerationParams(max_new_tokens=4)).text
    assert (result["tokens_out"], result["finish_reason"]) == (4, "length")
    assert set(result) == {"text", "tokens_in", "tokens_out", "finish_reason", "timings"}
    with pytest.raises(Unprocessable) as raised:
        plugin.execute(prompt="x = 1\n" * 200)
    assert raised.value.code == "context_length_exceeded"
    with pytest.raises(Unprocessable):
        plugin.execute(params={"max_new_tokens": 4})
