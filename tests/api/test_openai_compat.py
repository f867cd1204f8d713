"""The OpenAI-compatible /v1 surface, driven by the real `openai` client against a real waitress server."""

from __future__ import annotations

import json

import threading

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


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "64"), ("max_tokens", 64.0), ("max_tokens", True), ("max_completion_tokens", "5"),
    ("temperature", "0.5"), ("temperature", True), ("top_p", "1"), ("seed", True), ("seed", "7"),
    ("stream", "yes"), ("n", "1"), ("stop", 5),
])
def test_fields_of_the_wrong_type_are_refused_not_converted(base_url, field, value):
    body = {"model": "params", "messages": [{"role": "user", "content": "hi"}], field: value}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["errors"][0]["field"].split(".")[0] == field
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


def test_a_library_prompt_runs_on_its_default_model(oai, make_prompt):
    make_prompt("explain", ["Explain {{ code }}", "Explain briefly: {{ code }}"],
                params=[{"model": "shout"}, {"model": "shout", "max_new_tokens": 9}], labels={"production": 1},
                variables=[{"name": "code", "type": "string", "required": True}])
    latest = oai.chat.completions.create(model="prompt:explain", messages=[{"role": "user", "content": "x = 1"}])
    assert latest.choices[0].message.content == "HEARD EXPLAIN BRIEFLY: X = 1 DONE"
    by_label = oai.completions.create(model="prompt:explain@production", prompt='{"code": "y = 2"}')
    assert by_label.choices[0].text == "HEARD EXPLAIN Y = 2 DONE"
    pinned = list(oai.completions.create(model="prompt:explain@v2", prompt="z", stream=True))
    assert "".join(c.choices[0].text for c in pinned) == "HEARD EXPLAIN BRIEFLY: Z DONE"
    row = recorded(by_label.model_extra["promptyard"]["execution_id"])
    assert (row.prompt_name, row.version_number, row.label, row.model_name, row.source) == (
        "explain", 1, "production", "shout", "v1")
    assert row.variables == {"code": "y = 2"}
    assert "model" not in row.params  # the default model is not a generation param


def test_prompt_errors_say_what_is_wrong(oai, make_prompt):
    make_prompt("two", ["{{ a }} and {{ b }}"], params=[{"model": "shout"}],
                variables=[{"name": "a"}, {"name": "b"}])
    make_prompt("orphan", ["{{ name }}"])
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="prompt:missing", prompt="x")
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="prompt:two@nolabel", prompt="x")
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oai.completions.create(model="prompt:two", prompt="just text")
    assert "a, b" in str(err.value)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oai.completions.create(model="prompt:orphan", prompt="x")
    assert "no default model" in str(err.value)
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model="prompt:two", messages=[{"role": "system", "content": "no user turn"}])
    assert db.session.scalar(select(Execution.id)) is None


