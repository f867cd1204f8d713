"""The llamacpp plugin against the real llama-cpp-python, on a tiny GGUF file written in the test session."""

from __future__ import annotations

import shutil

import pytest
from llama_cpp import Llama

from promptyard.errors import NotFound, Unavailable, Unprocessable
from promptyard.plugins.base import GenerationParams, StreamResult
from promptyard.plugins.llamacpp_backend import LlamaCppPlugin
from promptyard.plugins.textgen import plain_chat
from tests.fixtures.tiny_gguf import CHAT_TEMPLATE, CONTEXT_LENGTH, write_gguf

PROMPT = "def add(a, b):"
CHAT = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Write add."}]
GREEDY = GenerationParams(max_new_tokens=24)


@pytest.fixture(scope="module")
def plugin(tiny_gguf):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_threads": 1})
    yield plugin
    plugin.unload()


@pytest.fixture(scope="module")
def raw(tiny_gguf):
    """llama-cpp-python used directly, the way its README shows, on the same file."""
    llm = Llama(model_path=str(tiny_gguf), n_ctx=CONTEXT_LENGTH, n_threads=1, verbose=False)
    yield llm
    llm.close()


def stored(text: str) -> str:
    """Raw llama-cpp-python's text as the plugin gives it: without NUL (byte tokens of the random model can spell
    it; PostgreSQL text cannot hold it)."""
    return text.replace("\x00", "")


def sampled(seed, **extra):
    return GenerationParams(max_new_tokens=24, do_sample=True, temperature=1.0, seed=seed, **extra)


# --- loading and facts --------------------------------------------------------------------------------------


def test_loads_the_file_and_reports_the_models_own_facts(tiny_gguf, raw):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_threads": 1})
    assert plugin.status() == "available"
    assert plugin.context_length() is None  # nothing read before loading
    plugin.load()
    assert plugin.status() == "loaded"
    # The default context is the trained one when that is below promptyard's cap.
    assert plugin.context_length() == CONTEXT_LENGTH
    assert plugin.count_tokens(PROMPT) == len(raw.tokenize(PROMPT.encode(), add_bos=False, special=True))
    assert plugin.chat_template() == CHAT_TEMPLATE
    plugin.unload()
    assert plugin.status() == "available" and plugin.llm is None


def test_n_ctx_option_sets_the_context(tiny_gguf):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_ctx": 300, "n_threads": 1})
    plugin.load()
    # llama.cpp rounds the context up to a multiple of 256; the plugin reports what was allocated.
    assert plugin.context_length() == plugin.llm.n_ctx() == 512
    plugin.unload()


def test_memory_estimate_is_the_file_size_and_the_loaded_size_adds_the_kv_cache(tiny_gguf):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_threads": 1})
    size = tiny_gguf.stat().st_size
    assert plugin.estimated_memory_bytes() == size
    assert plugin.memory_bytes() == 0
    plugin.load()
    # 2 layers x (K and V) x 1024 positions x 2 KV heads x 16 dims x 2 bytes (f16)
    assert plugin.memory_bytes() == size + 2 * 2 * CONTEXT_LENGTH * 2 * 16 * 2
    plugin.unload()
    assert plugin.memory_bytes() == 0


# --- generation ----------------------------------------------------------------------------------------------


def test_greedy_text_and_counts_match_raw_llama_cpp(plugin, raw):
    ours = plugin.generate(PROMPT, GREEDY)
    theirs = raw.create_completion(PROMPT, max_tokens=24, temperature=0.0)
    assert ours.text == stored(theirs["choices"][0]["text"])
    assert ours.tokens_in == theirs["usage"]["prompt_tokens"]
    assert ours.tokens_out == theirs["usage"]["completion_tokens"]
    assert ours.finish_reason == theirs["choices"][0]["finish_reason"]
    assert ours.timings["generate"] > 0


def test_greedy_is_deterministic_whatever_ran_before(plugin):
    first = plugin.generate(PROMPT, GREEDY).text
    plugin.generate(PROMPT + " return", GREEDY)  # a prompt sharing a prefix must not change the next answer
    assert plugin.generate(PROMPT, GREEDY).text == first
    assert first


