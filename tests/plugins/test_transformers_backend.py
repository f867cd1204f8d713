"""The transformers backend on tiny real models (GPT-2 causal, T5 seq2seq) loaded from local folders."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from promptyard.errors import NotFound, Unavailable, Unprocessable
from promptyard.plugins.base import GenerationParams, StreamResult
from promptyard.plugins.hf_loading import choose_device_and_dtype
from promptyard.plugins.transformers_backend import TransformersPlugin

PROMPT = "def add(a, b):"
CHAT = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sum a list."}]


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    return plugin


@pytest.fixture(scope="module")
def t5(tiny_t5_dir):
    plugin = TransformersPlugin(str(tiny_t5_dir))
    plugin.load()
    return plugin


@pytest.fixture(params=["gpt2", "t5"])
def tiny(request):
    """(plugin, folder, model class) for each architecture."""
    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    model_class = AutoModelForCausalLM if request.param == "gpt2" else AutoModelForSeq2SeqLM
    return request.getfixturevalue(request.param), folder, model_class


def direct_generate(folder, model_class, text: str, **kwargs) -> str:
    """What transformers gives when called directly, without promptyard."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = model_class.from_pretrained(folder).eval()
    inputs = tokenizer(text, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.inference_mode():
        output = model.generate(**inputs, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **kwargs)
    new = output[0][1:] if model.config.is_encoder_decoder else output[0][inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True)


def test_greedy_output_equals_model_generate(tiny):
    plugin, folder, model_class = tiny
    result = plugin.generate(PROMPT, GenerationParams(max_new_tokens=16))
    assert result.text == direct_generate(folder, model_class, PROMPT, max_new_tokens=16, do_sample=False)
    assert result.text
    assert result.tokens_in == len(plugin.tokenizer(PROMPT)["input_ids"])
    assert 0 < result.tokens_out <= 16
    assert result.timings["generate"] > 0


def test_reaching_max_new_tokens_finishes_with_length(tiny):
    plugin, _, _ = tiny
    result = plugin.generate(PROMPT, GenerationParams(max_new_tokens=5))
    assert (result.tokens_out, result.finish_reason) == (5, "length")


def test_architecture_is_read_from_the_config(gpt2, t5):
    assert not gpt2.is_encoder_decoder
    assert t5.is_encoder_decoder


def test_chat_uses_the_tokenizers_chat_template(gpt2, tiny_gpt2_dir):
    templated = gpt2.tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert templated.endswith("<|im_start|>assistant\n")
    result = gpt2.generate(CHAT, GenerationParams(max_new_tokens=8))
    assert result.tokens_in == len(gpt2.tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert gpt2.count_tokens(CHAT) == result.tokens_in
    assert result.text == direct_generate(tiny_gpt2_dir, AutoModelForCausalLM, templated, max_new_tokens=8,
                                          do_sample=False)


def test_a_chat_ending_with_an_assistant_message_is_continued(gpt2, tiny_gpt2_dir):
    begun = CHAT + [{"role": "assistant", "content": "def total(xs):"}]
    templated = gpt2.tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    continued = templated + "def total(xs):"
    result = gpt2.generate(begun, GenerationParams(max_new_tokens=8))
    assert result.tokens_in == len(gpt2.tokenizer(continued, add_special_tokens=False)["input_ids"])
    assert result.text == direct_generate(tiny_gpt2_dir, AutoModelForCausalLM, continued, max_new_tokens=8,
                                          do_sample=False)


def test_chat_without_a_template_is_joined_or_uses_the_prompt_format(t5, tiny_t5_dir):
    assert t5.tokenizer.chat_template is None
    plain = "system: You write Python.\nuser: Sum a list.\nassistant:"
    assert t5.count_tokens(CHAT) == len(t5.tokenizer(plain)["input_ids"])
    formatted = TransformersPlugin(str(tiny_t5_dir), options={"prompt_format": "system-user-assistant"})
    expected = "SYSTEM: You write Python.\nUSER: Sum a list.\nASSISTANT:"
    assert formatted.count_tokens(CHAT) == len(t5.tokenizer(expected, add_special_tokens=False)["input_ids"])


def _stop_from(text: str) -> str:
    """A two-character piece of `text`, early on, without replacement characters."""
    for start in range(1, len(text) - 2):
        piece = text[start:start + 2]
        if "\ufffd" not in piece and piece.strip() == piece and piece:
            return piece
    pytest.fail(f"no usable stop sequence in {text!r}")


def test_stop_sequence_cuts_the_text_and_ends_generation(gpt2):
    free = gpt2.generate(PROMPT, GenerationParams(max_new_tokens=40))
    stop = _stop_from(free.text)
    stopped = gpt2.generate(PROMPT, GenerationParams(max_new_tokens=40, stop=[stop, "never-there"]))
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.tokens_out < free.tokens_out


def test_stop_sequence_on_a_seq2seq_model(t5):
    free = t5.generate("def f(x):", GenerationParams(max_new_tokens=20))
    stop = free.text[1:2]
    stopped = t5.generate("def f(x):", GenerationParams(max_new_tokens=20, stop=[stop]))
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"


def test_sampling_with_a_seed_is_reproducible(tiny):
    plugin, _, _ = tiny
    params = GenerationParams(max_new_tokens=8, do_sample=True, temperature=1.0, seed=7)
    assert plugin.generate(PROMPT, params).text == plugin.generate(PROMPT, params).text
    texts = {
        plugin.generate(PROMPT, params.model_copy(update={"seed": seed})).text for seed in range(1, 4)
    }
    assert len(texts) > 1, "different seeds should sample different text"


def test_a_tiny_top_p_keeps_only_the_likeliest_token(tiny):
    plugin, _, _ = tiny
    greedy = plugin.generate(PROMPT, GenerationParams(max_new_tokens=12)).text
    sampled = GenerationParams(max_new_tokens=12, do_sample=True, temperature=1.0)
    # The same seeds sample other text when top_p keeps the whole distribution...
    assert {plugin.generate(PROMPT, sampled.model_copy(update={"seed": seed})).text for seed in (1, 2, 3)} != {greedy}
    # ...and the greedy text when the nucleus holds nothing but the likeliest token.
    for seed in (1, 2, 3):
        assert plugin.generate(PROMPT, sampled.model_copy(update={"seed": seed, "top_p": 1e-6})).text == greedy


def test_temperature_zero_is_greedy_even_with_do_sample(gpt2):
    greedy = gpt2.generate(PROMPT, GenerationParams(max_new_tokens=10))
    sampled_at_zero = gpt2.generate(PROMPT, GenerationParams(max_new_tokens=10, do_sample=True, temperature=0))
    assert sampled_at_zero.text == greedy.text


@pytest.mark.parametrize("stop", [[], ["%q"]])
def test_stream_deltas_concatenate_to_the_generate_text(gpt2, stop):
    params = GenerationParams(max_new_tokens=24, stop=stop)
    whole = gpt2.generate(PROMPT, params)
    stream = StreamResult(gpt2.stream(PROMPT, params))
    deltas = list(stream)
    assert "".join(deltas) == whole.text
    assert stream.generation.text == whole.text
    assert stream.generation.finish_reason == whole.finish_reason
    assert stream.generation.tokens_in == whole.tokens_in
    assert not any(s in "".join(deltas) for s in stop)


def test_seq2seq_stream_matches_generate(t5):
    params = GenerationParams(max_new_tokens=12)
    stream = StreamResult(t5.stream(PROMPT, params))
    assert "".join(stream) == t5.generate(PROMPT, params).text


def test_closing_a_stream_early_stops_generation(tiny_gpt2_dir, monkeypatch):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    steps = []
    forward = plugin.model.forward
    monkeypatch.setattr(plugin.model, "forward", lambda *a, **k: steps.append(1) or forward(*a, **k))
    params = GenerationParams(max_new_tokens=110)
    uncancelled = plugin.generate(PROMPT, params)
    full_steps = len(steps)
    assert uncancelled.tokens_out == 110 and full_steps >= 110  # without a cancel it runs to the end
    steps.clear()
    stream = plugin.stream(PROMPT, params)
    next(stream)
    stream.close()
    steps_at_close = len(steps)
    time.sleep(0.2)
    assert len(steps) == steps_at_close, "the generation went on after the stream was closed"
    assert steps_at_close < full_steps * 0.75, f"generation went on for {steps_at_close} steps after the close"
    # The model is free again for the next request.
    assert plugin.generate(PROMPT, GenerationParams(max_new_tokens=3)).tokens_out == 3


def test_every_generation_of_a_model_runs_on_its_one_generation_thread(tiny_gpt2_dir, monkeypatch):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    threads = []
    generate = plugin.model.generate
    monkeypatch.setattr(plugin.model, "generate", lambda *a, **k: threads.append(threading.get_ident()) or generate(*a, **k))
    params = GenerationParams(max_new_tokens=3)
    callers = [threading.Thread(target=plugin.generate, args=(PROMPT, params)) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    streamed = "".join(StreamResult(plugin.stream(PROMPT, params)))
    assert streamed == plugin.generate(PROMPT, params).text
    assert len(threads) == 5 and len(set(threads)) == 1
    assert threads[0] not in {threading.get_ident(), *(caller.ident for caller in callers)}
    generation_thread = next(t for t in threading.enumerate() if t.ident == threads[0])
    assert generation_thread.daemon  # a generation in flight never holds up the process's exit


def test_the_generation_thread_ends_once_its_plugin_is_gone(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    threads = []
    generate = plugin.model.generate
    plugin.model.generate = lambda *a, **k: threads.append(threading.current_thread()) or generate(*a, **k)
    plugin.generate(PROMPT, GenerationParams(max_new_tokens=2))
    del plugin
    gc.collect()
    threads[0].join(5)
    assert not threads[0].is_alive()



def test_a_failing_generation_is_a_503_and_the_thread_serves_the_next(tiny_gpt2_dir, monkeypatch):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    generate = plugin.model.generate
    monkeypatch.setattr(plugin.model, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(Unavailable) as caught:
        plugin.generate(PROMPT, GenerationParams(max_new_tokens=3))
    assert caught.value.code == "generation_failed" and "out of memory" in caught.value.message
    monkeypatch.setattr(plugin.model, "generate", generate)
    assert plugin.generate(PROMPT, GenerationParams(max_new_tokens=3)).tokens_out == 3


def test_a_prompt_counted_right_before_generating_is_tokenized_once(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    plugin.load()
    tokenized = []

    class CountingTokenizer:
        def __init__(self, real):
            self.real = real

        def __call__(self, text, **kwargs):
            tokenized.append(text)
            return self.real(text, **kwargs)

        def __getattr__(self, name):
            return getattr(self.real, name)

    plugin.tokenizer = CountingTokenizer(plugin.tokenizer)
    params = GenerationParams(max_new_tokens=4)
    counted = plugin.count_tokens(PROMPT)
    assert plugin.generate(PROMPT, params).tokens_in == counted
    assert tokenized == [PROMPT]
    assert plugin.count_tokens(CHAT) > counted  # another prompt in between: each is tokenized again
    plugin.generate(PROMPT, params)
    assert len(tokenized) == 3


def test_status_memory_and_unload(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    assert (plugin.status(), plugin.memory_bytes()) == ("available", 0)
    plugin.load()
    params_bytes = sum(p.numel() * p.element_size() for p in plugin.model.parameters())
    assert plugin.status() == "loaded"
    assert plugin.memory_bytes() >= params_bytes > 0
    plugin.unload()
    assert (plugin.status(), plugin.memory_bytes()) == ("available", 0)


@pytest.mark.parametrize("which", ["gpt2", "t5"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_estimate_before_loading_is_close_to_the_loaded_footprint(request, which, dtype):
    plugin = TransformersPlugin(str(request.getfixturevalue(f"tiny_{which}_dir")), options={"dtype": dtype})
    estimate = plugin.estimated_memory_bytes()
    plugin.load()
    weights = sum(parameter.numel() * parameter.element_size() for parameter in plugin.model.parameters())
    # T5 keeps a few layers in float32 whatever the dtype: the estimate counts every weight at the dtype's size.
    # Buffers (some transformers versions keep GPT-2's causal mask) are not weights and not estimated.
    assert 0.8 * weights <= estimate <= weights <= plugin.memory_bytes()


def test_the_estimate_follows_the_dtype_and_the_quantization(tiny_gpt2_dir):
    def estimate(quantization=None, **options):
        return TransformersPlugin(str(tiny_gpt2_dir), quantization=quantization, options=options) \
            .estimated_memory_bytes()

    full = estimate(dtype="float32")
    assert full > 0
    assert (estimate(dtype="bfloat16"), estimate("8bit"), estimate("4bit")) == (full // 2, full // 4, full // 8)


def test_the_estimate_counts_only_the_weights_transformers_loads(tmp_path, tiny_gpt2_dir):
    folder = tmp_path / "sharded"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {"transformer.wte.weight": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(folder / "model-00001-of-00001.safetensors", folder / "consolidated.safetensors")  # another runtime's
    expected = TransformersPlugin(str(tiny_gpt2_dir)).estimated_memory_bytes()
    assert TransformersPlugin(str(folder)).estimated_memory_bytes() == expected


def test_without_weights_to_read_the_estimate_is_zero(tmp_path, tiny_gpt2_dir):
    assert TransformersPlugin(str(tmp_path / "missing")).estimated_memory_bytes() == 0
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "model.safetensors").unlink()
    assert TransformersPlugin(str(folder)).estimated_memory_bytes() == 0
    (folder / "pytorch_model.bin").write_bytes(b"\0" * 1000)
    assert TransformersPlugin(str(folder)).estimated_memory_bytes() == 1000  # by its size on disk


def test_context_length_comes_from_the_config(gpt2, t5):
    assert gpt2.context_length() == 128  # n_positions
    assert t5.context_length() == 128  # relative positions: the tokenizer's model_max_length


def test_an_input_longer_than_the_context_is_refused(gpt2, t5):
    for plugin in (gpt2, t5):
        with pytest.raises(Unprocessable) as caught:
            plugin.generate("x = 1\n" * 200, GenerationParams(max_new_tokens=4))
        assert caught.value.code == "context_length_exceeded"


def test_a_seq2seq_output_is_not_capped_by_the_encoder_limit(t5):
    prompt = "x = 1\n" * 20
    tokens_in = t5.count_tokens(prompt)
    result = t5.generate(prompt, GenerationParams(max_new_tokens=128))
    assert tokens_in + result.tokens_out > 128
    assert not t5.output_shares_context()


def test_output_is_capped_at_the_context(gpt2):
    prompt = "x = 1\n" * 10
    result = gpt2.generate(prompt, GenerationParams(max_new_tokens=1000))
    assert result.tokens_in + result.tokens_out <= 128


def test_cpu_uses_float32(gpt2):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU default does not apply")
    assert gpt2.model.dtype == torch.float32
    assert gpt2.model.device.type == "cpu"


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantization_without_cuda_is_a_clear_error(tiny_gpt2_dir, quantization):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    plugin = TransformersPlugin(str(tiny_gpt2_dir), quantization=quantization)
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "quantization_unavailable"
    assert "CUDA" in caught.value.message
    assert plugin.model is None, "never a silent full-precision load"


def test_unknown_quantization_is_refused(tiny_gpt2_dir):
    with pytest.raises(Unprocessable) as caught:
        TransformersPlugin(str(tiny_gpt2_dir), quantization="3bit")
    assert caught.value.code == "invalid_quantization"


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and offline mode: nothing may reach the network."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf-cache"


def test_hub_model_not_in_the_cache_is_not_downloaded(offline_hub):
    plugin = TransformersPlugin("nobody-here/no-such-model", options={"cache_dir": str(offline_hub)})
    assert plugin.status() == "not_downloaded"
    with pytest.raises(Unavailable) as caught:
        plugin.load()
    assert caught.value.code == "model_not_downloaded"
    assert "not downloaded" in caught.value.message
    assert "promptyard models pull" in caught.value.message
    assert plugin.context_length() is None


def test_download_when_the_hub_is_unreachable_says_how_to_fix_it(offline_hub):
    plugin = TransformersPlugin("nobody-here/no-such-model", options={"cache_dir": str(offline_hub)})
    with pytest.raises(Unavailable) as caught:
        plugin.download(progress=False)
    assert caught.value.code == "hub_unreachable"
    assert "cannot be reached" in caught.value.message
    assert "HF_HUB_OFFLINE" in caught.value.message
    assert "promptyard models register --source" in caught.value.message


def test_hub_model_in_the_cache_is_available_and_loads(offline_hub, tiny_gpt2_dir, gpt2):
    repo = offline_hub / "models--tiny-org--tiny-gpt2"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_gpt2_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    plugin = TransformersPlugin("tiny-org/tiny-gpt2", options={"cache_dir": str(offline_hub)})
    assert plugin.status() == "available"
    assert plugin.download(progress=False) == str(snapshot)
    params = GenerationParams(max_new_tokens=8)
    assert plugin.generate(PROMPT, params).text == gpt2.generate(PROMPT, params).text
    assert plugin.status() == "loaded"


def test_missing_local_folder_is_an_error(tmp_path):
    plugin = TransformersPlugin(str(tmp_path / "nothing"))
    assert plugin.status() == "error"
    with pytest.raises(NotFound) as caught:
        plugin.load()
    assert caught.value.code == "model_path_not_found"


def test_a_folder_without_a_model_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    plugin = TransformersPlugin(str(tmp_path))
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "invalid_model"
    assert plugin.status() == "error"


def test_remote_code_needs_the_explicit_opt_in(tmp_path, tiny_gpt2_dir):
    import json

    folder = tmp_path / "remote"
    shutil.copytree(tiny_gpt2_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-remote", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        "from transformers import PretrainedConfig\n\nclass CustomConfig(PretrainedConfig):\n"
        "    model_type = 'custom-remote'\n"
    )
    with pytest.raises(Unprocessable) as caught:
        TransformersPlugin(str(folder)).load()
    assert caught.value.code == "trust_remote_code_required"
    assert "trust_remote_code" in caught.value.message


def test_cuda_gets_bfloat16_or_float16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_device_and_dtype({}) == (torch.device("cuda"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_device_and_dtype({}) == (torch.device("cuda"), torch.float16)
    assert choose_device_and_dtype({"dtype": "float32"}) == (torch.device("cuda"), torch.float32)


def test_quantization_on_cuda_without_bitsandbytes_names_the_package(monkeypatch, tiny_gpt2_dir):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    plugin = TransformersPlugin(str(tiny_gpt2_dir), quantization="nf4")
    with pytest.raises(Unprocessable) as caught:
        plugin.load()
    assert caught.value.code == "quantization_unavailable"
    assert "bitsandbytes" in caught.value.message
    assert plugin.model is None


@pytest.mark.parametrize("options, code", [({"dtype": "float8"}, "invalid_dtype"), ({"device": "warp"}, "invalid_device")])
def test_bad_device_or_dtype_options_are_refused(tiny_gpt2_dir, options, code):
    with pytest.raises(Unprocessable) as caught:
        TransformersPlugin(str(tiny_gpt2_dir), options=options).load()
    assert caught.value.code == code


def test_an_evicted_model_finishes_the_generation_in_flight(tiny_gpt2_dir):
    plugin = TransformersPlugin(str(tiny_gpt2_dir))
    expected = plugin.generate(PROMPT, GenerationParams(max_new_tokens=20)).text
    stream = plugin.stream(PROMPT, GenerationParams(max_new_tokens=20))
    first = next(stream)
    plugin.unload()
    assert first + "".join(stream) == expected
    assert plugin.status() == "available"


def test_a_chat_template_that_refuses_the_messages_is_a_422(tiny_t5_dir):
    refusing = "{{ raise_exception('system messages are not supported') }}"
    plugin = TransformersPlugin(str(tiny_t5_dir), options={"prompt_format": refusing})
    with pytest.raises(Unprocessable) as caught:
        plugin.count_tokens(CHAT)
    assert caught.value.code == "chat_template_error"
    assert "system messages are not supported" in caught.value.message
