"""The `llamacpp` backend: GGUF models run by llama.cpp (llama-cpp-python), on CPUs and small GPUs.

The source is a local `.gguf` file, or a hub repository with the file named in options.file (`pull` fetches it).
Chats are written with the chat template the GGUF file carries. Generation is promptyard's own token loop over
`Llama.generate`, so that the token counts are exact, stop sequences are never streamed, and a stream ends at the next
token when its consumer goes away. llama_cpp is imported when a model is first loaded, not when the plugin registry
discovers this module.
"""

from __future__ import annotations

import codecs
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Generator, Iterator

from promptyard.errors import NotFound, Unavailable, Unprocessable
from promptyard.plugins.base import Generation, GenerationParams, LLMPlugin, Progress, PromptInput, check_prompt
from promptyard.plugins.gguf_files import GGUFSource, is_gguf
from promptyard.plugins.textgen import PROMPT_FORMATS, StopBuffer, fit_to_context, plain_chat, render_chat
from promptyard.plugins.transformers_backend import _GenerationThread

# The context llama.cpp allocates when options.n_ctx is not given: the model's trained context, at most this many
# tokens (a KV cache for a 32K context would take ~0.4 GB for a 0.5B model; whole functions fit in 8K with room).
DEFAULT_MAX_CONTEXT = 8192
# Integer options, with the least value each accepts (n_gpu_layers -1 offloads every layer).
INT_OPTIONS = {"n_ctx": 0, "n_gpu_layers": -1, "n_threads": 1, "n_batch": 1}
KV_BYTES_PER_VALUE = 2  # llama.cpp keeps its KV cache in f16 by default
# Sampling with only temperature and top_p (promptyard's params): llama.cpp's other samplers switched off.
NEUTRAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise Unavailable(
            "The llamacpp plugin needs llama-cpp-python: install promptyard with the llamacpp extra "
            "(pip install 'promptyard[llamacpp]'; `make install` does it).",
            code="backend_missing", details={"package": "llama-cpp-python"},
        ) from exc
    return llama_cpp


class _Tally:
    """What one generation counted while its text streamed."""

    def __init__(self) -> None:
        self.tokens_out = 0
        self.finish_reason = "length"


