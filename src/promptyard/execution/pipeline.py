"""The execution pipeline: resolve -> render -> params -> cache -> load, context check -> queue -> generate -> record.

Failure policy (the same for `execute` and `execute_stream`): anything that fails *before* generation starts
(unknown model/prompt, bad params, input too long, queue full, a model that cannot load) raises its typed
error and records nothing. Once generation has started, the execution is always recorded and finished:
`failed` with the reason when the backend raises (then a 503, or the backend's own typed error), `cancelled`
with the partial output when a stream is closed early. A backend that generates on a thread of its own
(`start_generation`) starts before the `running` record is written, so that the two overlap; if writing the
record fails, that error is raised once the generation is over, with nothing recorded.

Cache policy: `cache=True` (default) uses the cache only for deterministic params (greedy, temperature 0, or a
fixed seed); `cache="always"` also caches sampled requests; `cache=False` neither reads nor writes it.
A cache hit is recorded as its own execution with `cache_hit` true and cost 0; it needs neither the model loaded
nor its tokenizer (the entry exists only because the same input passed the context check and generated).
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from flask import current_app

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import PromptyardError, Unavailable
from promptyard.execution.cache import CachedResponse, ResponseCache, cache_key, output_options
from promptyard.execution.checks import check_context, check_request, merge_params
from promptyard.execution.cost import execution_cost
from promptyard.execution.queue import ExecutionQueue, Ticket
from promptyard.execution.records import (
    FinishedRecord,
    Outcome,
    RunningRecord,
    finish_record,
    record_complete,
    start_record,
)
from promptyard.execution.request import ExecutionRequest  # noqa: F401 - callers import it from here too
from promptyard.execution.resolve import ResolvedPrompt, resolve_prompt
from promptyard.models.service import get_plugin, model_settings, plugin_spec
from promptyard.monitoring import metrics
from promptyard.plugins.base import Generation, GenerationParams, LLMPlugin, PromptInput, StreamResult

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled: the client went away before the generation finished"


@dataclass
class _Prepared:
    """Everything generation needs, as plain values (no ORM rows cross the queue or the generation)."""

    model_name: str
    pricing: dict[str, Any]
    prompt_input: PromptInput
    params: GenerationParams
    cache_key: str | None
    record: dict[str, Any]
    plugin_spec: dict[str, Any]
    plugin: LLMPlugin | None = None  # loaded by _load after a cache miss


def _load(prepared: _Prepared) -> _Prepared:
    """After a cache miss: the model's plugin, loaded, and the input checked against its context length."""
    prepared.plugin = get_plugin(prepared.model_name, prepared.plugin_spec)
    params = check_context(prepared.model_name, prepared.plugin, prepared.prompt_input, prepared.params)
    if params is not prepared.params:  # max_new_tokens cut to the context: record what generation really used
        prepared.params = params
        prepared.record["params"] = params.model_dump()
    return prepared


def get_cache() -> ResponseCache:
    return current_app.extensions["promptyard.execution.cache"]


def get_queue() -> ExecutionQueue:
    return current_app.extensions["promptyard.execution.queue"]


def execute(request: ExecutionRequest) -> FinishedRecord:
    """Run to completion and return the execution as recorded; typed errors for bad input, nothing half-written."""
    prepared = _prepare(request)
    hit = _cache_lookup(prepared)
    if hit is not None:
        return _record_hit(prepared, hit, stream=False)
    _load(prepared)
    # A read transaction must not stay open while this request waits for the model (commit only if it must wait).
    with get_queue().acquire(prepared.model_name, before_waiting=db.session.commit) as ticket:
        started = time.perf_counter()
        pending = _start_generation(prepared)
        running = _start_record_beside(pending, **prepared.record, queue_wait_ms=ticket.wait_ms, stream=False)
        if pending is None:  # the backend generates below, after the record
            started = time.perf_counter()
        try:
            generation = pending.result() if pending is not None else \
                prepared.plugin.generate(prepared.prompt_input, prepared.params)
            _check_generation(prepared.model_name, generation)
        except BaseException as exc:
            error = _as_error(prepared.model_name, exc)
            finish_record(running, Outcome("failed", error=error.message, finish_reason="error",
                                           latency_ms=_ms_since(started)))
            if isinstance(exc, Exception):
                raise error from exc
            raise
        latency_ms = _ms_since(started)
        row = finish_record(running, _success(prepared, generation, generation.text, latency_ms))
    _cache_store(prepared, generation.text, generation)
    return row


def _start_generation(prepared: _Prepared) -> Future[Generation] | None:
    """The backend's own non-blocking start, if it has one; an error here means nothing started (no record)."""
    try:
        return prepared.plugin.start_generation(prepared.prompt_input, prepared.params)
    except PromptyardError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend's failure is a 503, not a 500
        raise _as_error(prepared.model_name, exc) from exc


