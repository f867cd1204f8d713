"""The openai-compatible backend's batch call: concurrent requests within a window, failures kept per sample."""

from __future__ import annotations

import threading

from promptyard.errors import PromptyardError
from promptyard.plugins.base import BatchItem, Generation, GenerationParams
from promptyard.plugins.openai_backend import OpenAICompatiblePlugin
from tests.fixtures.openai_server import Reply

SAMPLED = GenerationParams(max_new_tokens=16, do_sample=True, temperature=0.8)


def make_plugin(url: str, **options) -> OpenAICompatiblePlugin:
    settings = {"model": "tiny", "backoff": 0.01, "max_retries": 0, "timeout": 5.0, **options}
    return OpenAICompatiblePlugin(url, options=settings)


def test_samples_go_out_concurrently_but_never_beyond_the_window(openai_server):
    openai_server.default_delay = 0.15
    plugin = make_plugin(openai_server.base_url, max_in_flight=4)
    results = plugin.generate_batch([BatchItem("def a(", SAMPLED, n=6), BatchItem("def b(", SAMPLED, n=4)])
    assert [len(samples) for samples in results] == [6, 4]
    assert all(isinstance(s, Generation) and s.text == openai_server.default_text for r in results for s in r)
    assert len(openai_server.requests) == 10
    # Ten requests of 0.15 s: they overlapped (a server batches them), four at a time at most.
    assert openai_server.max_in_flight == 4
    assert sorted(r["prompt"] for r in openai_server.requests) == ["def a("] * 6 + ["def b("] * 4


def test_the_window_is_shared_by_concurrent_batches_of_one_model(openai_server):
    openai_server.default_delay = 0.1
    plugin = make_plugin(openai_server.base_url, max_in_flight=3)
    threads = [threading.Thread(target=plugin.generate_batch, args=([BatchItem("x", SAMPLED, n=5)],))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(openai_server.requests) == 10 and openai_server.max_in_flight == 3


def test_a_failed_sample_is_its_error_and_the_others_go_on(openai_server):
    openai_server.replies += [Reply(), Reply(status=500, body={"error": {"message": "boom"}}), Reply()]
    plugin = make_plugin(openai_server.base_url, max_in_flight=1)
    [samples] = plugin.generate_batch([BatchItem("def f(", SAMPLED, n=3)])
    assert isinstance(samples[0], Generation) and isinstance(samples[2], Generation)
    assert isinstance(samples[1], PromptyardError) and samples[1].code == "backend_error"
    assert "boom" in samples[1].message


def test_bad_window_is_refused():
    import pytest

    with pytest.raises(PromptyardError) as caught:
        make_plugin("http://127.0.0.1:1/v1", max_in_flight=0)
    assert caught.value.status == 422


def test_a_fixed_seed_gives_each_sample_its_own(openai_server):
    plugin = make_plugin(openai_server.base_url, max_in_flight=2)
    seeded = SAMPLED.model_copy(update={"seed": 5})
    plugin.generate_batch([BatchItem("x", seeded, n=3)])
    assert sorted(r["seed"] for r in openai_server.requests) == [5, 6, 7]
