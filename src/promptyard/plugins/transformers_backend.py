"""The `transformers` backend: causal or seq2seq Hugging Face models from a hub id or a local folder.

torch and transformers are imported when a model is first used, not when the plugin registry discovers
this module, so that starting the API or the CLI stays fast.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref
from concurrent.futures import Future, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, TypeVar

from promptyard.errors import NotFound, Unavailable, Unprocessable
from promptyard.plugins.base import (
    BatchItem,
    BatchResult,
    Generation,
    GenerationParams,
    LLMPlugin,
    Progress,
    PromptInput,
)
from promptyard.plugins.gguf_files import cached_gguf_folder, gguf_location, gguf_parameter_count, require_gguf_support
from promptyard.plugins.hf_files import (
    cached_snapshot,
    download_snapshot,
    local_folder,
    looks_like_path,
    missing_weights_error,
)
from promptyard.plugins.hf_loading import (
    apply_adapter,
    bytes_per_parameter,
    choose_device_and_dtype,
    estimated_weight_bytes,
    quantization_config_for,
)
from promptyard.plugins.textgen import StopBuffer, cut_at_stop, fit_to_context, prompt_to_text

if TYPE_CHECKING:
    import torch

# Accepted spellings of `quantization`; None means full precision.
QUANTIZATIONS = {"none": None, "4bit": "4bit", "nf4": "4bit", "8bit": "8bit", "int8": "8bit"}
CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
# How long closing a stream waits for the generation thread to notice (it stops at the next token).
STREAM_JOIN_SECONDS = 10.0


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


T = TypeVar("T")


class _GenerationThread:
    """Runs submitted calls one at a time on one daemon thread, started on first use. Daemon, unlike a
    ThreadPoolExecutor's threads: a generation in flight must not hold up the process's exit (its record, left
    `running`, is marked failed at the next start). The thread ends once this object is garbage-collected."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        weakref.finalize(self, self._calls.put, None)

    def submit(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((call, future))
        with self._lock:
            if not self._started:
                threading.Thread(target=_serve_calls, args=(self._calls,), name="promptyard-generate",
                                 daemon=True).start()
                self._started = True
        # Hand the interpreter lock to the generation thread now. The caller's next work (writing the `running`
        # record) overlaps the generation, but would otherwise keep the lock until its first database call and hold
        # up the start of the generation, which is what the request waits for (~0.2 ms).
        time.sleep(0)
        return future


def _serve_calls(calls: queue.SimpleQueue) -> None:
    # Only the queue is held here, never the plugin: an idle thread must not keep its model alive.
    while (item := calls.get()) is not None:
        call, future = item
        item = None
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)
        call = future = None