def _start_record_beside(pending: Future | None, **values: Any) -> RunningRecord:
    """The `running` record, written while a started generation runs (a backend with a generation thread of its own
    lets the two overlap). Should writing it fail, the generation is waited for, so that the queue slot is held as
    long as the model is busy, and the error is raised with nothing recorded."""
    try:
        return start_record(**values)
    except BaseException:
        if pending is not None:
            wait([pending])
        raise


def execute_stream(request: ExecutionRequest) -> ExecutionStream:
    """Yields {"delta": "..."} then {"execution": {...}}; a mid-stream failure ends with {"error", "execution"}.

    Bad input and a full queue raise before anything is yielded. Closing the stream early records the
    execution as `cancelled` with the partial output.
    """
    prepared = _prepare(request)
    hit = _cache_lookup(prepared)
    ticket = None
    if hit is None:
        _load(prepared)
        ticket = get_queue().acquire(prepared.model_name, before_waiting=db.session.commit)
    try:
        running = start_record(**prepared.record, queue_wait_ms=ticket.wait_ms if ticket else 0.0,
                               stream=True, cache_hit=hit is not None)
    except BaseException:
        if ticket is not None:
            ticket.release()
        raise

    def abandon() -> None:
        try:
            finish_record(running, Outcome("cancelled", error=CANCELLED_REASON, finish_reason="cancelled"))
        finally:
            if ticket is not None:
                ticket.release()

    body = _stream_body(prepared, running, hit, ticket)
    return ExecutionStream(body, running.id, abandon)


