"""The openai-compatible backend against a real (scripted) HTTP server."""

from __future__ import annotations

import time

import pytest

from promptyard.errors import TooManyRequests, Unavailable, Unprocessable
from promptyard.plugins.base import GenerationParams, StreamResult
from promptyard.plugins.openai_backend import OpenAICompatiblePlugin
from tests.fixtures.openai_server import Reply, refused_url, stream_events

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write add."}]


def make_plugin(url: str, **options) -> OpenAICompatiblePlugin:
    settings = {"model": "tiny", "backoff": 0.01, "max_retries": 2, "timeout": 5.0, **options}
    return OpenAICompatiblePlugin(url, options=settings)


def test_chat_goes_to_chat_completions_with_params_and_usage(openai_server):
    plugin = make_plugin(openai_server.base_url)
    result = plugin.generate(CHAT, GenerationParams(max_new_tokens=20, do_sample=True, temperature=0.5, seed=3))
    assert result.text == openai_server.default_text
    assert (result.tokens_in, result.tokens_out, result.finish_reason) == (7, 3, "stop")
    sent = openai_server.requests[0]
    assert sent["_path"] == "/v1/chat/completions"
    assert sent["messages"] == CHAT
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["seed"]) == ("tiny", 20, 0.5, 3)


def test_plain_prompt_goes_to_completions_greedy(openai_server):
    plugin = make_plugin(openai_server.base_url)
    result = plugin.generate("def add(", GenerationParams(max_new_tokens=8, stop=["\n"]))
    sent = openai_server.requests[0]
    assert sent["_path"] == "/v1/completions"
    assert (sent["prompt"], sent["temperature"], sent["stop"]) == ("def add(", 0.0, ["\n"])
    # The server ignored the stop sequence; the plugin still cuts the text there.
    assert result.text == "def add(a, b):"
    assert result.finish_reason == "stop"


def test_usage_missing_falls_back_to_a_rough_count(openai_server):
    openai_server.replies.append(Reply(body={"choices": [{"text": "x" * 40, "finish_reason": "length"}]}))
    result = make_plugin(openai_server.base_url).generate("y" * 80, GenerationParams())
    assert (result.tokens_in, result.tokens_out, result.finish_reason) == (20, 10, "length")


def test_api_key_comes_from_the_named_environment_variable(openai_server, monkeypatch):
    monkeypatch.setenv("TINY_SERVER_KEY", "sk-secret")
    make_plugin(openai_server.base_url, api_key_env="TINY_SERVER_KEY").generate("x", GenerationParams())
    assert openai_server.requests[0]["_auth"] == "Bearer sk-secret"