class TransformersPlugin(LLMPlugin):
    """A transformers model. Options: trust_remote_code, device, dtype, prompt_format, cache_dir, max_batch_size,
    adapter (a PEFT adapter folder applied on top), merge_adapter, and gguf_file (a GGUF file in the folder or hub
    repository, dequantized by transformers; a .gguf source names it directly)."""

    name = "transformers"
    description = "Hugging Face transformers: causal or seq2seq models from a hub id or a local folder."
    # max_batch_size: rows per batched generate call (evaluation runs); greedy output does not depend on it.
    operational_options = frozenset({"cache_dir", "max_batch_size"})

    def __init__(
        self,
        source: str,
        *,
        revision: str | None = None,
        quantization: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(source, revision=revision, quantization=quantization, options=options)
        key = (quantization or "none").lower()
        if key not in QUANTIZATIONS:
            raise Unprocessable(
                f"Unknown quantization '{quantization}'; use one of: 4bit, 8bit, none.",
                code="invalid_quantization", details={"quantization": quantization},
            )
        self.bits = QUANTIZATIONS[key]
        # A GGUF model: the folder (or hub repository) holding the file, and the file's name in it.
        self.folder_source, self.gguf_file = gguf_location(source, self.options.get("gguf_file"))
        self.model = None
        self.tokenizer = None
        self.config = None
        self.is_encoder_decoder = False
        self.device: torch.device | None = None
        self.last_error: str | None = None
        self._load_lock = threading.RLock()
        # Every generation of this model runs on this one thread, one at a time. One at a time: torch's global RNG
        # makes seeded sampling unsafe to interleave, and the execution queue already bounds how many requests
        # wait here. One thread: torch keeps per-thread state (its OpenMP team, kernel caches), and generations that
        # hopped between the server's request threads were ~3 ms slower each in the benchmark (bench/README.md).
        self._generation_thread = _GenerationThread()
        self._last_tokenized: tuple[str, dict[str, torch.Tensor]] | None = None

    @property
    def trust_remote_code(self) -> bool:
        return self.options.get("trust_remote_code") is True

    @property
    def cache_dir(self) -> str | None:
        return self.options.get("cache_dir")

    # --- where the files are -------------------------------------------------------------------------------

    def _model_path(self) -> str:
        """The folder to load from: the local folder, or the cached hub snapshot (never the network)."""
        folder = local_folder(self.folder_source)
        if folder is not None:
            if self.gguf_file and not (folder / self.gguf_file).is_file():
                raise NotFound(f"There is no GGUF file '{self.gguf_file}' in '{folder}'.",
                               code="model_path_not_found", details={"source": self.source})
            return str(folder)
        if looks_like_path(self.folder_source):
            raise NotFound(f"There is no model folder at '{self.source}'.", code="model_path_not_found",
                           details={"source": self.source})
        if self.gguf_file:
            snapshot = cached_gguf_folder(self.source, self.gguf_file, self.revision, self.cache_dir)
            if snapshot is None:
                raise missing_weights_error(self.source)
            return str(snapshot)
        snapshot = cached_snapshot(self.source, self.revision, self.cache_dir)
        if snapshot is None:
            raise missing_weights_error(self.source)
        return str(snapshot)

    def status(self) -> str:
        if self.model is not None:
            return "loaded"
        if self.last_error:
            return "error"
        folder = local_folder(self.folder_source)
        if folder is not None:
            wanted = self.gguf_file or "config.json"
            return "available" if (folder / wanted).is_file() else "error"
        if looks_like_path(self.folder_source):
            return "error"
        if self.gguf_file:
            cached = cached_gguf_folder(self.source, self.gguf_file, self.revision, self.cache_dir)
            return "available" if cached else "not_downloaded"
        return "available" if cached_snapshot(self.source, self.revision, self.cache_dir) else "not_downloaded"

    def download(self, progress: Progress = True) -> str:
        """Fetch the weights into the Hugging Face cache (a local folder needs nothing); returns the folder."""
        folder = local_folder(self.folder_source)
        if folder is not None:
            return str(folder)
        if looks_like_path(self.folder_source):
            raise NotFound(f"There is no model folder at '{self.source}'.", code="model_path_not_found",
                           details={"source": self.source})
        path = download_snapshot(self.source, revision=self.revision, cache_dir=self.cache_dir, progress=progress,
                                 allow_patterns=[self.gguf_file] if self.gguf_file else None)
        self.last_error = None
        return path

    # --- loading ---------------------------------------------------------------------------------------------

    def _load_config(self, path: str):
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=self.trust_remote_code,
                                              **self._gguf_kwargs())
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise Unprocessable(
                    f"'{self.source}' runs its own Python code from the model repository; allow that explicitly "
                    f"with options {{\"trust_remote_code\": true}} if you trust its authors.",
                    code="trust_remote_code_required", details={"source": self.source},
                ) from exc
            raise self._remember(Unprocessable(
                f"'{self.source}' is not a model transformers can read: {exc}", code="invalid_model",
                details={"source": self.source},
            )) from exc
        except OSError as exc:
            raise self._remember(Unprocessable(
                f"'{self.source}' has no readable config.json: {exc}", code="invalid_model",
                details={"source": self.source},
            )) from exc

    def _gguf_kwargs(self) -> dict[str, Any]:
        """What from_pretrained needs to read a GGUF file (it dequantizes the weights and builds the tokenizer)."""
        if not self.gguf_file:
            return {}
        require_gguf_support()
        return {"gguf_file": self.gguf_file}

    def _remember(self, error: Exception) -> Exception:
        self.last_error = str(error)
        return error

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        with self._load_lock:
            if self.model is not None:
                return
            device, dtype = choose_device_and_dtype(self.options)
            quantization_config = quantization_config_for(self.bits, device, dtype)
            path = self._model_path()
            config = self._load_config(path)
            model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            kwargs: dict[str, Any] = {
                "local_files_only": True, "trust_remote_code": self.trust_remote_code, "dtype": dtype,
                **self._gguf_kwargs(),
            }
            if quantization_config is not None:
                kwargs.update(quantization_config=quantization_config, device_map={"": device.index or 0})
            try:
                model = apply_adapter(model_class.from_pretrained(path, **kwargs), self.options)
                tokenizer = AutoTokenizer.from_pretrained(
                    path, local_files_only=True, trust_remote_code=self.trust_remote_code, **self._gguf_kwargs()
                )
            except (OSError, ValueError, ImportError) as exc:
                raise self._remember(Unprocessable(
                    f"Could not load '{self.source}': {exc}", code="invalid_model", details={"source": self.source}
                )) from exc
            if quantization_config is None:
                model.to(device)
            model.eval()
            self.model, self.tokenizer, self.config = model, tokenizer, config
            self.is_encoder_decoder = bool(config.is_encoder_decoder)
            self.device = device
            self.last_error = None

    def unload(self) -> None:
        import torch

        with self._load_lock:
            on_cuda = self.model is not None and self.device is not None and self.device.type == "cuda"
            self.model = None
            gc.collect()
            if on_cuda:
                torch.cuda.empty_cache()

    def _ready(self) -> tuple[Any, float]:
        """The model (loading it when needed) and the milliseconds loading took in this call.

        Callers generate with this reference, not self.model: when the ModelManager evicts the model meanwhile,
        the generation in flight finishes and the memory is freed after it.
        """
        with self._load_lock:
            if self.model is not None:
                return self.model, 0.0
            started = time.perf_counter()
            self.load()
            return self.model, _ms(started)

    def _tokenizer(self):
        from transformers import AutoTokenizer

        if self.tokenizer is None:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self._model_path(), local_files_only=True, trust_remote_code=self.trust_remote_code,
                **self._gguf_kwargs()
            )
        return self.tokenizer

    def _config(self):
        if self.config is None:
            self.config = self._load_config(self._model_path())
        return self.config

    # --- facts about the model -------------------------------------------------------------------------------

    def context_length(self) -> int | None:
        try:
            config = self._config()
        except (NotFound, Unavailable, Unprocessable):
            return None
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        for attribute in CONTEXT_ATTRIBUTES:
            value = getattr(text_config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        # Relative-position models (T5) have no hard limit in the config; their tokenizer states the trained one.
        limit = getattr(self._tokenizer(), "model_max_length", None)
        return limit if isinstance(limit, int) and 0 < limit < 10**7 else None

    def output_shares_context(self) -> bool:
        try:
            return not self._config().is_encoder_decoder
        except (NotFound, Unavailable, Unprocessable):
            return True

    def count_tokens(self, prompt: PromptInput) -> int:
        return int(self._tokenized(prompt)["input_ids"].shape[1])

    def memory_bytes(self) -> int:
        model = self.model
        return int(model.get_memory_footprint()) if model is not None else 0

    def estimated_memory_bytes(self) -> int:
        try:
            folder = Path(self._model_path())
            _, dtype = choose_device_and_dtype(self.options)
            if self.gguf_file:  # dequantized: every parameter in the dtype it loads in
                return int(gguf_parameter_count(folder / self.gguf_file) * bytes_per_parameter(self.bits, dtype))
            return estimated_weight_bytes(folder, bytes_per_parameter(self.bits, dtype))
        except (NotFound, Unavailable, Unprocessable, OSError, ValueError, KeyError):
            return 0  # missing or unreadable files: load() reports what is wrong with them

    # --- generation ------------------------------------------------------------------------------------------

    def _tokenized(self, prompt: PromptInput) -> dict[str, torch.Tensor]:
        """The prompt's token tensors (on the CPU). The pipeline counts a prompt's tokens right before generating
        from it: the last prompt's are kept, so it is tokenized once, not twice."""
        key = prompt if isinstance(prompt, str) else repr(prompt)
        last = self._last_tokenized
        if last is not None and last[0] == key:
            return last[1]
        tokenizer = self._tokenizer()
        text, templated = prompt_to_text(prompt, tokenizer, self.options.get("prompt_format"))
        # A chat template writes its own special tokens; a plain prompt gets the tokenizer's usual ones.
        inputs = dict(tokenizer(text, return_tensors="pt", add_special_tokens=not templated))
        inputs.pop("token_type_ids", None)
        self._last_tokenized = (key, inputs)
        return inputs

    def _encode(self, prompt: PromptInput) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device) for key, value in self._tokenized(prompt).items()}

    def _generation_kwargs(self, model, params: GenerationParams, prompt_length: int) -> dict[str, Any]:
        # The pipeline has fitted the params already; a direct caller (the plugin used as a tool) has not.
        max_new_tokens = fit_to_context(self.source, prompt_length, params.max_new_tokens, self.context_length(),
                                        output_shares_context=self.output_shares_context())
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if params.do_sample and params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs["do_sample"] = False
        if model.generation_config.pad_token_id is None:
            kwargs["pad_token_id"] = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        return kwargs

    def _stopping(self, params: GenerationParams, prompt_length: int, cancel: threading.Event | None):
        from transformers import StoppingCriteriaList

        from promptyard.plugins.stopping import StopOnEvent, StopOnText

        criteria = StoppingCriteriaList()
        if params.stop:
            start = 0 if self.is_encoder_decoder else prompt_length
            criteria.append(StopOnText(self.tokenizer, params.stop, start))
        if cancel is not None:
            criteria.append(StopOnEvent(cancel))
        return criteria

    def _seed(self, params: GenerationParams) -> None:
        import torch

        if params.do_sample and params.seed is not None:
            torch.manual_seed(params.seed)
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(params.seed)

    def _new_tokens(self, sequence: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """The generated ids: after the prompt (causal) or after the decoder start token (seq2seq)."""
        new = sequence[1:] if self.is_encoder_decoder else sequence[prompt_length:]
        pad = self.tokenizer.pad_token_id
        if pad is not None and pad != self.tokenizer.eos_token_id:
            new = new[new != pad]
        return new

    def _finish_reason(self, new_ids: torch.Tensor, stopped: bool, max_new_tokens: int) -> str:
        if stopped:
            return "stop"
        if len(new_ids) and int(new_ids[-1]) == self.tokenizer.eos_token_id:
            return "stop"
        return "length" if len(new_ids) >= max_new_tokens else "stop"

    def generate(self, prompt: PromptInput, params: GenerationParams) -> Generation:
        return self.start_generation(prompt, params).result()

    def generate_batch(self, items: list[BatchItem]) -> BatchResult:
        """Many prompts and samples per generate call (see transformers_batch)."""
        from promptyard.plugins.transformers_batch import generate_batch

        return generate_batch(self, items)

    def start_generation(self, prompt: PromptInput, params: GenerationParams) -> Future[Generation]:
        """Encode and check on the caller's thread (a bad input raises here), then generate on the model's thread."""
        import torch

        model, load_ms = self._ready()
        inputs = self._encode(prompt)
        prompt_length = inputs["input_ids"].shape[1]
        kwargs = self._generation_kwargs(model, params, prompt_length)
        stopping = self._stopping(params, prompt_length, None)

        def run() -> Generation:
            started = time.perf_counter()
            self._seed(params)
            try:
                with torch.inference_mode():
                    output = model.generate(**inputs, **kwargs, stopping_criteria=stopping)
            except (RuntimeError, ValueError) as exc:
                raise Unavailable(f"Generation failed: {exc}", code="generation_failed") from exc
            generate_ms = _ms(started)
            new_ids = self._new_tokens(output[0], prompt_length)
            text, stopped = cut_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), params.stop)
            return Generation(
                text=text,
                tokens_in=prompt_length,
                tokens_out=len(new_ids),
                finish_reason=self._finish_reason(new_ids, stopped, kwargs["max_new_tokens"]),
                timings={"load": load_ms, "generate": generate_ms},
            )

        return self._generation_thread.submit(run)

    def stream(self, prompt: PromptInput, params: GenerationParams) -> Generator[str, None, Generation]:
        import torch
        from transformers import TextIteratorStreamer

        model, load_ms = self._ready()
        inputs = self._encode(prompt)
        prompt_length = inputs["input_ids"].shape[1]
        kwargs = self._generation_kwargs(model, params, prompt_length)
        cancel = threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def run() -> None:
            if cancel.is_set():
                streamer.end()
                return
            self._seed(params)
            try:
                with torch.inference_mode():
                    outcome["output"] = model.generate(
                        **inputs, **kwargs, streamer=streamer,
                        stopping_criteria=self._stopping(params, prompt_length, cancel),
                    )
            except Exception as exc:  # noqa: BLE001 - reported to the consumer below
                outcome["error"] = exc
                streamer.end()

        started = time.perf_counter()
        first_token_ms: float | None = None
        buffer = StopBuffer(params.stop)
        worker = self._generation_thread.submit(run)
        try:
            for delta in buffer.stream(streamer):
                first_token_ms = first_token_ms if first_token_ms is not None else _ms(started)
                yield delta
        finally:
            # Reached on normal end, on a stop sequence and when the consumer closes the stream (GeneratorExit):
            # the cancel criterion ends generation at the next token.
            cancel.set()
            wait([worker], timeout=STREAM_JOIN_SECONDS)
        if "error" in outcome:
            raise Unavailable(f"Generation failed: {outcome['error']}", code="generation_failed")
        output = outcome.get("output")
        new_ids = self._new_tokens(output[0], prompt_length) if output is not None else torch.tensor([])
        return Generation(
            text=buffer.text,
            tokens_in=prompt_length,
            tokens_out=len(new_ids),
            finish_reason=self._finish_reason(new_ids, buffer.stopped, kwargs["max_new_tokens"]),
            timings={"load": load_ms, "first_token": first_token_ms or 0.0, "generate": _ms(started)},
        )
