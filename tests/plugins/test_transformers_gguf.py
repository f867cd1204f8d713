"""GGUF files on the transformers path (options.gguf_file, or a .gguf source): dequantized by transformers, they must
answer as llama.cpp does on the same file."""

from __future__ import annotations

import shutil

import pytest

from promptyard.errors import NotFound, Unprocessable
from promptyard.plugins.base import GenerationParams
from promptyard.plugins.llamacpp_backend import LlamaCppPlugin
from promptyard.plugins.transformers_backend import TransformersPlugin
from tests.fixtures.tiny_gguf import CONTEXT_LENGTH

PROMPT = "def add(a, b):"
CHAT = [{"role": "user", "content": "Write add."}]
GREEDY = GenerationParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def on_transformers(tiny_gguf):
    plugin = TransformersPlugin(str(tiny_gguf))
    yield plugin
    plugin.unload()


@pytest.fixture(scope="module")
def on_llama_cpp(tiny_gguf):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_threads": 1})
    yield plugin
    plugin.unload()


def test_a_gguf_source_loads_with_its_tokenizer_template_and_context(on_transformers, on_llama_cpp):
    assert on_transformers.status() == "available"
    on_transformers.load()
    assert on_transformers.status() == "loaded"
    assert type(on_transformers.model).__name__ == "Qwen2ForCausalLM"
    assert on_transformers.context_length() == CONTEXT_LENGTH
    # The tokenizer and the chat template come out of the GGUF metadata, as llama.cpp reads them.
    assert on_transformers.count_tokens(PROMPT) == on_llama_cpp.count_tokens(PROMPT)
    assert on_transformers.count_tokens(CHAT) == on_llama_cpp.count_tokens(CHAT)


def test_greedy_text_matches_llama_cpp_on_the_same_file(on_transformers, on_llama_cpp):
    ours = on_transformers.generate(PROMPT, GREEDY)
    theirs = on_llama_cpp.generate(PROMPT, GREEDY)
    assert ours.tokens_out == theirs.tokens_out == 12
    # Both decode the same tokens; the random model writes stray bytes, which transformers shows as U+FFFD and
    # llama.cpp drops.
    assert ours.text.replace("\ufffd", "") == theirs.text
    assert len(theirs.text) > 5


def test_the_memory_estimate_counts_the_dequantized_parameters(on_transformers):
    estimate = on_transformers.estimated_memory_bytes()
    on_transformers.load()
    parameters = sum(p.numel() for p in on_transformers.model.parameters())
    assert estimate == parameters * 4  # float32 on the CPU


def test_options_gguf_file_names_the_file_in_a_folder(tmp_path, tiny_gguf, on_transformers):
    shutil.copyfile(tiny_gguf, tmp_path / "model-f32.gguf")
    plugin = TransformersPlugin(str(tmp_path), options={"gguf_file": "model-f32.gguf"})
    assert plugin.status() == "available"
    assert plugin.generate(PROMPT, GREEDY).text == on_transformers.generate(PROMPT, GREEDY).text
    plugin.unload()
    missing = TransformersPlugin(str(tmp_path), options={"gguf_file": "other.gguf"})
    assert missing.status() == "error"
    with pytest.raises(NotFound) as caught:
        missing.load()
    assert caught.value.code == "model_path_not_found"


@pytest.mark.parametrize("source, options, code", [
    ("/models/folder", {"gguf_file": "../escape.gguf"}, "invalid_options"),
    ("/models/folder", {"gguf_file": "sub/model.gguf"}, "invalid_options"),
    ("/models/folder", {"gguf_file": "weights.bin"}, "invalid_options"),
    ("/models/folder", {"gguf_file": 7}, "invalid_options"),
    ("/models/model.gguf", {"gguf_file": "model.gguf"}, "invalid_source"),
])
def test_bad_gguf_options_are_refused(source, options, code):
    with pytest.raises(Unprocessable) as caught:
        TransformersPlugin(source, options=options)
    assert caught.value.code == code


def test_a_file_that_is_not_gguf_is_refused_on_load(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_text("not a model")
    plugin = TransformersPlugin(str(path))
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "invalid_model"
    assert plugin.status() == "error"


def test_a_missing_gguf_source_is_an_error(tmp_path):
    plugin = TransformersPlugin(str(tmp_path / "absent.gguf"))
    assert plugin.status() == "error"
    with pytest.raises(NotFound):
        plugin.load()