class ExecutionStream(Iterator[dict]):
    """The events of one streamed execution; close() before the end records it as cancelled."""

    def __init__(self, body: Iterator[dict], execution_id: int, abandon: Callable[[], None]) -> None:
        self._body = body
        self.execution_id = execution_id
        self._abandon = abandon
        self._started = False
        self._closed = False

    def __iter__(self) -> ExecutionStream:
        return self

    def __next__(self) -> dict:
        self._started = True
        return next(self._body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._started:  # the body never ran, so its own cleanup never will: do it here
            self._abandon()
        self._body.close()


def _stream_body(prepared: _Prepared, running: RunningRecord, hit: CachedResponse | None,
                 ticket: Ticket | None) -> Iterator[dict]:
    started = time.perf_counter()
    parts: list[str] = []
    result: StreamResult | None = None
    try:
        try:
            if hit is not None:
                deltas: Iterator[str] = iter(_replay_pieces(hit.output))
            else:
                result = StreamResult(prepared.plugin.stream(prepared.prompt_input, prepared.params))
                deltas = iter(result)
            for delta in deltas:
                if not isinstance(delta, str):
                    raise Unavailable(f"Model '{prepared.model_name}' streamed something that is not text.",
                                      code="backend_garbage")
                if not parts and hit is None:
                    metrics.observe_first_token(prepared.model_name, time.perf_counter() - started)
                parts.append(delta)
                yield {"delta": delta}
        except GeneratorExit:
            if result is not None:
                result.close()
            finish_record(running, Outcome("cancelled", output="".join(parts), error=CANCELLED_REASON,
                                           finish_reason="cancelled", latency_ms=_ms_since(started)))
            raise
        except Exception as exc:  # noqa: BLE001 - the status line is already sent: report it as an event
            error = _as_error(prepared.model_name, exc)
            row = finish_record(running, Outcome("failed", output="".join(parts), error=error.message,
                                                 finish_reason="error", latency_ms=_ms_since(started)))
            yield {"error": error.to_dict()["error"], "execution": execution_to_dict(row)}
            return
        text = "".join(parts)
        latency_ms = _ms_since(started)
        if hit is not None:
            outcome = _hit_outcome(hit, latency_ms)
        else:
            generation = result.generation or Generation(text=text)
            outcome = _success(prepared, generation, text, latency_ms)
        row = finish_record(running, outcome)
        if hit is None:
            _cache_store(prepared, text, result.generation or Generation(text=text))
        yield {"execution": execution_to_dict(row)}
    finally:
        if ticket is not None:
            ticket.release()


def execution_to_dict(row: Execution | FinishedRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "model": row.model_name,
        "plugin": row.plugin,
        "prompt": row.prompt_name,
        "version": row.version_number,
        "label": row.label,
        "experiment": row.experiment.name if row.experiment is not None else None,
        "experiment_id": row.experiment_id,
        "subject": row.subject,
        "params": dict(row.params or {}),
        "variables": dict(row.variables or {}),
        "rendered_input": row.rendered_input,
        "output": row.output,
        "error": row.error,
        "finish_reason": row.finish_reason,
        "cache_hit": row.cache_hit,
        "stream": row.stream,
        "source": row.source,
        "queue_wait_ms": row.queue_wait_ms,
        "latency_ms": row.latency_ms,
        "tokens_in": row.tokens_in,
        "tokens_out": row.tokens_out,
        "cost": row.cost,
        "created_at": _iso(row.created_at),
        "finished_at": _iso(row.finished_at),
    }


def _prepare(request: ExecutionRequest) -> _Prepared:
    check_request(request)
    model = model_settings(request.model)
    resolved: ResolvedPrompt | None = None
    if request.prompt is not None or request.experiment is not None:
        resolved = resolve_prompt(request.prompt, version=request.version, label=request.label,
                                  experiment=request.experiment, subject=request.subject,
                                  variables=request.variables)
        prompt_input: PromptInput = resolved.text
    else:
        prompt_input = request.input
    params = merge_params(model, resolved, request.params)
    normalised = params.model_dump()
    use_cache = request.cache is not False and (request.cache == "always" or params.is_deterministic())
    key = cache_key(plugin=model.plugin, source=model.source, revision=model.revision,
                    quantization=model.quantization, options=output_options(model.plugin, model.options),
                    rendered_input=prompt_input, params=normalised) \
        if use_cache else None
    record = {
        "model_name": model.name,
        "plugin": model.plugin,
        "params": normalised,
        "variables": dict(request.variables or {}),
        "rendered_input": prompt_input if isinstance(prompt_input, str) else json.dumps(prompt_input),
        "subject": request.subject,
        "source": request.source,
    }
    if resolved is not None:
        record.update(prompt_id=resolved.prompt_id, version_id=resolved.version_id,
                      prompt_name=resolved.prompt_name, version_number=resolved.version_number,
                      label=resolved.label, experiment_id=resolved.experiment_id)
    return _Prepared(model.name, dict(model.pricing or {}), prompt_input, params, key, record, plugin_spec(model))


def _cache_lookup(prepared: _Prepared) -> CachedResponse | None:
    if prepared.cache_key is None:
        return None
    try:
        # A hit's counter update stays in the session: it is committed with the hit's execution record.
        hit = get_cache().get(prepared.cache_key, commit=False)
    except Exception:  # noqa: BLE001 - the cache only saves time; when it is down, generate instead
        log.warning("response cache lookup failed", exc_info=True)
        db.session.rollback()
        return None
    metrics.observe_cache_lookup(hit is not None)
    if hit is None:
        # A miss wrote nothing, but on SQLite its UPDATE began a write transaction, which locks the database for
        # every other writer: end it now, not after the model has loaded.
        db.session.rollback()
    return hit


def _cache_store(prepared: _Prepared, text: str, generation: Generation) -> None:
    if prepared.cache_key is None:
        return
    response = CachedResponse(text, generation.finish_reason, generation.tokens_in, generation.tokens_out)
    try:
        get_cache().put(prepared.cache_key, prepared.model_name, prepared.record["params"], response)
    except Exception:  # noqa: BLE001
        log.warning("response cache store failed", exc_info=True)


def _record_hit(prepared: _Prepared, hit: CachedResponse, *, stream: bool) -> FinishedRecord:
    outcome = _hit_outcome(hit, 0.0)
    return record_complete(
        **prepared.record, status="succeeded", output=outcome.output, finish_reason=outcome.finish_reason,
        latency_ms=outcome.latency_ms, tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out, cost=0.0,
        cache_hit=True, stream=stream,
    )


def _hit_outcome(hit: CachedResponse, latency_ms: float) -> Outcome:
    return Outcome("succeeded", output=hit.output, finish_reason=hit.finish_reason, latency_ms=latency_ms,
                   tokens_in=hit.tokens_in, tokens_out=hit.tokens_out, cost=0.0)


def _success(prepared: _Prepared, generation: Generation, text: str, latency_ms: float) -> Outcome:
    generate_ms = float(generation.timings.get("generate", latency_ms))
    cost = execution_cost(prepared.pricing, generation.tokens_in, generation.tokens_out, generate_ms)
    return Outcome("succeeded", output=text, finish_reason=generation.finish_reason, latency_ms=latency_ms,
                   tokens_in=int(generation.tokens_in or 0), tokens_out=int(generation.tokens_out or 0), cost=cost)


def _check_generation(model_name: str, generation: Any) -> None:
    if not isinstance(generation, Generation) or not isinstance(generation.text, str):
        raise Unavailable(f"Model '{model_name}' returned something that is not a generation.",
                          code="backend_garbage")


def _as_error(model_name: str, exc: BaseException) -> PromptyardError:
    """The backend's own typed error, or a 503 saying what went wrong."""
    if isinstance(exc, PromptyardError):
        return exc
    if isinstance(exc, (GeneratorExit, KeyboardInterrupt, SystemExit)):
        return Unavailable(f"Generation on model '{model_name}' was interrupted.", code="generation_interrupted")
    return Unavailable(f"Model '{model_name}' failed: {exc.__class__.__name__}: {exc}", code="generation_failed",
                       details={"model": model_name})


def _replay_pieces(text: str) -> list[str]:
    """A cached output replayed as word-sized deltas, like a live stream."""
    return re.findall(r"\S+\s*|\s+", text) or ([text] if text else [])


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
