"""Batched executions (evaluation runs): many requests, each answered `count` times, through one plugin batch call.

Every sample is its own execution, recorded like one from `pipeline.execute` (source, params, tokens, cost), and
the records are written together in one statement. Policy, as for single executions: a request that fails before
generation (bad input, input too long, a full queue) records nothing and comes back as its error; a sample whose
generation fails is recorded `failed` and comes back with its error; the others go on. Deterministic requests
(count 1, greedy or seeded, cache on) are answered from the response cache when they can be, and stored in it.
Single requests never come here: they keep `pipeline.execute`'s path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from promptyard.db import db, utcnow
from promptyard.errors import PromptyardError
from promptyard.execution.checks import check_context
from promptyard.execution.pipeline import (
    ExecutionRequest,
    _as_error,
    _cache_lookup,
    _cache_store,
    _check_generation,
    _hit_outcome,
    _Prepared,
    _prepare,
    _success,
    get_queue,
)
from promptyard.execution.records import FinishedRecord, Outcome, record_many
from promptyard.models.service import get_plugin
from promptyard.plugins.base import BatchItem


@dataclass
class SampleResult:
    """One sample: its execution record (None when it failed before generating) and its error, if it failed."""

    record: FinishedRecord | None
    error: PromptyardError | None = None


def _outcome_values(outcome: Outcome) -> dict:
    return dict(status=outcome.status, output=outcome.output, error=outcome.error,
                finish_reason=outcome.finish_reason, latency_ms=outcome.latency_ms, tokens_in=outcome.tokens_in,
                tokens_out=outcome.tokens_out, cost=outcome.cost, **outcome.extra)


def execute_batch(items: list[tuple[ExecutionRequest, int]]) -> list[list[SampleResult]]:
    """Per request, its `count` samples in order. All requests name the same model. Bad input raises (like
    `execute`), as does a model that cannot load; failures of single samples come back in their places."""
    prepared = [_prepare(request) for request, _ in items]
    if len({p.model_name for p in prepared}) > 1:
        raise ValueError("a batch runs on one model")
    results: list[list[SampleResult | None]] = [[None] * count for _, count in items]
    _answer_from_cache(prepared, items, results)
    misses = [index for index, samples in enumerate(results) if samples and samples[0] is None]
    if misses:
        _generate(prepared, items, misses, results)
    return results  # type: ignore[return-value]


def _answer_from_cache(prepared: list[_Prepared], items, results) -> None:
    hits, rows = [], []
    for index, prep in enumerate(prepared):
        if items[index][1] != 1:
            continue
        hit = _cache_lookup(prep)
        if hit is not None:
            hits.append(index)
            rows.append({**prep.record, **_outcome_values(_hit_outcome(hit, 0.0)), "cache_hit": True,
                         "stream": False})
    for index, record in zip(hits, record_many(rows)):
        results[index][0] = SampleResult(record)


def _generate(prepared: list[_Prepared], items, misses: list[int], results) -> None:
    model_name = prepared[misses[0]].model_name
    plugin = get_plugin(model_name, prepared[misses[0]].plugin_spec)
    ready = []
    for index in misses:
        prep = prepared[index]
        prep.plugin = plugin
        try:
            params = check_context(model_name, plugin, prep.prompt_input, prep.params)
        except PromptyardError as exc:
            results[index] = [SampleResult(None, exc)] * items[index][1]
            continue
        if params is not prep.params:  # max_new_tokens cut to the context: record what generation really used
            prep.params = params
            prep.record["params"] = params.model_dump()
        ready.append(index)
    if not ready:
        return
    batch = [BatchItem(prepared[i].prompt_input, prepared[i].params, items[i][1]) for i in ready]
    try:
        ticket = get_queue().acquire(model_name, before_waiting=db.session.commit)
    except PromptyardError as exc:  # the model's queue is full: nothing generated, nothing recorded
        for index in ready:
            results[index] = [SampleResult(None, exc)] * items[index][1]
        return
    with ticket:
        created_at = utcnow()
        started = time.perf_counter()
        try:
            outputs = plugin.generate_batch(batch)
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every sample says why
            error = _as_error(model_name, exc)
            outputs = [[error] * item.n for item in batch]
        latency_ms = (time.perf_counter() - started) * 1000
    rows, places = [], []
    for index, samples in zip(ready, outputs):
        prep = prepared[index]
        for sample, output in enumerate(samples):
            error = _as_error(model_name, output) if isinstance(output, BaseException) else None
            if error is None:
                try:
                    _check_generation(model_name, output)
                    outcome = _success(prep, output, output.text, latency_ms)
                except PromptyardError as exc:
                    error = exc
            if error is not None:
                outcome = Outcome("failed", error=error.message, finish_reason="error", latency_ms=latency_ms)
            rows.append({**prep.record, **_outcome_values(outcome), "cache_hit": False, "stream": False,
                         "queue_wait_ms": ticket.wait_ms, "created_at": created_at})
            places.append((index, sample, error, output))
    for record, (index, sample, error, output) in zip(record_many(rows), places):
        results[index][sample] = SampleResult(record, error)
        if error is None and items[index][1] == 1:
            _cache_store(prepared[index], output.text, output)
