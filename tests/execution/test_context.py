"""The context check through the pipeline with the tiny real models (a 128-token context each).

An input the model cannot read is refused (422, nothing recorded). Otherwise a causal model's max_new_tokens is cut
to what its context leaves after the input, and the record says so; a seq2seq model's output length has nothing to
do with its encoder's limit.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import Unprocessable
from promptyard.execution.pipeline import ExecutionRequest, execute, execute_stream
from promptyard.models.service import get_plugin, register_model

CONTEXT = 128
# A special token is one token however many follow each other (plain text would merge into fewer BPE tokens).
ONE_TOKEN = {"gpt2": "<|im_start|>", "t5": "<unk>"}


@pytest.fixture
def tiny(app, tiny_gpt2_dir, tiny_t5_dir):
    """tiny(which, n) -> an input of exactly n tokens for the registered tiny model `which`."""
    register_model("gpt2", "transformers", str(tiny_gpt2_dir))
    register_model("t5", "transformers", str(tiny_t5_dir))

    def text_of(which, tokens):
        text = ONE_TOKEN[which] * tokens
        assert get_plugin(which).count_tokens(text) == tokens
        return text

    return text_of


def run(model, text, max_new_tokens, **kwargs):
    return execute(ExecutionRequest(model=model, input=text, params={"max_new_tokens": max_new_tokens},
                                    cache=False, **kwargs))


def count_executions():
    return db.session.scalar(select(func.count()).select_from(Execution))


def test_a_causal_input_that_fits_gets_the_room_left_and_says_so(tiny):
    row = run("gpt2", tiny("gpt2", 120), 64)
    assert row.status == "succeeded" and row.tokens_in == 120
    assert row.params["max_new_tokens"] == CONTEXT - 120  # what generation used, not the 64 asked for
    assert 0 < row.tokens_out <= CONTEXT - 120
    assert row.finish_reason == ("length" if row.tokens_out == CONTEXT - 120 else "stop")


def test_a_causal_input_leaving_one_token_generates_one(tiny):
    row = run("gpt2", tiny("gpt2", CONTEXT - 1), 64)
    assert (row.status, row.params["max_new_tokens"], row.tokens_out) == ("succeeded", 1, 1)


def test_a_causal_input_that_fills_the_context_is_refused(tiny):
    with pytest.raises(Unprocessable) as raised:
        run("gpt2", tiny("gpt2", CONTEXT), 1)
    assert raised.value.code == "context_length_exceeded"
    assert raised.value.details == {"tokens_in": CONTEXT, "context_length": CONTEXT}
    assert "128" in raised.value.message and "'gpt2'" in raised.value.message
    assert count_executions() == 0


def test_a_stream_is_cut_to_the_context_too(tiny):
    events = list(execute_stream(ExecutionRequest(model="gpt2", input=tiny("gpt2", 124), cache=False,
                                                  params={"max_new_tokens": 50})))
    record = events[-1]["execution"]
    assert record["status"] == "succeeded" and record["params"]["max_new_tokens"] == 4
    assert 0 < record["tokens_out"] <= 4


def test_a_seq2seq_output_is_not_bounded_by_the_encoders_limit(tiny):
    row = run("t5", tiny("t5", 120), 64)
    assert row.status == "succeeded" and row.tokens_in == 120
    assert row.params["max_new_tokens"] == 64
    assert row.tokens_out > CONTEXT - 120  # more than a shared context would have left


def test_a_seq2seq_input_at_the_limit_runs_and_beyond_it_is_refused(tiny):
    assert run("t5", tiny("t5", CONTEXT), 4).status == "succeeded"
    with pytest.raises(Unprocessable) as raised:
        run("t5", tiny("t5", CONTEXT + 1), 4)
    assert raised.value.code == "context_length_exceeded"
    assert raised.value.details == {"tokens_in": CONTEXT + 1, "context_length": CONTEXT}
    assert count_executions() == 1
