"""Greedy output through the whole HTTP pipeline equals what `model.generate` gives directly (tiny GPT-2 and T5)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from promptyard.models import service
from promptyard.server import serve_in_thread

MAX_NEW_TOKENS = 20
INPUTS = ["def add(a, b):", "for i in range(10):\n    "]


def direct_greedy(folder, text: str) -> str:
    """What a transformers user gets: tokenize, greedy generate, decode the new tokens without specials."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config_class = AutoModelForSeq2SeqLM if json.loads((folder / "config.json").read_text()).get(
        "is_encoder_decoder") else AutoModelForCausalLM
    model = config_class.from_pretrained(folder).eval()
    encoded = tokenizer(text, return_tensors="pt")
    encoded.pop("token_type_ids", None)
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = output[0] if model.config.is_encoder_decoder else output[0][encoded["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.fixture(params=["tiny_gpt2_dir", "tiny_t5_dir"])
def tiny_model(request, app):
    folder = request.getfixturevalue(request.param)
    service.register_model("tiny", "transformers", str(folder))
    return folder


def test_greedy_output_over_http_equals_model_generate(app, tiny_model):
    expected = {text: direct_greedy(tiny_model, text) for text in INPUTS}
    assert any(expected.values()), "the reference generated nothing, so the comparison would prove nothing"
    params = {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        oai = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for text, want in expected.items():
            executed = client.post("/api/v1/executions", json={"model": "tiny", "input": text, "params": params,
                                                               "cache": False})
            assert executed.status_code == 201, executed.text
            assert executed.json()["output"] == want
            with client.stream("POST", "/api/v1/executions", json={"model": "tiny", "input": text, "params": params,
                                                                   "cache": False, "stream": True}) as streamed:
                events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: ")]
            assert "".join(e.get("delta", "") for e in events) == want
            completion = oai.completions.create(model="tiny", prompt=text, max_tokens=MAX_NEW_TOKENS, temperature=0,
                                                extra_body={"cache": False})
            assert completion.choices[0].text == want
