"""The plugin interface. Plugins never import Flask or the database: prompt and params in, text and numbers out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Generator, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptyard.errors import Unprocessable

# A plain prompt string, or a chat: [{"role": "system"|"user"|"assistant", "content": "..."}].
PromptInput = Union[str, list[dict[str, str]]]

STATUSES = ("available", "not_downloaded", "loaded", "error")

# `download(progress=...)`: True/False for tqdm bars on the terminal, or a callback given (downloaded, total) bytes.
Progress = Union[bool, Callable[[int, Union[int, None]], None]]


class GenerationParams(BaseModel):
    """Generation parameters, with the transformers names; anything else is refused (422 naming it).

    Strict: a value of the wrong type ("64", true for a number, 1 for a boolean) is refused rather than converted;
    only a whole number stands for a float (temperature 0).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    max_new_tokens: int = Field(256, ge=1, le=32768, description="Most tokens to generate.")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Random seed for sampling.")
    stop: list[str] = Field(default_factory=list, max_length=16, description="Stop sequences (not included).")

    def is_deterministic(self) -> bool:
        """Greedy decoding, or sampling with a fixed seed, gives the same text each time."""
        return not self.do_sample or self.temperature == 0 or self.seed is not None


def generation_fields(params: dict[str, Any] | None) -> dict[str, Any]:
    """The generation params among stored settings (a version may keep others, a default model say)."""
    return {name: value for name, value in (params or {}).items() if name in GenerationParams.model_fields}


