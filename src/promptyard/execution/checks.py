"""Checks on an execution request before anything runs: its shape, its params and the model's context."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from promptyard.db.models import ModelConfig
from promptyard.errors import Unprocessable
from promptyard.execution.request import ExecutionRequest
from promptyard.execution.resolve import ResolvedPrompt
from promptyard.plugins.base import GenerationParams, LLMPlugin, PromptInput, generation_fields, validate_params
from promptyard.plugins.textgen import fit_to_context


CHAT_ROLES = ("system", "user", "assistant", "tool")
SOURCES = ("api", "v1", "eval", "cli", "ui")


def check_request(request: ExecutionRequest) -> None:
    has_prompt = request.prompt is not None or request.experiment is not None
    if has_prompt == (request.input is not None):
        raise Unprocessable("Give either a library 'prompt' (or 'experiment') or a raw 'input', not both or neither.",
                            code="prompt_or_input", details={"field": "input"})
    if request.input is not None:
        check_input(request.input)
    if not isinstance(request.variables, dict):
        raise Unprocessable("'variables' must be an object.", code="invalid_variables", details={"field": "variables"})
    if not isinstance(request.params, dict):
        raise Unprocessable("'params' must be an object.", code="invalid_params", details={"param": "params"})
    if not (request.cache is True or request.cache is False or request.cache == "always"):
        raise Unprocessable("'cache' must be true, false or \"always\".", code="invalid_cache",
                            details={"field": "cache"})
    if request.source not in SOURCES:
        raise Unprocessable(f"Unknown source '{request.source}'.", code="invalid_source")


def check_input(value: Any) -> None:
    if isinstance(value, str):
        if not value:
            raise Unprocessable("'input' is empty.", code="empty_input", details={"field": "input"})
        return
    if not isinstance(value, list) or not value:
        raise Unprocessable("'input' must be text or a non-empty list of chat messages.", code="invalid_input",
                            details={"field": "input"})
    for index, message in enumerate(value):
        if not (isinstance(message, dict) and message.get("role") in CHAT_ROLES
                and isinstance(message.get("content"), str)):
            raise Unprocessable(
                f"Chat message {index} needs a 'role' ({', '.join(CHAT_ROLES)}) and a text 'content'.",
                code="invalid_input", details={"field": f"input.{index}"},
            )


def merge_params(model: ModelConfig | Row, resolved: ResolvedPrompt | None, requested: dict[str, Any]) -> GenerationParams:
    """Model defaults < prompt version params < request params; the request's are checked strictly (422).

    A request's `temperature` implies `do_sample` (see `with_implied_sampling`); stored defaults keep their own
    `do_sample` (a starter prompt's low temperature stays greedy unless it says `do_sample: true`).

    Stored defaults are checked strictly when saved; rows saved before that may hold convertible text ("64"),
    which is converted here rather than making every run on them fail.
    """
    stored = generation_fields(model.params)
    if resolved is not None:
        stored.update(generation_fields(resolved.params))
    merged = validate_params(stored, strict=False).model_dump(include=set(stored))
    merged.update(with_implied_sampling(requested))
    return validate_params(merged)


def with_implied_sampling(params: dict[str, Any]) -> dict[str, Any]:
    """A requested `temperature > 0` means sampling (and 0 greedy) on every surface, as on /v1 and in the UI: params
    that set `temperature` without `do_sample` get `do_sample` from it. An explicit `do_sample` wins."""
    temperature = params.get("temperature")
    if "do_sample" in params or isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        return params  # a bad temperature is left for validation to name
    return {**params, "do_sample": temperature > 0}


def check_context(model_name: str, plugin: LLMPlugin, prompt_input: PromptInput,
                  params: GenerationParams) -> GenerationParams:
    """The params, with max_new_tokens cut to what the model's context leaves after the input (the same object when
    nothing is cut); a 422 when the input alone is longer than the model reads (see `fit_to_context`)."""
    limit = plugin.context_length()
    if not limit:
        return params
    tokens = plugin.count_tokens(prompt_input)
    if tokens is None:
        return params
    fitted = fit_to_context(model_name, tokens, params.max_new_tokens, limit,
                            output_shares_context=plugin.output_shares_context())
    return params if fitted == params.max_new_tokens else params.model_copy(update={"max_new_tokens": fitted})
