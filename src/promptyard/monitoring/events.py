"""Domain events: each updates its metrics and writes one structured log line. The services call these hooks."""

from __future__ import annotations

import logging
from typing import Any

from promptyard.monitoring import metrics

executions_log = logging.getLogger("promptyard.executions")
evals_log = logging.getLogger("promptyard.evals")
training_log = logging.getLogger("promptyard.training")


def _request_id() -> str | None:
    try:
        from flask import g, has_request_context

        return g.get("request_id") if has_request_context() else None
    except ImportError:  # pragma: no cover - Flask is a core dependency
        return None


def execution_finished(values: dict[str, Any]) -> None:
    """A finished execution record (its id and columns)."""
    metrics.observe_execution(values)
    executions_log.info("execution %s %s", values.get("id"), values.get("status"), extra={
        "event": "execution_finished", "request_id": _request_id(), "execution_id": values.get("id"),
        "model": values.get("model_name"), "status": values.get("status"), "cache_hit": bool(values.get("cache_hit")),
        "source": values.get("source"), "latency_ms": values.get("latency_ms"),
        "tokens_in": values.get("tokens_in"), "tokens_out": values.get("tokens_out"),
    })


def eval_sample_scored(run_id: int, task_id: str, sample_index: int, verdict: str) -> None:
    metrics.observe_eval_sample(verdict)
    evals_log.info("eval run %s sample %s/%s %s", run_id, task_id, sample_index, verdict, extra={
        "event": "eval_sample_scored", "run_id": run_id, "task_id": task_id, "sample_index": sample_index,
        "verdict": verdict,
    })


def eval_run_finished(run_id: int, status: str, error: str | None = None) -> None:
    evals_log.info("eval run %s %s", run_id, status, extra={
        "event": "eval_run_finished", "run_id": run_id, "status": status, "error": error,
    })


def training_step(model: str, step: int | None = None, loss: float | None = None, steps: int = 1) -> None:
    """For training jobs: count optimiser steps and log where the job is."""
    metrics.training_step(model, steps)
    training_log.info("training %s step %s", model, step, extra={
        "event": "training_step", "model": model, "step": step, "loss": loss,
    })
