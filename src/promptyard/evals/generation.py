"""Generating a run's samples: in batches through the execution pipeline (or one at a time through a configured
generator), transient failures retried with backoff, a sample that still fails recorded as a generation failure,
and the run stopped (resumable) when the backend looks down for good.

Transient: a 429 (rate limited, or the model's queue full; its Retry-After is honoured) or a 503 (timeout,
connection refused, a server error, a bad response). A sample failing otherwise (its input too long: a 422) is
recorded as a generation failure at once. Several transient failures in a row after retries mean the backend is
down: the run fails with what it has saved, and resuming it generates only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Union

from flask import current_app

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.models import PromptVersion
from promptyard.errors import PromptyardError, TooManyRequests, Unavailable
from promptyard.evals import prompting
from promptyard.evals.datasets import Task
from promptyard.execution.batch import execute_batch
from promptyard.execution.pipeline import ExecutionRequest, execute

# The verdict of a sample the model never answered: it counts as not passed and is not executed.
GENERATION_FAILED = "generation_failed"
SETTINGS = {
    "PROMPTYARD_EVAL_BATCH_SIZE": 64,  # samples generated (and recorded) together
    "PROMPTYARD_EVAL_RETRIES": 3,  # further attempts at a sample after a transient failure
    "PROMPTYARD_EVAL_RETRY_BACKOFF": 2.0,  # seconds before the first retry; doubles each time
    "PROMPTYARD_EVAL_MAX_RETRY_WAIT": 60.0,  # the longest wait before a retry, Retry-After included
    "PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW": 5,  # transient failures in a row (after retries) that stop the run
}

# (run, task, sample index) -> (raw model output, execution id or None)
Generator = Callable[[EvalRun, Task, int], "tuple[str, int | None]"]
Progress = Callable[[str, int, int], None]


@dataclass
class Failed:
    """A sample the model did not answer, and the failed execution recording it (if one was written)."""

    error: PromptyardError
    execution_id: int | None = None


Answer = Union["tuple[str, int | None]", Failed]


class BackendDown(Unavailable):
    """Generation kept failing: the run stops, resumable."""


def transient(error: PromptyardError) -> bool:
    return error.status in (429, 503)


def build_request(run: EvalRun, task: Task) -> ExecutionRequest:
    """The execution a sample of `task` is: the run's model, prompt version (or the task's own input) and params."""
    return ExecutionRequest(
        model=run.model_name,
        prompt=run.prompt_name,
        # The version resolved when the run was created, even when it was named by a label: a label moved
        # mid-run must not mix two versions into one run's pass rate.
        version=run.version_number if run.prompt_name else None,
        variables=task_variables(db.session.get(PromptVersion, run.version_id), task) if run.prompt_name else {},
        input=None if run.prompt_name else prompting.model_input(task, run.mode),
        params=dict(run.params or {}),
        # With n > 1 the samples must differ, so only a single-sample run may be served from the cache.
        cache=run.n == 1,
        source="eval",
    )


def task_variables(version: PromptVersion | None, task: Task) -> dict:
    """The task's fields the prompt version declares (templates refuse undeclared variables)."""
    offered = prompting.template_variables(task)
    declared = {spec.get("name") for spec in (version.variables or [])} if version is not None else set(offered)
    return {name: value for name, value in offered.items() if name in declared}


def pipeline_generate(run: EvalRun, task: Task, index: int) -> tuple[str, int | None]:
    """One sample through the execution pipeline's single-request path, recorded and cached like any other."""
    row = execute(build_request(run, task))
    return row.output or "", row.id


def _one_at_a_time(generate: Generator, run: EvalRun, samples: list[tuple[Task, int]]) -> list[Answer]:
    answers: list[Answer] = []
    for task, index in samples:
        try:
            answers.append(generate(run, task, index))
        except PromptyardError as exc:  # anything else is a bug, and fails the run
            answers.append(Failed(exc))
    return answers