def test_chat_uses_the_template_from_the_gguf_metadata(plugin, raw):
    ours = plugin.generate(CHAT, GREEDY)
    theirs = raw.create_chat_completion(CHAT, max_tokens=24, temperature=0.0)
    assert ours.text == stored(theirs["choices"][0]["message"]["content"])
    assert ours.tokens_in == theirs["usage"]["prompt_tokens"]
    templated = "<|im_start|>system\nYou write Python.<|im_end|>\n<|im_start|>user\nWrite add.<|im_end|>\n" \
                "<|im_start|>assistant\n"
    assert plugin.count_tokens(CHAT) == len(raw.tokenize(templated.encode(), add_bos=False, special=True))


def test_a_chat_ending_with_an_assistant_message_is_continued(plugin, raw):
    begun = CHAT + [{"role": "assistant", "content": "def add(a, b):"}]
    continued = "<|im_start|>system\nYou write Python.<|im_end|>\n<|im_start|>user\nWrite add.<|im_end|>\n" \
                "<|im_start|>assistant\ndef add(a, b):"
    ours = plugin.generate(begun, GREEDY)
    tokens = raw.tokenize(continued.encode(), add_bos=False, special=True)
    assert ours.tokens_in == len(tokens)
    theirs = raw.create_completion(tokens, max_tokens=24, temperature=0.0)
    # Here the random model writes stray UTF-8 bytes, for which llama-cpp-python's create_completion runs past
    # max_tokens (29 tokens for 24): the same text, longer.
    assert ours.tokens_out == 24
    assert stored(theirs["choices"][0]["text"]).startswith(ours.text) and len(ours.text) > 10


def test_a_gguf_without_a_template_writes_chats_as_plain_text(tmp_path):
    path = write_gguf(tmp_path / "no-template.gguf", chat_template=None)
    plugin = LlamaCppPlugin(str(path), options={"n_threads": 1})
    plugin.load()
    assert plugin.chat_template() is None
    expected = plugin.llm.tokenize(plain_chat(CHAT).encode(), add_bos=False, special=True)
    assert plugin.count_tokens(CHAT) == len(expected)
    assert plugin.generate(CHAT, GREEDY).tokens_in == len(expected)
    plugin.unload()


def test_a_prompt_format_option_templates_chats_when_the_file_has_none(tmp_path):
    path = write_gguf(tmp_path / "no-template.gguf", chat_template=None)
    plugin = LlamaCppPlugin(str(path), options={"n_threads": 1, "prompt_format": "system-user-assistant"})
    expected = "SYSTEM: You write Python.\nUSER: Write add.\nASSISTANT:"
    plugin.load()
    assert plugin.count_tokens(CHAT) == len(plugin.llm.tokenize(expected.encode(), add_bos=False, special=True))
    plugin.unload()


def test_a_template_that_refuses_the_messages_is_a_422(tmp_path):
    path = write_gguf(tmp_path / "strict.gguf",
                      chat_template="{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}"
                                    "{% endif %}{{ messages[0]['content'] }}")
    plugin = LlamaCppPlugin(str(path), options={"n_threads": 1})
    with pytest.raises(Unprocessable) as caught:
        plugin.generate(CHAT, GREEDY)
    assert caught.value.code == "chat_template_error" and "user first" in caught.value.message
    assert plugin.generate([{"role": "user", "content": "hi"}], GREEDY).tokens_in > 0
    plugin.unload()


def test_a_seed_makes_sampling_repeatable_and_different_seeds_differ(plugin):
    assert plugin.generate(PROMPT, sampled(7)).text == plugin.generate(PROMPT, sampled(7)).text
    texts = {plugin.generate(PROMPT, sampled(seed)).text for seed in (1, 2, 3)}
    assert len(texts) > 1
    unseeded = {plugin.generate(PROMPT, sampled(None)).text for _ in range(3)}
    assert len(unseeded) > 1, "sampling without a seed must not repeat a fixed one"


