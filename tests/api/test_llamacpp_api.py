"""A GGUF model through every surface: registered by the API and the CLI, run by /api/v1/executions, by /v1 with the
real openai client (whole and streamed, a client that goes away), and by an evaluation run in chat mode."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from llama_cpp import Llama
from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.models import Execution, ModelConfig
from promptyard.server import serve_in_thread

CHAT = [{"role": "user", "content": "Write add."}]


def stored(text: str) -> str:
    """Raw llama-cpp-python's text as the plugin gives it: without NUL, which PostgreSQL cannot store."""
    return text.replace("\x00", "")


def register(client, tiny_gguf, name="tiny-gguf", **extra):
    return client.post("/api/v1/models", json={"name": name, "plugin": "llamacpp", "source": str(tiny_gguf),
                                                "options": {"n_threads": 1}, **extra})


@pytest.fixture
def raw(tiny_gguf):
    llm = Llama(model_path=str(tiny_gguf), n_ctx=1024, n_threads=1, verbose=False)
    yield llm
    llm.close()


def test_register_through_the_api_and_execute(client, tiny_gguf, raw):
    response = register(client, tiny_gguf)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "available"
    assert "llamacpp" in {p["name"] for p in client.get("/api/v1/plugins").get_json()["items"]}
    first = client.post("/api/v1/executions", json={"model": "tiny-gguf", "input": CHAT,
                                                    "params": {"max_new_tokens": 16}}).get_json()
    assert first["status"] == "succeeded"
    theirs = raw.create_chat_completion(CHAT, max_tokens=16, temperature=0.0)
    assert first["output"] == stored(theirs["choices"][0]["message"]["content"])
    assert (first["tokens_in"], first["tokens_out"]) == (theirs["usage"]["prompt_tokens"], 16)
    again = client.post("/api/v1/executions", json={"model": "tiny-gguf", "input": CHAT,
                                                    "params": {"max_new_tokens": 16}}).get_json()
    assert again["cache_hit"] is True and again["output"] == first["output"]
    assert client.get("/api/v1/models/tiny-gguf").get_json()["status"] == "loaded"


@pytest.mark.parametrize("body, code", [
    ({"options": {"n_ctx": "big"}}, "invalid_options"),
    ({"options": {"n_gpu_layers": -5}}, "invalid_options"),
    ({"options": {"file": "x.gguf"}}, "invalid_source"),
    ({"quantization": "4bit"}, "invalid_quantization"),
    ({"source": "just-a-name"}, "invalid_source"),
])
def test_bad_registrations_are_422_and_register_nothing(client, tiny_gguf, body, code):
    response = register(client, tiny_gguf, **body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and "details" in error
    assert db.session.scalar(select(func.count()).select_from(ModelConfig)) == 0


def test_a_vanished_file_is_a_clear_error_not_a_500(client, tmp_path, tiny_gguf):
    copy = tmp_path / "gone.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    assert register(client, copy, name="gone").status_code == 201
    copy.unlink()
    assert client.get("/api/v1/models/gone").get_json()["status"] == "error"
    response = client.post("/api/v1/executions", json={"model": "gone", "input": "x"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "model_path_not_found"


def test_the_cli_registers_a_gguf_file(cli, tiny_gguf):
    result = cli("models", "register", "cli-gguf", "--plugin", "llamacpp", "--source", str(tiny_gguf),
                 "--option", "n_ctx=512")
    assert result.exit_code == 0, result.output
    assert "available" in result.output
    assert db.session.scalar(select(ModelConfig).where(ModelConfig.name == "cli-gguf")).options == {"n_ctx": 512}


def test_v1_with_the_real_openai_client(app, client, tiny_gguf, raw):
    assert register(client, tiny_gguf).status_code == 201
    with serve_in_thread(app) as base_url:
        oai = openai.OpenAI(base_url=f"{base_url}/v1", api_key="loopback", max_retries=0, timeout=60)
        assert "tiny-gguf" in {m.id for m in oai.models.list()}
        whole = oai.chat.completions.create(model="tiny-gguf", messages=CHAT, max_tokens=12, temperature=0,
                                            extra_body={"cache": False})
        expected = raw.create_chat_completion(CHAT, max_tokens=12, temperature=0.0)["choices"][0]["message"]
        assert whole.choices[0].message.content == stored(expected["content"])
        assert whole.usage.completion_tokens == 12 and whole.choices[0].finish_reason == "length"
        chunks = list(oai.chat.completions.create(model="tiny-gguf", messages=CHAT, max_tokens=12, temperature=0,
                                                  stream=True, extra_body={"cache": False}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == stored(expected["content"])
        completion = oai.completions.create(model="tiny-gguf", prompt="def add(a, b):", max_tokens=8)
        assert completion.choices[0].text == stored(raw.create_completion("def add(a, b):", max_tokens=8,
                                                                          temperature=0.0)["choices"][0]["text"])


def test_a_client_that_goes_away_mid_stream_cancels_the_generation(app, client, tiny_gguf):
    assert register(client, tiny_gguf).status_code == 201
    body = {"model": "tiny-gguf", "prompt": "def add(a, b):", "max_tokens": 500, "stream": True,
            "cache": False}
    with serve_in_thread(app) as base_url:
        with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            next(line for line in response.iter_lines() if line.startswith("data: "))
        row = wait_for_finished()
    assert row.status == "cancelled"
    assert row.tokens_out < 500


def wait_for_finished(seconds: float = 30.0) -> Execution:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        db.session.rollback()
        row = db.session.scalar(select(Execution).where(Execution.status != "running"))
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError("the execution never finished")


def test_an_evaluation_run_in_chat_mode(app, client, tiny_gguf):
    from promptyard.evals import runs

    assert register(client, tiny_gguf).status_code == 201
    # The run's own params go over the protocol's (a short answer keeps this test fast).
    run = runs.create_run("humaneval", "tiny-gguf", limit=2, mode="chat", params={"max_new_tokens": 24},
                          submit=False)
    result = runs.execute_run(run.id)
    assert result["status"] == "succeeded", result["error"]
    assert result["pass_at_k"] == {"pass@1": 0.0}  # random weights write no working code
    executions = db.session.scalars(select(Execution).where(Execution.source == "eval")).all()
    assert len(executions) == 2
    for row in executions:
        request, begun = json.loads(row.rendered_input)
        assert begun["role"] == "assistant" and begun["content"].endswith("```python\n")
        assert row.params["max_new_tokens"] == 24 and row.params["do_sample"] is False
        assert row.params["stop"] == ["\n```\n", "\nif __name__", "\ndef main(", "\nprint("]
        assert 0 < row.tokens_out <= 24
