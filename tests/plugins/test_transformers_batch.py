"""Batched generation on the tiny real models: greedy batches equal one-at-a-time, samples differ, rows end alone."""

from __future__ import annotations

import pytest

from promptyard.errors import PromptyardError
from promptyard.plugins.base import BatchItem, Generation, GenerationParams
from promptyard.plugins.function import FunctionPlugin
from promptyard.plugins.transformers_backend import TransformersPlugin

# Prompts of different lengths, so that the causal model's batch is left padded.
PROMPTS = [
    "def add(a, b):",
    "for i in range(10):\n    print(",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):",
    "import os",
    "# Return the sum of a list of numbers\n",
    "try:\n    value = int(",
]
CHAT = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sum a list."}]


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def tiny(request):
    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    # Batches of 4 rows: six prompts need two calls, so chunking is exercised too.
    plugin = TransformersPlugin(str(folder), options={"max_batch_size": 4})
    plugin.load()
    return plugin


def one_at_a_time(plugin, prompts, params) -> list[Generation]:
    return [plugin.generate(prompt, params) for prompt in prompts]


@pytest.mark.parametrize("stop", [[], ["\n"], ["(", "):"]])
def test_greedy_batch_equals_one_at_a_time(tiny, stop):
    params = GenerationParams(max_new_tokens=24, stop=stop)
    batched = tiny.generate_batch([BatchItem(prompt, params) for prompt in PROMPTS])
    single = one_at_a_time(tiny, PROMPTS, params)
    assert [samples[0].text for samples in batched] == [g.text for g in single]
    assert [samples[0].tokens_out for samples in batched] == [g.tokens_out for g in single]
    assert [samples[0].tokens_in for samples in batched] == [g.tokens_in for g in single]
    assert [samples[0].finish_reason for samples in batched] == [g.finish_reason for g in single]
    # The model writes varied text, so the comparison means something.
    assert len({g.text for g in single}) > 1


def test_chat_prompts_batch_like_single_ones(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    params = GenerationParams(max_new_tokens=12)
    chats = [CHAT, [{"role": "user", "content": "Write a stack."}]]
    batched = plugin.generate_batch([BatchItem(chat, params) for chat in chats])
    assert [s[0].text for s in batched] == [g.text for g in one_at_a_time(plugin, chats, params)]


def test_samples_of_one_prompt_differ_and_count_their_own_tokens(tiny):
    params = GenerationParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=3, stop=["\n"])
    [samples] = tiny.generate_batch([BatchItem(PROMPTS[0], params, n=10)])
    assert len(samples) == 10 and all(isinstance(s, Generation) for s in samples)
    assert len({s.text for s in samples}) > 1
    assert all("\n" not in s.text for s in samples)
    assert all(0 < s.tokens_out <= 20 for s in samples)
    assert all(s.finish_reason in ("stop", "length") for s in samples)
    assert {s.finish_reason for s in samples if s.tokens_out < 20} <= {"stop"}
    # Ten samples in batches of at most four rows: three generate calls, the last of two rows.
    assert sorted({s.timings["batch_rows"] for s in samples}) == [2.0, 4.0]
    # A fixed seed gives the same batch again.
    [again] = tiny.generate_batch([BatchItem(PROMPTS[0], params, n=10)])
    assert [s.text for s in again] == [s.text for s in samples]


def test_mixed_items_and_uneven_sample_counts(tiny):
    sampled = GenerationParams(max_new_tokens=8, do_sample=True, temperature=0.9, seed=1)
    greedy = GenerationParams(max_new_tokens=8)
    items = [BatchItem(PROMPTS[0], sampled, n=3), BatchItem(PROMPTS[1], sampled, n=2),
             BatchItem(PROMPTS[2], greedy), BatchItem(PROMPTS[3], sampled, n=1)]
    results = tiny.generate_batch(items)
    assert [len(samples) for samples in results] == [3, 2, 1, 1]
    assert all(isinstance(s, Generation) and s.tokens_out > 0 for samples in results for s in samples)
    assert results[2][0].text == tiny.generate(PROMPTS[2], greedy).text


def test_a_prompt_too_long_fails_alone(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    params = GenerationParams(max_new_tokens=8)
    [too_long, fine] = plugin.generate_batch([BatchItem("x = 1\n" * 200, params, n=2), BatchItem(PROMPTS[0], params)])
    assert all(isinstance(e, PromptyardError) and e.code == "context_length_exceeded" for e in too_long)
    assert fine[0].text == plugin.generate(PROMPTS[0], params).text


def test_the_default_batch_call_loops_over_generate():
    seen, seeds = [], []

    def answer(prompt, params):
        seen.append(prompt)
        seeds.append(params.seed)
        if prompt == "bad":
            raise RuntimeError("no")
        return f"{prompt}!{len(seen)}"

    plugin = FunctionPlugin(answer)
    seeded = GenerationParams(do_sample=True, seed=7)
    results = plugin.generate_batch([BatchItem("a", seeded, n=2), BatchItem("bad", GenerationParams()),
                                     BatchItem("b", GenerationParams())])
    assert [[getattr(s, "text", None) for s in samples] for samples in results] == [["a!1", "a!2"], [None], ["b!4"]]
    assert isinstance(results[1][0], RuntimeError)
    assert seen == ["a", "a", "bad", "b"]
    assert seeds == [7, 8, None, None]  # with a fixed seed, each sample gets its own