def test_a_client_that_goes_away_mid_stream_leaves_a_cancelled_record(base_url, app):
    service.install_plugin("slow", FunctionPlugin(lambda p, params: "word " * 200, delay=0.02))
    body = {"model": "slow", "prompt": "go", "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["text"] == "word "
    row = wait_for(lambda: db.session.scalar(select(Execution).where(Execution.status != "running")))
    assert row.status == "cancelled" and row.source == "v1"
    assert row.output.startswith("word ") and len(row.output) < len("word " * 200)


def wait_for(find, seconds: float = 20.0):
    """Poll the database until `find` returns something (the server finishes the record on its own thread)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        db.session.rollback()
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("nothing appeared in time")


class GatedPlugin(FunctionPlugin):
    """Streams its first word, then holds its queue slot until the test opens the gate."""

    def __init__(self, fn, gate: threading.Event):
        super().__init__(fn)
        self.gate = gate

    def stream(self, prompt, params):
        words = super().stream(prompt, params)
        yield next(words)
        self.gate.wait(30)
        return (yield from words)


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "x"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
])
def test_a_stream_dropped_before_its_first_read_is_cancelled_and_frees_its_slot(app, client, monkeypatch,
                                                                                 path, body):
    from werkzeug.test import EnvironBuilder

    from promptyard.api import openai_compat

    # Hold the execution stream, as anything keeping the dropped response alive would (a traceback, a reference
    # cycle): its cleanup must not wait for the garbage collector.
    kept = []
    monkeypatch.setattr(openai_compat, "execute_stream",
                        lambda request, real=openai_compat.execute_stream: kept.append(real(request)) or kept[-1])
    service.install_plugin("words", FunctionPlugin(lambda prompt, params: "one two three"))
    app.extensions["promptyard.execution.queue"].size = 0
    request = {"model": "words", "stream": True, "cache": False, **body}
    statuses = []
    # Straight through WSGI: the test client would read the first chunk, and this response is never read.
    body_iterator = app(EnvironBuilder(path=path, method="POST", json=request).get_environ(),
                        lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"]
    body_iterator.close()  # what the WSGI server does when the client went away before the first chunk
    row = db.session.scalar(select(Execution))
    assert row.status == "cancelled" and row.output == "one "  # the first delta was pulled to check the request
    # The slot came back: with no queue room, a second request only runs if the first released it.
    again = client.post(path, json={**request, "stream": False})
    assert again.status_code == 200, again.get_json()


@pytest.mark.parametrize("app_config", [{"PROMPTYARD_QUEUE_CONCURRENCY": 1, "PROMPTYARD_QUEUE_SIZE": 0}])
def test_a_full_queue_is_a_rate_limit_error(base_url, oai, app):
    gate = threading.Event()
    service.install_plugin("busy", GatedPlugin(lambda p, params: "tick " * 10, gate))
    with httpx.stream("POST", f"{base_url}/v1/completions", json={"model": "busy", "prompt": "a", "stream": True},
                      timeout=30) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # it holds the only slot now
        try:
            with pytest.raises(openai.RateLimitError) as err:
                oai.completions.create(model="busy", prompt="b")
        finally:
            gate.set()
        assert err.value.response.headers.get("Retry-After")
        assert any("[DONE]" in line for line in lines)


def test_the_openai_compatible_backend_round_trips_through_promptyards_own_v1(base_url, app):
    # promptyard as a client of promptyard: model "loop" is served by the openai-compatible plugin from /v1.
    service.register_model("loop", "openai-compatible", f"{base_url}/v1",
                           options={"model": "shout", "timeout": 10, "max_retries": 0})
    response = httpx.post(f"{base_url}/api/v1/executions", timeout=30,
                          json={"model": "loop", "input": [{"role": "user", "content": "round trip"}], "cache": False})
    assert response.status_code == 201, response.text
    outer = response.json()
    assert outer["output"] == "HEARD USER: ROUND TRIP DONE" and outer["model"] == "loop"
    inner = db.session.scalar(select(Execution).where(Execution.source == "v1"))
    assert (inner.model_name, inner.output) == ("shout", outer["output"])

    with httpx.stream("POST", f"{base_url}/api/v1/executions", timeout=30,
                      json={"model": "loop", "input": "streamed trip", "stream": True, "cache": False}) as streamed:
        events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: ")]
    deltas = "".join(e.get("delta", "") for e in events)
    assert deltas == "HEARD STREAMED TRIP DONE"
    assert events[-1]["execution"]["output"] == deltas and events[-1]["execution"]["status"] == "succeeded"

    service.register_model("dead-loop", "openai-compatible", f"{base_url}/v1",
                           options={"model": "ghost", "timeout": 10, "max_retries": 0})
    missing = httpx.post(f"{base_url}/api/v1/executions", json={"model": "dead-loop", "input": "x"}, timeout=30)
    assert missing.status_code in (404, 503), missing.text  # promptyard's 404 for "ghost", mapped by the backend


def test_the_tiny_gpt2_through_the_transformers_plugin(base_url, oai, tiny_gpt2_dir):
    service.register_model("tiny-gpt2", "transformers", str(tiny_gpt2_dir))
    messages = [{"role": "user", "content": "Write add."}]
    whole = oai.chat.completions.create(model="tiny-gpt2", messages=messages, max_tokens=12, temperature=0,
                                        extra_body={"cache": False})
    assert whole.usage.completion_tokens > 0 and whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(oai.chat.completions.create(model="tiny-gpt2", messages=messages, max_tokens=12, temperature=0,
                                              stream=True, extra_body={"cache": False}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    completion = oai.completions.create(model="tiny-gpt2", prompt="def add(a, b):", max_tokens=12)
    cached = oai.completions.create(model="tiny-gpt2", prompt="def add(a, b):", max_tokens=12)
    assert cached.choices[0].text == completion.choices[0].text
    assert cached.model_extra["promptyard"]["cache_hit"] is True


@pytest.fixture
def make_prompt(app):
    """make_prompt(name, [templates], params=[...], labels={...}, variables=[...]): rows written directly."""
    import hashlib

    from promptyard.db.models import Prompt, PromptLabel, PromptVersion

    def make(name, templates, *, params=None, labels=None, variables=None):
        prompt = Prompt(name=name, description="", tags=[])
        db.session.add(prompt)
        db.session.flush()
        versions = []
        for number, template in enumerate(templates, start=1):
            version = PromptVersion(
                prompt_id=prompt.id, number=number, template=template,
                variables=variables if variables is not None else [{"name": "name"}],
                params=(params or [{}] * len(templates))[number - 1],
                content_hash=hashlib.sha256(template.encode()).hexdigest(),
            )
            db.session.add(version)
            versions.append(version)
        db.session.flush()
        for label, number in (labels or {}).items():
            db.session.add(PromptLabel(prompt_id=prompt.id, name=label, version_id=versions[number - 1].id))
        db.session.commit()
        return prompt

    return make