class LlamaCppPlugin(LLMPlugin):
    """A GGUF model. Options: file (in a hub repository), n_ctx, n_gpu_layers, n_threads, n_batch, prompt_format,
    cache_dir."""

    name = "llamacpp"
    description = "llama.cpp: GGUF models (a local .gguf file, or a hub repository and options.file) on CPU or GPU."
    # Threads and batch size change how fast llama.cpp computes, not what it answers; cache_dir where files live.
    operational_options = frozenset({"n_threads", "n_batch", "cache_dir"})

    def __init__(
        self,
        source: str,
        *,
        revision: str | None = None,
        quantization: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(source, revision=revision, quantization=quantization, options=options)
        if quantization:
            raise Unprocessable(
                "A GGUF file is quantized already: choose the file of the quantization you want (Q4_K_M, Q8_0, ...) "
                "instead of setting quantization.", code="invalid_quantization",
                details={"quantization": quantization},
            )
        for option, least in INT_OPTIONS.items():
            value = self.options.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise Unprocessable(f"options.{option} must be a whole number of at least {least} (got {value!r}).",
                                    code="invalid_options", details={"option": option})
        prompt_format = self.options.get("prompt_format")
        if prompt_format is not None and not isinstance(prompt_format, str):
            raise Unprocessable("options.prompt_format must be a format name or a Jinja chat template.",
                                code="invalid_options", details={"option": "prompt_format"})
        self.files = GGUFSource(source, self.options.get("file"), revision=revision,
                                cache_dir=self.options.get("cache_dir"))
        self.llm = None
        self.last_error: str | None = None
        self._file_bytes = 0
        self._load_lock = threading.RLock()
        # llama.cpp's context (its KV cache) serves one generation at a time: every use of it holds this lock.
        self._busy = threading.Lock()
        self._generation_thread = _GenerationThread()
        self._last_tokenized: tuple[Any, list[int]] | None = None
        self._formatter = None

    # --- files -----------------------------------------------------------------------------------------------

    def status(self) -> str:
        if self.llm is not None:
            return "loaded"
        if self.last_error:
            return "error"
        return self.files.status()

    def download(self, progress: Progress = True) -> str:
        """The local file, or the hub file fetched into the Hugging Face cache; returns its path."""
        path = self.files.download(progress)
        self.last_error = None
        return str(path)

    def estimated_memory_bytes(self) -> int:
        """The file's size: llama.cpp maps the weights as they are stored (the KV cache comes on top)."""
        try:
            return self.files.resolve().stat().st_size
        except (NotFound, Unavailable, OSError):
            return 0

    # --- loading ---------------------------------------------------------------------------------------------

    def load(self) -> None:
        with self._load_lock:
            if self.llm is not None:
                return
            llama_cpp = _llama_cpp()
            path = self.files.resolve()
            if not is_gguf(path):
                raise self._remember(Unprocessable(
                    f"'{self.source}' is not a GGUF file (it does not start with the GGUF magic bytes).",
                    code="invalid_model", details={"source": self.source},
                ))
            kwargs: dict[str, Any] = {"model_path": str(path), "verbose": False,
                                      "n_ctx": self.options.get("n_ctx") or DEFAULT_MAX_CONTEXT,
                                      "n_gpu_layers": self.options.get("n_gpu_layers", 0)}
            for option in ("n_threads", "n_batch"):
                if self.options.get(option):
                    kwargs[option] = self.options[option]
            try:
                llm = llama_cpp.Llama(**kwargs)
            except (ValueError, RuntimeError, OSError) as exc:
                raise self._remember(Unprocessable(
                    f"llama.cpp could not load '{self.source}': {exc}", code="invalid_model",
                    details={"source": self.source},
                )) from exc
            if not self.options.get("n_ctx") and llm.n_ctx() > llm._model.n_ctx_train():
                # The default cap is above what this model was trained on: allocate only that.
                llm.close()
                llm = llama_cpp.Llama(**{**kwargs, "n_ctx": 0})
            self.llm, self._file_bytes, self._formatter = llm, path.stat().st_size, None
            self._last_tokenized = None
            self.last_error = None

    def _remember(self, error: Exception) -> Exception:
        self.last_error = str(error)
        return error

    def unload(self) -> None:
        with self._load_lock, self._busy:  # never free the context under a generation
            llm, self.llm = self.llm, None
            self._last_tokenized = None
            if llm is not None:
                llm.close()

    def _ready(self) -> tuple[Any, float]:
        """The Llama (loading it when needed) and the milliseconds loading took in this call."""
        with self._load_lock:
            if self.llm is not None:
                return self.llm, 0.0
            started = time.perf_counter()
            self.load()
            return self.llm, _ms(started)

    # --- facts about the model -------------------------------------------------------------------------------

    def context_length(self) -> int | None:
        """The context llama.cpp allocated (never beyond what the model was trained on); None until loaded."""
        llm = self.llm
        if llm is None:
            return None
        return min(llm.n_ctx(), llm._model.n_ctx_train())

    def count_tokens(self, prompt: PromptInput) -> int:
        return len(self._tokenized(prompt))

    def memory_bytes(self) -> int:
        """The mapped weights (the file) and the KV cache of the allocated context."""
        llm = self.llm
        if llm is None:
            return 0
        llama_cpp = _llama_cpp()
        model = llm.model
        head_dim = llama_cpp.llama_model_n_embd(model) // max(1, llama_cpp.llama_model_n_head(model))
        kv = (2 * llama_cpp.llama_model_n_layer(model) * llm.n_ctx() * llama_cpp.llama_model_n_head_kv(model)
              * head_dim * KV_BYTES_PER_VALUE)
        return self._file_bytes + kv

    def chat_template(self) -> str | None:
        """The Jinja chat template chats are written with: the GGUF file's, else options.prompt_format's."""
        llm, _ = self._ready()
        fmt = self.options.get("prompt_format")
        return llm.metadata.get("tokenizer.chat_template") or PROMPT_FORMATS.get(fmt or "", fmt)

    # --- prompts ---------------------------------------------------------------------------------------------

    def _chat_text(self, llm, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """The chat as text, and whether a template wrote it (a template writes its own special tokens)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self._formatter is None:
            template = self.chat_template()
            if not template:
                return plain_chat(messages), False

            def token_text(token: int) -> str:
                return llm._model.token_get_text(token) if token != -1 else ""

            try:
                # One formatter with the generation prompt, one without (to continue a begun assistant message).
                self._formatter = {generation_prompt: Jinja2ChatFormatter(
                    template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos()),
                    add_generation_prompt=generation_prompt) for generation_prompt in (True, False)}
            except Exception as exc:  # noqa: BLE001 - a template that does not parse
                raise Unprocessable(f"The model's chat template does not parse: {exc}",
                                    code="chat_template_error") from exc
        formatters = self._formatter
        try:
            return render_chat(messages, lambda chat, generation_prompt: formatters[generation_prompt](
                messages=chat).prompt), True
        except Unprocessable:
            raise
        except Exception as exc:  # noqa: BLE001 - templates raise anything (jinja errors, raise_exception(...))
            raise Unprocessable(f"The model's chat template refused these messages: {exc}",
                                code="chat_template_error") from exc

    def _tokenized(self, prompt: PromptInput) -> list[int]:
        """The prompt's tokens, as llama-cpp-python's create_completion / create_chat_completion would make them.
        The pipeline counts a prompt's tokens right before generating from it: the last prompt's are kept."""
        key = prompt if isinstance(prompt, str) else repr(prompt)
        last = self._last_tokenized
        if last is not None and last[0] == key:
            return last[1]
        check_prompt(prompt)
        llm, _ = self._ready()
        if isinstance(prompt, str):
            text, templated = prompt, False
        else:
            text, templated = self._chat_text(llm, prompt)
        add_bos = not templated and llm._model.add_bos_token() and llm.token_bos() != -1
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True) if text else []
        if not tokens:
            raise Unprocessable("The prompt is empty: there is nothing for the model to continue.",
                                code="invalid_prompt", details={"field": "prompt"})
        self._last_tokenized = (key, tokens)
        return tokens

    # --- generation ------------------------------------------------------------------------------------------

    def _pieces(self, llm, tokens: list[int], params: GenerationParams, max_new_tokens: int,
                tally: _Tally) -> Iterator[str]:
        """The generated text, a piece per token (bytes of a character split across tokens wait for the rest);
        the caller holds `_busy`. Closing this iterator ends generation before the next token."""
        llama_cpp = _llama_cpp()
        vocab = llm._model.vocab
        sampling = dict(NEUTRAL_SAMPLING)
        if params.do_sample and params.temperature > 0:
            sampling.update(temp=params.temperature, top_p=params.top_p)
            # LLAMA_DEFAULT_SEED asks llama.cpp for a random seed.
            llm.set_seed(params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        else:
            sampling.update(temp=0.0, top_p=1.0)
        # Evaluate every prompt from scratch: reusing a shared prefix of the KV cache would evaluate the rest of the
        # prompt in other batch shapes, whose float sums can differ, and greedy text must not depend on history.
        llm.reset()
        # Invalid UTF-8 is dropped, as llama-cpp-python's own completions drop it.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

        def text_of(data: bytes, final: bool = False) -> str:
            # NUL too: byte tokens can spell it, no code means it, and PostgreSQL text columns cannot hold it.
            return decoder.decode(data, final).replace("\x00", "")

        tokens_generated = llm.generate(tokens, reset=True, **sampling)
        try:
            for token in tokens_generated:
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    tally.finish_reason = "stop"
                    break
                tally.tokens_out += 1
                piece = text_of(llm.detokenize([token]))
                if piece:
                    yield piece
                if tally.tokens_out >= max_new_tokens:
                    break
            rest = text_of(b"", final=True)
            if rest:
                yield rest
        finally:
            tokens_generated.close()

    def _prepare(self, prompt: PromptInput, params: GenerationParams) -> tuple[Any, float, list[int], int]:
        """Load, tokenize and fit max_new_tokens to the context, on the caller's thread (bad input raises here)."""
        llm, load_ms = self._ready()
        tokens = self._tokenized(prompt)
        # The pipeline has fitted the params already; a direct caller (the plugin used as a tool) has not.
        max_new_tokens = fit_to_context(self.source, len(tokens), params.max_new_tokens, self.context_length(),
                                        output_shares_context=True)
        return llm, load_ms, tokens, max_new_tokens

    def generate(self, prompt: PromptInput, params: GenerationParams) -> Generation:
        return self.start_generation(prompt, params).result()

    def start_generation(self, prompt: PromptInput, params: GenerationParams) -> Future[Generation]:
        """Prepare on the caller's thread, then generate on the model's own thread."""
        llm, load_ms, tokens, max_new_tokens = self._prepare(prompt, params)

        def run() -> Generation:
            started = time.perf_counter()
            tally = _Tally()
            buffer = StopBuffer(params.stop)
            with self._busy:
                self._check_open(llm)
                for piece in self._pieces(llm, tokens, params, max_new_tokens, tally):
                    buffer.feed(piece)
                    if buffer.stopped:
                        break
            buffer.flush()
            return Generation(
                text=buffer.text, tokens_in=len(tokens), tokens_out=tally.tokens_out,
                finish_reason="stop" if buffer.stopped else tally.finish_reason,
                timings={"load": load_ms, "generate": _ms(started)},
            )

        return self._generation_thread.submit(_as_unavailable(run))

    def stream(self, prompt: PromptInput, params: GenerationParams) -> Generator[str, None, Generation]:
        llm, load_ms, tokens, max_new_tokens = self._prepare(prompt, params)
        started = time.perf_counter()
        first_token_ms: float | None = None
        tally = _Tally()
        buffer = StopBuffer(params.stop)
        with self._busy:
            self._check_open(llm)
            pieces = self._pieces(llm, tokens, params, max_new_tokens, tally)
            try:  # a consumer that goes away closes this generator: `pieces` closes and generation ends
                for delta in buffer.stream(pieces):
                    first_token_ms = first_token_ms if first_token_ms is not None else _ms(started)
                    yield delta
            finally:
                pieces.close()
        return Generation(
            text=buffer.text, tokens_in=len(tokens), tokens_out=tally.tokens_out,
            finish_reason="stop" if buffer.stopped else tally.finish_reason,
            timings={"load": load_ms, "first_token": first_token_ms or 0.0, "generate": _ms(started)},
        )

    def _check_open(self, llm) -> None:
        """The model may have been unloaded (evicted) between preparing and generating."""
        if self.llm is not llm:
            raise Unavailable("The model was unloaded before its generation started; try again.",
                              code="model_unloaded")


def _as_unavailable(run: Callable[[], Generation]) -> Callable[[], Generation]:
    """llama.cpp failing mid-generation (a decode error) is the backend's failure (503), not a 500."""

    def guarded() -> Generation:
        try:
            return run()
        except RuntimeError as exc:
            raise Unavailable(f"Generation failed: {exc}", code="generation_failed") from exc

    return guarded