def test_missing_api_key_variable_is_a_clear_error(openai_server, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(Unavailable, match="NOT_SET_KEY"):
        make_plugin(openai_server.base_url, api_key_env="NOT_SET_KEY").generate("x", GenerationParams())
    assert openai_server.requests == []


@pytest.mark.parametrize(
    "source, options, code",
    [
        ("localhost:8000", {"model": "m"}, "invalid_source"),
        ("http://h/v1", {}, "model_name_required"),
        ("http://h/v1", {"model": "m", "api_key": "sk-1"}, "api_key_in_options"),
        ("http://h/v1", {"model": "m", "timeout": "soon"}, "invalid_options"),
    ],
)
def test_bad_configuration_is_refused(source, options, code):
    with pytest.raises(Unprocessable) as caught:
        OpenAICompatiblePlugin(source, options=options)
    assert caught.value.code == code


def test_streams_chat_deltas_and_returns_usage(openai_server):
    stream = StreamResult(make_plugin(openai_server.base_url).stream(CHAT, GenerationParams()))
    assert list(stream) == ["def ", "add", "()"]
    assert stream.generation.text == "def add()"
    assert (stream.generation.tokens_in, stream.generation.tokens_out) == (5, 3)
    assert openai_server.requests[0]["stream"] is True


def test_streams_plain_completions_and_cuts_at_stop(openai_server):
    openai_server.replies.append(Reply(sse=stream_events({}, ["def f", "():\n", "    pass"])))
    stream = StreamResult(make_plugin(openai_server.base_url).stream("x", GenerationParams(stop=[":\n"])))
    assert "".join(stream) == "def f()"
    assert stream.generation.text == "def f()"
    assert stream.generation.finish_reason == "stop"


def test_closing_a_stream_early_closes_the_connection(openai_server):
    pieces = [f"tok{i} " for i in range(200)]
    openai_server.replies.append(Reply(sse=stream_events({"messages": []}, pieces), event_delay=0.02))
    stream = make_plugin(openai_server.base_url).stream(CHAT, GenerationParams())
    assert next(stream) == "tok0 "
    stream.close()
    deadline = time.monotonic() + 10
    while openai_server.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert openai_server.disconnects == 1


def test_429_is_retried_honouring_retry_after(openai_server):
    openai_server.replies.append(Reply(status=429, body={"error": {"message": "slow down"}},
                                       headers={"Retry-After": "0"}))
    result = make_plugin(openai_server.base_url).generate("x", GenerationParams())
    assert result.text == openai_server.default_text
    assert len(openai_server.requests) == 2


def test_429_with_a_long_retry_after_is_passed_on(openai_server):
    openai_server.replies.append(Reply(status=429, body={"error": "busy"}, headers={"Retry-After": "120"}))
    with pytest.raises(TooManyRequests) as caught:
        make_plugin(openai_server.base_url).generate("x", GenerationParams())
    assert caught.value.retry_after == 120
    assert len(openai_server.requests) == 1


def test_5xx_is_retried_then_becomes_503_with_the_reason(openai_server):
    openai_server.replies.extend(Reply(status=500, body={"error": {"message": "CUDA OOM"}}) for _ in range(5))
    with pytest.raises(Unavailable) as caught:
        make_plugin(openai_server.base_url, max_retries=2).generate("x", GenerationParams())
    assert caught.value.status == 503
    assert "CUDA OOM" in caught.value.message
    assert caught.value.details["attempts"] == 3
    assert len(openai_server.requests) == 3


def test_5xx_then_success_recovers(openai_server):
    openai_server.replies.append(Reply(status=503, body=b"upstream starting"))
    result = make_plugin(openai_server.base_url).generate(CHAT, GenerationParams())
    assert result.text == openai_server.default_text


def test_a_stream_is_retried_before_it_starts(openai_server):
    openai_server.replies.append(Reply(status=502, body=b"bad gateway"))
    stream = StreamResult(make_plugin(openai_server.base_url).stream(CHAT, GenerationParams()))
    assert "".join(stream) == "def add()"


def test_timeout_is_a_503_with_the_reason_and_not_retried(openai_server):
    openai_server.replies.append(Reply(delay=1.5))
    with pytest.raises(Unavailable) as caught:
        make_plugin(openai_server.base_url, timeout=0.3).generate("x", GenerationParams())
    assert caught.value.code == "backend_timeout"
    assert "did not answer within 0.3 seconds" in caught.value.message
    assert len(openai_server.requests) == 1


def test_stalled_stream_is_a_503(openai_server):
    openai_server.replies.append(Reply(sse=["{\"choices\": []}", "[DONE]"], event_delay=1.5))
    with pytest.raises(Unavailable) as caught:
        list(StreamResult(make_plugin(openai_server.base_url, timeout=0.3).stream("x", GenerationParams())))
    assert caught.value.code == "backend_timeout"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"{not json"),
        Reply(body={"choices": []}),
        Reply(body={"choices": [{"text": None}]}),
        Reply(body=[1, 2, 3]),
    ],
    ids=["malformed-json", "no-choices", "null-text", "not-an-object"],
)
def test_garbage_is_a_503(openai_server, reply):
    openai_server.replies.append(reply)
    with pytest.raises(Unavailable) as caught:
        make_plugin(openai_server.base_url).generate("x", GenerationParams())
    assert caught.value.code == "backend_bad_response"


def test_garbage_in_a_stream_is_a_503(openai_server):
    openai_server.replies.append(Reply(sse=["{\"choices\": [{\"text\": \"ok\"}]}", "{broken"]))
    with pytest.raises(Unavailable) as caught:
        list(StreamResult(make_plugin(openai_server.base_url).stream("x", GenerationParams())))
    assert caught.value.code == "backend_bad_response"


def test_client_errors_are_not_retried(openai_server):
    openai_server.replies.append(Reply(status=400, body={"error": {"message": "max_tokens is too large"}}))
    with pytest.raises(Unprocessable, match="max_tokens is too large"):
        make_plugin(openai_server.base_url).generate("x", GenerationParams())
    assert len(openai_server.requests) == 1


def test_connection_refused_is_retried_then_503():
    plugin = make_plugin(refused_url(), max_retries=1)
    with pytest.raises(Unavailable) as caught:
        plugin.generate("x", GenerationParams())
    assert caught.value.status == 503
    assert caught.value.code == "backend_unreachable"
    assert caught.value.details["attempts"] == 2
    assert plugin.status() == "loaded"
    plugin.unload()
    assert plugin.status() == "error"


def test_status_is_available_when_the_server_answers(openai_server):
    plugin = make_plugin(openai_server.base_url)
    assert plugin.status() == "available"
    plugin.load()
    assert plugin.status() == "loaded"