def _batched(run: EvalRun, samples: list[tuple[Task, int]]) -> list[Answer]:
    """The samples, grouped by task, through one batched execution."""
    counts: dict[str, int] = {}
    tasks: dict[str, Task] = {}
    for task, _ in samples:
        counts[task.task_id] = counts.get(task.task_id, 0) + 1
        tasks[task.task_id] = task
    results = execute_batch([(build_request(run, tasks[tid]), count) for tid, count in counts.items()])
    by_task = {tid: iter(samples_of) for tid, samples_of in zip(counts, results)}
    answers: list[Answer] = []
    for task, _ in samples:
        result = next(by_task[task.task_id])
        record_id = result.record.id if result.record is not None else None
        answers.append(Failed(result.error, record_id) if result.error is not None
                       else (result.record.output or "", record_id))
    return answers


def _setting(name: str) -> float:
    value = current_app.config.get(name)
    return SETTINGS[name] if value is None else value


def _retry_delay(attempt: int, errors: list[PromptyardError]) -> float:
    delay = _setting("PROMPTYARD_EVAL_RETRY_BACKOFF") * 2 ** attempt
    waits = [e.retry_after for e in errors if isinstance(e, TooManyRequests)]
    return min(_setting("PROMPTYARD_EVAL_MAX_RETRY_WAIT"), max([delay, *waits]))


def _with_retries(attempt: Callable[[list], list[Answer]], samples: list) -> list[Answer]:
    answers = attempt(samples)
    for retry in range(int(_setting("PROMPTYARD_EVAL_RETRIES"))):
        again = [i for i, a in enumerate(answers) if isinstance(a, Failed) and transient(a.error)]
        if not again:
            break
        time.sleep(_retry_delay(retry, [answers[i].error for i in again]))
        for i, answer in zip(again, attempt([samples[i] for i in again])):
            answers[i] = answer
    return answers


def failed_sample(run: EvalRun, task: Task, index: int, failed: Failed) -> EvalSample:
    return EvalSample(run_id=run.id, task_id=task.task_id, sample_index=index, execution_id=failed.execution_id,
                      raw_output="", completion="", passed=False, verdict=GENERATION_FAILED,
                      result=f"generation failed: {failed.error.message}")


def generate_missing(run: EvalRun, tasks: list[Task], have: set[tuple[str, int]], on_progress: Progress) -> None:
    """Generate and save every sample not in `have`, a batch at a time (each batch committed, so a crash or a
    stop loses at most the batch in flight)."""
    custom: Generator | None = current_app.config.get("PROMPTYARD_EVAL_GENERATE")
    missing = [(task, index) for task in tasks for index in range(run.n) if (task.task_id, index) not in have]
    generated = run.progress_total - len(missing)
    on_progress("generating", generated, run.progress_total)
    # A configured generator answers one sample at a time (and its samples are saved one at a time).
    size = 1 if custom else max(1, int(_setting("PROMPTYARD_EVAL_BATCH_SIZE")))
    in_a_row, limit = 0, max(1, int(_setting("PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW")))
    for start in range(0, len(missing), size):
        chunk = missing[start:start + size]
        answers = _with_retries(lambda part: _one_at_a_time(custom, run, part) if custom else _batched(run, part),
                                chunk)
        for (task, index), answer in zip(chunk, answers):
            if isinstance(answer, Failed):
                in_a_row += transient(answer.error)
                if in_a_row >= limit:
                    db.session.commit()
                    raise BackendDown(
                        f"Generation failed {in_a_row} times in a row, the last on {task.task_id}: "
                        f"{answer.error.message} The run kept what it generated; resume it once the model is back.",
                        code="backend_down")
                db.session.add(failed_sample(run, task, index, answer))
            else:
                in_a_row = 0
                raw, execution_id = answer
                db.session.add(EvalSample(run_id=run.id, task_id=task.task_id, sample_index=index,
                                          execution_id=execution_id, raw_output=raw,
                                          completion=prompting.code_to_run(task, raw, run.mode)))
        db.session.commit()
        generated += len(chunk)
        on_progress("generating", generated, run.progress_total)
