"""Translation between OpenAI's request/response shapes and promptyard's execution requests and records.

How an OpenAI request maps onto promptyard (documented in README, "OpenAI-compatible API"):

- `model` is a registered model's name, or `prompt:NAME`, `prompt:NAME@LABEL`, `prompt:NAME@vN` to run a library
  prompt (latest version, a label, or version N) on that prompt's default model. The default model is the `model`
  key of the prompt version's params (the pipeline strips it before generation), else the app's
  `PROMPTYARD_DEFAULT_MODEL`; with neither, the request is refused (422).
- For a prompt, the request supplies the variables: the last user message (chat) or the `prompt` text (completions)
  is either a JSON object of variables, or, when the version declares exactly one variable, that variable's value.
- For a model, chat `messages` go to the model as a chat (its chat template applies); completion `prompt` as text.
- Params: `max_tokens`/`max_completion_tokens` -> `max_new_tokens`; `temperature` (0 means greedy, above 0 samples),
  `top_p`, `seed`, `stop` (a string or a list); `n` must be 1. Params left out come from the prompt version and the
  model's defaults, which are greedy unless configured otherwise.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from promptyard.errors import Unprocessable

PROMPT_PREFIX = "prompt:"
PROMPT_TARGET = re.compile(r"^prompt:(?P<name>[a-z0-9][a-z0-9._-]{0,99})(?:@(?P<ref>[A-Za-z0-9._-]{1,100}))?$")
VERSION_REF = re.compile(r"^v(?P<number>[0-9]{1,9})$")
FINISH_REASONS = {"length": "length"}  # everything else (stop, stop sequence, eos) is OpenAI's "stop"


@dataclass
class PromptTarget:
    """`prompt:NAME@LABEL` or `prompt:NAME@vN` parsed."""

    name: str
    version: int | None = None
    label: str | None = None


def parse_prompt_target(model: str) -> PromptTarget | None:
    """The prompt a `model` string names, or None when it names a registered model."""
    if not model.startswith(PROMPT_PREFIX):
        return None
    match = PROMPT_TARGET.match(model)
    if match is None:
        raise Unprocessable(
            f"'{model}' is not a valid prompt reference: use 'prompt:NAME', 'prompt:NAME@LABEL' or 'prompt:NAME@vN'.",
            code="invalid_model", details={"param": "model"},
        )
    ref = match.group("ref")
    version = VERSION_REF.match(ref) if ref else None
    if version:
        return PromptTarget(match.group("name"), version=int(version.group("number")))
    return PromptTarget(match.group("name"), label=ref)


def generation_params(body: Any) -> dict[str, Any]:
    """Promptyard params from an OpenAI request body; only the fields the client sent."""
    if body.n is not None and body.n != 1:
        raise Unprocessable("Only n=1 is supported: ask for one choice per request.", code="invalid_params",
                            details={"param": "n"})
    params: dict[str, Any] = {}
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    if body.temperature is not None:
        params["temperature"] = body.temperature
        params["do_sample"] = body.temperature > 0
    if body.top_p is not None:
        params["top_p"] = body.top_p
    if body.seed is not None:
        params["seed"] = body.seed
    if body.stop is not None:
        params["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    return params


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


def chat_messages(messages: list[Any]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": message_text(m.content)} for m in messages]


def last_user_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    raise Unprocessable("Running a prompt needs a user message carrying its variables.", code="missing_variables",
                        details={"param": "messages"})


def prompt_variables(text: str, declared: list[dict[str, Any]]) -> dict[str, Any]:
    """Variables from the request text: a JSON object of them, or the value of a prompt's single variable."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    names = [v["name"] for v in declared or [] if isinstance(v, dict) and "name" in v]
    if len(names) == 1:
        return {names[0]: text}
    if not names:
        return {}
    raise Unprocessable(
        f"This prompt takes {len(names)} variables ({', '.join(names)}): send them as a JSON object in the last "
        "user message (chat) or as the prompt text (completions).",
        code="missing_variables", details={"param": "messages", "variables": names},
    )


def default_model(version_params: dict[str, Any], fallback: str | None, prompt_name: str) -> str:
    """A prompt's default model: its version's `model` param, else the configured default."""
    model = (version_params or {}).get("model") or fallback
    if not model:
        raise Unprocessable(
            f"Prompt '{prompt_name}' has no default model: add a 'model' key to its version params "
            "or set PROMPTYARD_DEFAULT_MODEL.",
            code="no_default_model", details={"param": "model"},
        )
    return str(model)


def completion_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def finish_reason(execution: dict[str, Any]) -> str:
    return FINISH_REASONS.get(execution.get("finish_reason") or "", "stop")


def usage(execution: dict[str, Any]) -> dict[str, int]:
    tokens_in, tokens_out = int(execution.get("tokens_in") or 0), int(execution.get("tokens_out") or 0)
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


def extra(execution: dict[str, Any]) -> dict[str, Any]:
    """Promptyard's own fields, which the openai client keeps as extras: the execution to look up or rate."""
    return {"execution_id": execution.get("id"), "cache_hit": execution.get("cache_hit"),
            "latency_ms": execution.get("latency_ms"), "cost": execution.get("cost")}


def chat_completion(model: str, execution: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id("chat"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": execution.get("output", "")},
            "finish_reason": finish_reason(execution),
            "logprobs": None,
        }],
        "usage": usage(execution),
        "promptyard": extra(execution),
    }


def text_completion(model: str, execution: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id("text"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": execution.get("output", ""), "finish_reason": finish_reason(execution),
                     "logprobs": None}],
        "usage": usage(execution),
        "promptyard": extra(execution),
    }


class ChunkMaker:
    """Builds the SSE chunks of one streamed completion; every chunk shares one id and `created`."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind
        self.model = model
        self.id = completion_id(kind)
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices,
                **more}

    def _choice(self, text: str | None, reason: str | None, *, first: bool = False) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {} if text is None else {"content": text}
            if first:
                delta = {"role": "assistant", "content": text or ""}
            return {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}

    def opening(self) -> dict[str, Any]:
        """Chat streams start by naming the role, as OpenAI's do."""
        return self._chunk([self._choice("", None, first=True)])

    def delta(self, text: str) -> dict[str, Any]:
        return self._chunk([self._choice(text, None)])

    def closing(self, execution: dict[str, Any]) -> dict[str, Any]:
        return self._chunk([self._choice(None, finish_reason(execution))], promptyard=extra(execution))

    def usage(self, execution: dict[str, Any]) -> dict[str, Any]:
        """The extra chunk sent when the client asked for stream_options.include_usage."""
        return self._chunk([], usage=usage(execution))