def validate_params(params: dict[str, Any], *, strict: bool = True) -> GenerationParams:
    """GenerationParams from a dict, or a 422 naming each bad param; strict=False converts what it can ("64")."""
    try:
        return GenerationParams.model_validate(params, strict=strict)
    except ValidationError as exc:
        problems = [
            {"param": ".".join(str(p) for p in err["loc"]) or "params",
             "problem": "is not a known parameter" if err["type"] == "extra_forbidden" else err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        sentence = "; ".join(f"'{p['param']}' {p['problem']}" for p in problems)
        raise Unprocessable(f"Invalid generation parameters: {sentence}.", code="invalid_params",
                            details={"errors": problems, "param": problems[0]["param"]}) from exc


def check_prompt(prompt: object) -> None:
    """A prompt is text, or a chat: a non-empty list of {"role": str, "content": str} objects (422 otherwise)."""
    if isinstance(prompt, str):
        return
    if not isinstance(prompt, list):
        raise Unprocessable("The prompt must be text or a list of chat messages.", code="invalid_prompt",
                            details={"field": "prompt"})
    if not prompt:
        raise Unprocessable("A chat prompt must be a non-empty list of messages.", code="invalid_messages",
                            details={"field": "prompt"})
    for index, message in enumerate(prompt):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise Unprocessable(
                f"Message {index} must be an object with a string 'role' and a string 'content'.",
                code="invalid_messages", details={"field": f"prompt.{index}", "index": index},
            )


@dataclass
class Generation:
    """What one generation produced."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: Literal["stop", "length", "cancelled", "error"] | str = "stop"
    # Milliseconds: "load" (model load inside this call), "first_token", "generate" (whole generation).
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchItem:
    """One prompt of a batch, to be answered `n` times (n samples) with the same params."""

    prompt: PromptInput
    params: GenerationParams
    n: int = 1


def sample_params(params: GenerationParams, sample: int) -> GenerationParams:
    """The params of sample `sample` of an item: with a fixed seed, sample j uses seed + j, so that the n samples
    differ (one seed for all would make them identical) and a run stays reproducible."""
    if sample == 0 or params.seed is None:
        return params
    return params.model_copy(update={"seed": (params.seed + sample) % 2**32})


# Per item, its n samples in order: each a Generation, or the exception that sample ended with.
BatchResult = list[list[Union[Generation, Exception]]]


class AgentTool(ABC):
    """Anything an agent can call: a name, a description, a JSON-schema input and execute()."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "tool"
    input_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    @abstractmethod
    def execute(self, **kwargs: Any) -> dict[str, Any]:
        """Run the tool on validated input; returns a JSON-able dict."""


class LLMPlugin(AgentTool):
    """A model backend. One instance serves one registered model (its `source`)."""

    kind: ClassVar[str] = "llm"
    # Options that change how the model is reached, never what it answers (timeouts, retries, where files are
    # cached): the response cache leaves them out of its key, so models differing only in them share entries.
    operational_options: ClassVar[frozenset[str]] = frozenset()
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "prompt": {
                "description": "A prompt string or a list of chat messages.",
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object", "properties": {
                        "role": {"type": "string"}, "content": {"type": "string"}}}},
                ],
            },
            "params": GenerationParams.model_json_schema(),
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }

    def __init__(
        self,
        source: str,
        *,
        revision: str | None = None,
        quantization: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.revision = revision
        self.quantization = quantization
        self.options = dict(options or {})

    @abstractmethod
    def generate(self, prompt: PromptInput, params: GenerationParams) -> Generation:
        """Generate the whole completion."""

    @abstractmethod
    def stream(self, prompt: PromptInput, params: GenerationParams) -> Generator[str, None, Generation]:
        """Yield text deltas as they are produced; the generator returns the final Generation."""

    def start_generation(self, prompt: PromptInput, params: GenerationParams) -> Future[Generation] | None:
        """Start generate() without waiting for it, when the backend generates on a thread of its own: the pipeline
        writes the execution's `running` record meanwhile. None (the default): the caller calls generate()."""
        return None

    def generate_batch(self, items: list[BatchItem]) -> BatchResult:
        """Answer many prompts, each `item.n` times, as fast as the backend allows (batches, requests in flight).

        A sample that fails is its exception in place; the others go on. The default asks generate() one sample at
        a time: correct for any backend, fast for none. Backends that can batch override it."""
        results: BatchResult = []
        for item in items:
            samples: list[Union[Generation, Exception]] = []
            for sample in range(item.n):
                try:
                    samples.append(self.generate(item.prompt, sample_params(item.params, sample)))
                except Exception as exc:  # noqa: BLE001 - one failed sample must not lose the others
                    samples.append(exc)
            results.append(samples)
        return results

    def load(self) -> None:
        """Make the model ready (download nothing: a missing model is an error)."""

    def unload(self) -> None:
        """Free what load() took."""

    def status(self) -> str:
        """One of STATUSES."""
        return "available"

    def context_length(self) -> int | None:
        """Most tokens the model reads (input and output together unless output_shares_context is False), when
        known."""
        return None

    def count_tokens(self, prompt: PromptInput) -> int | None:
        """Tokens the prompt takes, when the plugin can tell without generating."""
        return None

    def output_shares_context(self) -> bool:
        """Whether input and output share context_length (causal models), or it bounds the input alone (an
        encoder-decoder's encoder)."""
        return True

    def memory_bytes(self) -> int:
        """Memory the loaded model holds (the ModelManager's budget counts it); 0 when nothing is loaded."""
        return 0

    def estimated_memory_bytes(self) -> int:
        """Memory load() is expected to take, worked out without loading (the ModelManager makes room for it
        beforehand); 0 when unknown or when the model holds nothing here."""
        return 0

    def download(self, progress: Progress = True) -> str | None:
        """Fetch what load() needs (weights); plugins with nothing to fetch do nothing and return None."""
        return None

    def execute(self, **kwargs: Any) -> dict[str, Any]:
        """generate() as a tool. The input is checked as input_schema says (`prompt` required, `params` an object of
        generation params, nothing else), each problem a 422 naming its field; returns the Generation as a dict."""
        unknown = sorted(set(kwargs) - set(self.input_schema["properties"]))
        if unknown:
            raise Unprocessable(f"'{unknown[0]}' is not an input of this tool: it takes 'prompt' and 'params'.",
                                code="invalid_input", details={"field": unknown[0]})
        if "prompt" not in kwargs:
            raise Unprocessable("'prompt' is required: text or a list of chat messages.", code="invalid_input",
                                details={"field": "prompt"})
        check_prompt(kwargs["prompt"])
        params = kwargs.get("params", {})
        if not isinstance(params, dict):
            raise Unprocessable("'params' must be an object of generation params.", code="invalid_params",
                                details={"param": "params"})
        return self.generate(kwargs["prompt"], validate_params(params)).to_dict()


class StreamResult:
    """Iterate a plugin's stream() and keep the Generation it returns at the end."""

    def __init__(self, stream: Generator[str, None, Generation]) -> None:
        self._stream = stream
        self.generation: Generation | None = None
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                delta = next(self._stream)
                self.text += delta
                yield delta
        except StopIteration as stop:
            self.generation = stop.value or Generation(text=self.text)

    def close(self) -> None:
        """Stop generation early (a client went away); the plugin's generator sees GeneratorExit."""
        self._stream.close()
