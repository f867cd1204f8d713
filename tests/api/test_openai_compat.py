"""The OpenAI-compatible /v1 surface, driven by the real `openai` client against a real waitress server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from sqlalchemy import select

from promptyard import keys
from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.models import service
from promptyard.plugins.function import FunctionPlugin, prompt_text
from promptyard.server import serve_in_thread


def shout(prompt, params):
    return "HEARD " + prompt_text(prompt).upper() + " DONE"


def describe_params(prompt, params):
    return json.dumps({"max_new_tokens": params.max_new_tokens, "temperature": params.temperature,
                       "do_sample": params.do_sample, "top_p": params.top_p, "seed": params.seed,
                       "stop": params.stop})


@pytest.fixture
def base_url(app):
    service.install_plugin("shout", FunctionPlugin(shout, delay=0.001))
    service.install_plugin("params", FunctionPlugin(describe_params))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def oai(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-needed-on-loopback", max_retries=0, timeout=30)


def recorded(execution_id: int) -> Execution:
    db.session.expire_all()
    return db.session.get(Execution, execution_id)


def test_models_list_and_retrieve(oai):
    ids = [m.id for m in oai.models.list()]
    assert {"shout", "params"} <= set(ids)
    model = oai.models.retrieve("shout")
    assert model.id == "shout" and model.object == "model" and model.owned_by == "function"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("ghost")


def test_chat_completion(oai):
    response = oai.chat.completions.create(model="shout", messages=[{"role": "user", "content": "hello there"}])
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-") and response.model == "shout" and response.created > 0
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "HEARD USER: HELLO THERE DONE"
    assert choice.finish_reason == "stop"
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0
    row = recorded(response.model_extra["promptyard"]["execution_id"])
    assert (row.source, row.status, row.output, row.model_name) == ("v1", "succeeded", choice.message.content, "shout")


def test_chat_completion_stream(oai):
    stream = oai.chat.completions.create(model="shout", messages=[{"role": "system", "content": "be loud"},
                                                                   {"role": "user", "content": "one two three"}],
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "HEARD SYSTEM: BE LOUD\nUSER: ONE TWO THREE DONE"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed, word by word
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    row = recorded(finishing[0].model_extra["promptyard"]["execution_id"])
    assert (row.source, row.status, row.output) == ("v1", "succeeded", text)


def test_completion_and_completion_stream(oai):
    response = oai.completions.create(model="shout", prompt="def add(a, b):")
    assert response.object == "text_completion" and response.id.startswith("cmpl-")
    assert response.choices[0].text == "HEARD DEF ADD(A, B): DONE"
    assert response.choices[0].finish_reason == "stop"
    chunks = list(oai.completions.create(model="shout", prompt="def add(a, b):", stream=True))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == response.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_params_map_onto_generation_params(oai):
    response = oai.completions.create(model="params", prompt="x", max_tokens=7, temperature=0.5, top_p=0.9,
                                      seed=3, stop="\n\n", n=1)
    assert json.loads(response.choices[0].text) == {
        "max_new_tokens": 7, "temperature": 0.5, "do_sample": True, "top_p": 0.9, "seed": 3, "stop": ["\n\n"]}
    chat = oai.chat.completions.create(model="params", messages=[{"role": "user", "content": "x"}],
                                       max_completion_tokens=5, temperature=0, stop=["a", "b"])
    seen = json.loads(chat.choices[0].message.content)
    assert (seen["max_new_tokens"], seen["do_sample"], seen["stop"]) == (5, False, ["a", "b"])


def test_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert "ghost" in str(err.value)
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="ghost", prompt="hi", stream=True)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"n": 2}, "n"),
        ({"temperature": 9}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"model": "prompt:Bad Name"}, "prompt"),
    ],
)
def test_bad_params_are_unprocessable_and_record_nothing(oai, kwargs, named):
    body = {"model": "shout", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oai.chat.completions.create(**body)
    assert named in str(err.value)
    assert db.session.scalar(select(Execution.id)) is None


def test_bad_messages_are_refused(oai):
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model="shout", messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model="shout", messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        oai.completions.create(model="shout", prompt=["one", "two"])


def test_malformed_json_is_bad_request(base_url):
    response = httpx.post(f"{base_url}/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_keys_are_bearer_tokens_like_openai(base_url, app):
    with app.app_context():
        _, viewer = keys.create_key("viewer")
        _, editor = keys.create_key("editor")
    url = f"{base_url}/v1"
    as_editor = openai.OpenAI(base_url=url, api_key=editor, max_retries=0)
    assert as_editor.completions.create(model="shout", prompt="ok").choices[0].text == "HEARD OK DONE"
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=url, api_key=viewer, max_retries=0).completions.create(model="shout", prompt="ok")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="pyd_wrong", max_retries=0).models.list()
