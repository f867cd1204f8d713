"""The OpenAI-compatible surface at /v1: models, chat completions and completions, streaming and not.

Every call runs through the execution pipeline (recorded with source "v1"). Errors keep promptyard's JSON shape,
whose `error.message` the openai client reads, with the status codes it maps to its exception classes.
The request mapping is documented in `promptyard.api.openai_shapes`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterator, Literal

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from promptyard.api import openai_shapes as shapes
from promptyard.api.sse import event_stream_response
from promptyard.errors import PromptyardError, Unprocessable
from promptyard.execution.pipeline import ExecutionRequest, execute, execute_stream, execution_to_dict
from promptyard.models import service as models
from promptyard.prompts import library

api = APIBlueprint("openai_compat", __name__, abp_tags=[Tag(name="openai-compatible")],
                   abp_security=[{"bearer": []}])


class _OpenAIFields(BaseModel):
    # Like OpenAI's API, fields of the wrong type ("64" for max_tokens, "yes" for stream) are refused, not
    # converted; fields promptyard does not use are accepted and ignored.
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_OpenAIFields):
    include_usage: bool = False


class SamplingFields(_OpenAIFields):
    """The OpenAI request fields promptyard honours; other OpenAI fields are accepted and ignored."""

    model: str = Field(min_length=1, max_length=300, description="A registered model or prompt:NAME@LABEL.")
    max_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(None, description="Up to 16 stop sequences.")
    n: int | None = Field(None, description="Must be 1.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=255, description="Recorded as the execution's subject.")
    cache: bool | Literal["always"] = Field(True, description="promptyard's response cache (send with extra_body).")


class ChatMessage(_OpenAIFields):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionBody(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)


class CompletionBody(SamplingFields):
    prompt: str | list[str] = Field(description="The text to complete (a list must hold exactly one).")


class ModelIdPath(BaseModel):
    model_id: str


@api.get("/v1/models")
def list_models():
    """Registered models, as OpenAI's model list."""
    return {"object": "list", "data": [_model_object(m) for m in models.list_models()]}


@api.get("/v1/models/<path:model_id>")
def retrieve_model(path: ModelIdPath):
    """One registered model, as an OpenAI model object."""
    return _model_object(models.model_to_dict(models.get_model(path.model_id)))


@api.post("/v1/chat/completions")
def chat_completions(body: ChatCompletionBody):
    """Chat completion on a registered model or a library prompt."""
    messages = shapes.chat_messages(body.messages)
    for message in messages:
        if message["role"] == "developer":  # OpenAI's newer name for the system role; chat templates know "system"
            message["role"] = "system"
    request = _execution_request(body, chat=messages, text=None)
    return _respond(body, request, "chat")


@api.post("/v1/completions")
def completions(body: CompletionBody):
    """Text completion on a registered model or a library prompt."""
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise Unprocessable("Send one prompt per request ('prompt' as a string or a one-item list).",
                                code="invalid_params", details={"param": "prompt"})
        text = body.prompt[0]
    else:
        text = body.prompt
    request = _execution_request(body, chat=None, text=text)
    return _respond(body, request, "text")


def _model_object(model: dict[str, Any]) -> dict[str, Any]:
    created = model.get("created_at")
    timestamp = int(datetime.fromisoformat(created).timestamp()) if created else 0
    return {"id": model["name"], "object": "model", "created": timestamp, "owned_by": model["plugin"],
            "promptyard": {"status": model["status"], "source": model["source"]}}


def _execution_request(body: SamplingFields, *, chat: list[dict[str, str]] | None, text: str | None):
    params = shapes.generation_params(body)
    target = shapes.parse_prompt_target(body.model)
    if target is None:
        return ExecutionRequest(model=body.model, input=chat if chat is not None else text, params=params,
                                subject=body.user, cache=body.cache, source="v1")
    version = library.resolve_version(target.name, target.version, target.label)
    variables = shapes.prompt_variables(shapes.last_user_text(chat) if chat is not None else text or "",
                                        version.variables)
    model = shapes.default_model(version.params, current_app.config.get("PROMPTYARD_DEFAULT_MODEL"), target.name)
    return ExecutionRequest(model=model, prompt=target.name, version=target.version, label=target.label,
                            variables=variables, params=params, subject=body.user, cache=body.cache, source="v1")


def _respond(body: SamplingFields, request, kind: str):
    if not body.stream:
        execution = execution_to_dict(execute(request))
        build = shapes.chat_completion if kind == "chat" else shapes.text_completion
        return build(body.model, execution)
    events = execute_stream(request)
    # Pull the first event here so that bad input (404, 422, 429, 503) is a proper status, not a broken stream.
    try:
        first = next(events)
    except StopIteration:
        first = None
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    maker = shapes.ChunkMaker(kind, body.model)
    return event_stream_response(_sse(events, first, maker, include_usage), events)


def _sse(events: Iterator[dict], first: dict | None, maker: shapes.ChunkMaker, include_usage: bool) -> Iterator[str]:
    """OpenAI's server-sent events: chunks, a closing chunk with finish_reason, optional usage, then [DONE]."""
    try:
        if maker.kind == "chat":
            yield _event(maker.opening())
        execution: dict[str, Any] = {}
        pending = [first] if first is not None else []
        for event in _chain(pending, events):
            if "delta" in event:
                if event["delta"]:
                    yield _event(maker.delta(event["delta"]))
            elif "execution" in event:
                execution = event["execution"]
        if execution.get("status") not in (None, "succeeded"):
            yield _event({"error": {"code": "generation_failed", "details": {"execution_id": execution.get("id")},
                                    "message": execution.get("error") or f"The generation {execution['status']}."}})
            return
        yield _event(maker.closing(execution))
        if include_usage:
            yield _event(maker.usage(execution))
        yield "data: [DONE]\n\n"
    except PromptyardError as exc:  # the stream has started: the status is sent, so the error travels as an event
        yield _event(exc.to_dict())
    finally:
        events.close()  # a client that went away leaves a "cancelled" execution with the partial output


def _chain(pending: list[dict], events: Iterator[dict]) -> Iterator[dict]:
    yield from pending
    yield from events


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