def test_stop_sequences_cut_the_text_and_end_generation(plugin):
    whole = plugin.generate(PROMPT, GREEDY)
    stop = whole.text[8:11]
    cut = plugin.generate(PROMPT, GREEDY.model_copy(update={"stop": [stop]}))
    assert cut.text == whole.text[: whole.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.tokens_out < whole.tokens_out


def test_nul_never_reaches_the_text(plugin, raw):
    chat = [{"role": "user", "content": "Write add."}]
    theirs = raw.create_chat_completion(chat, max_tokens=16, temperature=0.0)["choices"][0]["message"]["content"]
    assert "\x00" in theirs  # the random model spells a NUL byte here
    ours = plugin.generate(chat, GenerationParams(max_new_tokens=16)).text
    assert ours == theirs.replace("\x00", "")


def test_max_new_tokens_ends_with_length(plugin):
    generation = plugin.generate(PROMPT, GenerationParams(max_new_tokens=5))
    assert generation.tokens_out == 5 and generation.finish_reason == "length"


def test_stream_yields_the_same_text_and_counts(plugin):
    whole = plugin.generate(PROMPT, GREEDY)
    result = StreamResult(plugin.stream(PROMPT, GREEDY))
    deltas = list(result)
    assert len(deltas) > 1
    assert "".join(deltas) == whole.text
    assert result.generation.tokens_out == whole.tokens_out
    assert result.generation.tokens_in == whole.tokens_in
    assert result.generation.timings["first_token"] > 0


def test_a_stream_never_emits_a_stop_sequence(plugin):
    whole = plugin.generate(PROMPT, GREEDY).text
    stop = whole[8:11]
    result = StreamResult(plugin.stream(PROMPT, GREEDY.model_copy(update={"stop": [stop]})))
    deltas = list(result)
    assert "".join(deltas) == whole[: whole.index(stop)]
    assert result.generation.finish_reason == "stop"


def test_closing_a_stream_cancels_generation_at_once(plugin):
    params = GenerationParams(max_new_tokens=200)
    stream = plugin.stream(PROMPT, params)
    result = StreamResult(stream)
    pieces = iter(result)
    next(pieces)
    next(pieces)
    result.close()
    prompt_tokens = plugin.count_tokens(PROMPT)
    # llama.cpp evaluated the prompt and the few tokens read, not the 200 asked for.
    assert plugin.llm.n_tokens <= prompt_tokens + 4
    assert not plugin._busy.locked()
    assert plugin.generate(PROMPT, GenerationParams(max_new_tokens=3)).tokens_out == 3


def test_the_context_bounds_input_and_output(plugin):
    long_prompt = "x = 1\n" * 1000
    with pytest.raises(Unprocessable) as caught:
        plugin.generate(long_prompt, GREEDY)
    assert caught.value.code == "context_length_exceeded"
    fitting = "x = 1\n" * 150
    tokens_in = plugin.count_tokens(fitting)
    generation = plugin.generate(fitting, GenerationParams(max_new_tokens=1000))
    assert generation.tokens_in + generation.tokens_out <= CONTEXT_LENGTH
    assert generation.tokens_in == tokens_in


def test_the_plugin_as_a_tool(plugin):
    result = plugin.execute(prompt=PROMPT, params={"max_new_tokens": 4})
    assert result["tokens_out"] == 4 and isinstance(result["text"], str)
    with pytest.raises(Unprocessable):
        plugin.execute(prompt=PROMPT, params={"max_new_tokens": "4"})


def test_an_empty_prompt_is_refused(plugin):
    with pytest.raises(Unprocessable) as caught:
        plugin.generate("", GREEDY)
    assert caught.value.code == "invalid_prompt"


def test_generation_after_unload_loads_again(tiny_gguf):
    plugin = LlamaCppPlugin(str(tiny_gguf), options={"n_threads": 1})
    first = plugin.generate(PROMPT, GREEDY)
    plugin.unload()
    again = plugin.generate(PROMPT, GREEDY)
    assert again.text == first.text and again.timings["load"] > 0
    plugin.unload()


# --- bad sources and options ------------------------------------------------------------------------------------


def test_a_missing_file_is_an_error_and_a_404_on_load(tmp_path):
    plugin = LlamaCppPlugin(str(tmp_path / "nothing.gguf"))
    assert plugin.status() == "error"
    assert plugin.estimated_memory_bytes() == 0
    with pytest.raises(NotFound) as caught:
        plugin.load()
    assert caught.value.code == "model_path_not_found"


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights")
    plugin = LlamaCppPlugin(str(path))
    assert plugin.status() == "error"
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "invalid_model" and "GGUF" in caught.value.message


def test_a_truncated_gguf_is_refused_by_llama_cpp_with_a_clear_error(tmp_path, tiny_gguf):
    path = tmp_path / "truncated.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[:4096])
    plugin = LlamaCppPlugin(str(path))
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "invalid_model" and "could not load" in caught.value.message
    assert plugin.status() == "error"


@pytest.mark.parametrize("source, options, code", [
    ("someone/some-repo", {}, "invalid_source"),
    ("someone/some-repo", {"file": "../../etc/passwd.gguf"}, "invalid_options"),
    ("someone/some-repo", {"file": "weights.bin"}, "invalid_options"),
    ("someone/some-repo", {"file": 3}, "invalid_options"),
    ("/models/x.gguf", {"file": "x.gguf"}, "invalid_source"),
    ("/models/x.gguf", {"n_ctx": "4096"}, "invalid_options"),
    ("/models/x.gguf", {"n_ctx": -1}, "invalid_options"),
    ("/models/x.gguf", {"n_gpu_layers": True}, "invalid_options"),
    ("/models/x.gguf", {"n_gpu_layers": -2}, "invalid_options"),
    ("/models/x.gguf", {"n_threads": 0}, "invalid_options"),
    ("/models/x.gguf", {"prompt_format": ["x"]}, "invalid_options"),
])
def test_bad_sources_and_options_are_refused(source, options, code):
    with pytest.raises(Unprocessable) as caught:
        LlamaCppPlugin(source, options=options)
    assert caught.value.code == code


def test_quantization_is_the_files_business():
    with pytest.raises(Unprocessable) as caught:
        LlamaCppPlugin("/models/x.gguf", quantization="4bit")
    assert caught.value.code == "invalid_quantization"


# --- the hub case ---------------------------------------------------------------------------------------------


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and offline mode: nothing may reach the network."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf-cache"


def test_a_hub_file_not_in_the_cache_is_not_downloaded(offline_hub):
    plugin = LlamaCppPlugin("tiny-org/tiny-GGUF", options={"file": "tiny-q4.gguf", "cache_dir": str(offline_hub)})
    assert plugin.status() == "not_downloaded"
    assert plugin.estimated_memory_bytes() == 0
    with pytest.raises(Unavailable) as caught:
        plugin.load()
    assert caught.value.code == "model_not_downloaded"
    assert "promptyard models pull" in caught.value.message


def test_pulling_with_the_hub_unreachable_says_how_to_fix_it(offline_hub):
    plugin = LlamaCppPlugin("tiny-org/tiny-GGUF", options={"file": "tiny-q4.gguf", "cache_dir": str(offline_hub)})
    with pytest.raises(Unavailable) as caught:
        plugin.download(progress=False)
    assert caught.value.code == "hub_unreachable"


def test_a_hub_file_in_the_cache_is_available_pulled_and_loads(offline_hub, tiny_gguf, raw):
    repo = offline_hub / "models--tiny-org--tiny-GGUF"
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, snapshot / "tiny-q4.gguf")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    plugin = LlamaCppPlugin("tiny-org/tiny-GGUF", options={"file": "tiny-q4.gguf", "cache_dir": str(offline_hub),
                                                           "n_threads": 1})
    assert plugin.status() == "available"
    assert plugin.estimated_memory_bytes() == tiny_gguf.stat().st_size
    assert plugin.download(progress=False) == str(snapshot / "tiny-q4.gguf")
    assert plugin.generate(PROMPT, GREEDY).text == stored(raw.create_completion(PROMPT, max_tokens=24,
                                                                                temperature=0.0)["choices"][0]["text"])
    other = LlamaCppPlugin("tiny-org/tiny-GGUF", options={"file": "absent.gguf", "cache_dir": str(offline_hub)})
    assert other.status() == "not_downloaded"
    plugin.unload()
