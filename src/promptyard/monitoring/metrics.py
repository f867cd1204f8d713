"""Every Prometheus metric promptyard exports, with small hooks the services call; no Flask here.

Under several worker processes (gunicorn) set PROMETHEUS_MULTIPROC_DIR before this module is imported: each
process then writes its values to files there and `render()` sums them (gauges by their multiprocess_mode).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds: from a cached read (~ms) to a long CPU generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter("promptyard_http_requests_total", "HTTP requests answered, by route and status.",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("promptyard_http_request_duration_seconds",
                         "Time to answer an HTTP request (to the first byte of a streamed one).",
                         ["method", "route"], buckets=LATENCY_BUCKETS)
EXECUTIONS = Counter("promptyard_executions_total", "Finished executions, by model, status and cache hit.",
                     ["model", "status", "cache_hit", "source"])
TOKENS = Counter("promptyard_tokens_total", "Tokens read (in) and generated (out), by model.",
                 ["model", "direction"])
GENERATION_LATENCY = Histogram("promptyard_generation_duration_seconds",
                               "Generation time of executions that were not cache hits.", ["model"],
                               buckets=LATENCY_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("promptyard_time_to_first_token_seconds",
                                "Time from the start of a streamed generation to its first text.", ["model"],
                                buckets=LATENCY_BUCKETS)
QUEUE_WAITING = Gauge("promptyard_queue_waiting", "Requests waiting for a generation slot, by model.", ["model"],
                      multiprocess_mode="livesum")
QUEUE_RUNNING = Gauge("promptyard_queue_running", "Generations holding a slot, by model.", ["model"],
                      multiprocess_mode="livesum")
QUEUE_REJECTIONS = Counter("promptyard_queue_rejections_total", "Requests refused with 429 because the queue was full.",
                           ["model"])
CACHE_LOOKUPS = Counter("promptyard_cache_lookups_total", "Response cache lookups, by result (hit or miss).",
                        ["result"])
CACHE_ENTRIES = Gauge("promptyard_cache_entries", "Entries in the response cache (read at scrape time).",
                      multiprocess_mode="mostrecent")
MODEL_LOADS = Counter("promptyard_model_loads_total", "Model loads, by model and outcome.", ["model", "outcome"])
MODEL_LOAD_DURATION = Histogram("promptyard_model_load_duration_seconds", "Time to load a model.", ["model"],
                                buckets=LATENCY_BUCKETS)
MODEL_MEMORY = Gauge("promptyard_model_memory_bytes", "Memory held by a loaded model (0 once unloaded).", ["model"],
                     multiprocess_mode="livesum")
EVAL_SAMPLES = Counter("promptyard_eval_samples_total", "Evaluation samples executed, by verdict.", ["verdict"])
TRAINING_STEPS = Counter("promptyard_training_steps_total", "Optimiser steps taken by training jobs, by model.",
                         ["model"])


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def observe_execution(values: dict[str, Any]) -> None:
    """One finished execution, from the values its record was written with."""
    model, cache_hit = values.get("model_name") or "unknown", bool(values.get("cache_hit"))
    EXECUTIONS.labels(model, values.get("status") or "unknown", str(cache_hit).lower(),
                      values.get("source") or "unknown").inc()
    TOKENS.labels(model, "in").inc(int(values.get("tokens_in") or 0))
    TOKENS.labels(model, "out").inc(int(values.get("tokens_out") or 0))
    if not cache_hit and values.get("status") == "succeeded" and values.get("latency_ms") is not None:
        GENERATION_LATENCY.labels(model).observe(float(values["latency_ms"]) / 1000)


def observe_first_token(model: str, seconds: float) -> None:
    TIME_TO_FIRST_TOKEN.labels(model).observe(seconds)


def observe_cache_lookup(hit: bool) -> None:
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()


def observe_model_load(model: str, seconds: float, memory_bytes: int | None, ok: bool) -> None:
    MODEL_LOADS.labels(model, "loaded" if ok else "failed").inc()
    if ok:
        MODEL_LOAD_DURATION.labels(model).observe(seconds)
        MODEL_MEMORY.labels(model).set(int(memory_bytes or 0))


def observe_model_unload(model: str) -> None:
    MODEL_MEMORY.labels(model).set(0)


def observe_eval_sample(verdict: str) -> None:
    EVAL_SAMPLES.labels(verdict or "unknown").inc()


def training_step(model: str, steps: int = 1) -> None:
    """For training jobs: count `steps` optimiser steps on `model`."""
    TRAINING_STEPS.labels(model).inc(steps)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def render(before: Callable[[], None] | None = None) -> tuple[bytes, str]:
    """The exposition text and its content type; `before` refreshes scrape-time gauges first."""
    if before is not None:
        before()
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Gunicorn's child_exit hook: drop a dead worker's live gauges (its counters stay counted)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
