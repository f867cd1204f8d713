"""Generating a run's samples: in batches through the execution pipeline (or one at a time through a configured
generator), transient failures retried with backoff, a sample that still fails recorded as a generation failure,
and the run stopped (resumable) when the backend looks down for good.

Transient (see `transient`): a 429 (rate limited, or the model's queue full; its Retry-After is honoured) or a 503
(timeout, connection refused, a server error, a bad response). A sample whose input is the problem (too long: a
422) is a generation failure at once. Failures of the backend in a row are held back: a later success makes them
generation failures; several in a row, or a run that never got an answer, mean the backend is down, and the run
fails with what it has saved (resuming it generates only what is missing).
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
from promptyard.evals import prompting, stopping
from promptyard.evals.datasets import Task
from promptyard.execution.batch import execute_batch
from promptyard.execution.pipeline import ExecutionRequest, execute

# The verdict of a sample the model never answered: it counts as not passed and is not executed.
GENERATION_FAILED = "generation_failed"
# The settings' defaults (documented in promptyard.config), for an app whose config lacks them.
SETTINGS = {
    "PROMPTYARD_EVAL_BATCH_SIZE": 64,
    "PROMPTYARD_EVAL_RETRIES": 3,
    "PROMPTYARD_EVAL_RETRY_BACKOFF": 2.0,
    "PROMPTYARD_EVAL_MAX_RETRY_WAIT": 60.0,
    "PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW": 5,
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


# 503s that another attempt would only repeat: the model itself raised, or could not load.
NOT_TRANSIENT = frozenset({"generation_failed", "model_load_failed"})


def transient(error: PromptyardError) -> bool:
    """A failure another attempt may not meet: rate limited or a full queue (429), a timeout, a refused
    connection, a server error or a bad response (503)."""
    return error.status == 429 or (error.status == 503 and error.code not in NOT_TRANSIENT)


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
    request = build_request(run, task)
    seed = request.params.get("seed")
    if index and isinstance(seed, int) and not isinstance(seed, bool):
        request.params["seed"] = (seed + index) % 2**32  # as in a batch call: the n samples must differ
    row = execute(request)
    return row.output or "", row.id


def _one_at_a_time(generate: Generator, run: EvalRun, samples: list[tuple[Task, int]]) -> list[Answer]:
    answers: list[Answer] = []
    for task, index in samples:
        try:
            answers.append(generate(run, task, index))
        except PromptyardError as exc:  # anything else is a bug, and fails the run
            if stopping.caused_by_shutdown(exc):
                raise  # the process is stopping, not the sample failing: the run stays resumable
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
    return SETTINGS[name] if value is None else float(value)


def _retry_delay(attempt: int, errors: list[PromptyardError]) -> float:
    delay = _setting("PROMPTYARD_EVAL_RETRY_BACKOFF") * 2 ** attempt
    waits = [e.retry_after for e in errors if isinstance(e, TooManyRequests)]
    return min(_setting("PROMPTYARD_EVAL_MAX_RETRY_WAIT"), max([delay, *waits]))


def _with_retries(attempt: Callable[[list], list[Answer]], samples: list) -> list[Answer]:
    answers = attempt(samples)
    for answer in answers:
        if isinstance(answer, Failed) and stopping.caused_by_shutdown(answer.error):
            raise answer.error  # the process is stopping, not the sample failing: the run stays resumable
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


def _batches(run: EvalRun) -> bool:
    """Whether the run's model has a batch call of its own; a backend without one is asked one sample at a time
    through the single-request path (its samples saved one by one), as batching it would gain nothing."""
    from promptyard.models.service import get_plugin
    from promptyard.plugins.base import LLMPlugin

    return type(get_plugin(run.model_name)).generate_batch is not LLMPlugin.generate_batch


class _Saver:
    """Saves answers in order. Failures of the backend (a 5xx or 429 after retries) in a row are held back until a
    sample succeeds: then they were the samples' own failures, and are saved as generation failures. Too many in a
    row, or a run that never got an answer, means the backend is down: the run stops with them unsaved (a resume
    generates them)."""

    def __init__(self, run: EvalRun, answered_before: bool) -> None:
        self.run = run
        self.answered = answered_before
        self.held: list[tuple[Task, int, Failed]] = []
        self.limit = max(1, int(_setting("PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW")))
        self.saved = 0

    def add(self, task: Task, index: int, answer: Answer) -> None:
        if isinstance(answer, Failed):
            if answer.error.status < 500 and answer.error.status != 429:
                self._save(failed_sample(self.run, task, index, answer))  # this input's problem, not the backend's
                return
            self.held.append((task, index, answer))
            if len(self.held) >= self.limit:
                self._down(f"Generation failed {len(self.held)} times in a row (after retries), the last on "
                           f"{task.task_id}")
            return
        self.answered = True
        self._release_held()
        raw, execution_id = answer
        self._save(EvalSample(run_id=self.run.id, task_id=task.task_id, sample_index=index,
                              execution_id=execution_id, raw_output=raw,
                              completion=prompting.code_to_run(task, raw, self.run.mode)))

    def finish(self) -> None:
        if self.held and not self.answered:
            self._down("No sample could be generated")
        self._release_held()
        db.session.commit()

    def _release_held(self) -> None:
        for task, index, failed in self.held:
            self._save(failed_sample(self.run, task, index, failed))
        self.held = []

    def _save(self, sample: EvalSample) -> None:
        db.session.add(sample)
        self.saved += 1

    def _down(self, what: str) -> None:
        db.session.commit()  # what was saved stays
        last = self.held[-1][2].error
        raise BackendDown(f"{what}: {last.message} The run kept what it generated; resume it once the model is "
                          "back.", code="backend_down", details={"last_error": last.code})


def generate_missing(run: EvalRun, tasks: list[Task], have: dict[tuple[str, int], EvalSample],
                     on_progress: Progress) -> None:
    """Generate and save every sample not in `have`, a batch at a time (each batch committed, so a crash or a
    stop loses at most the batch in flight)."""
    custom: Generator | None = current_app.config.get("PROMPTYARD_EVAL_GENERATE")
    missing = [(task, index) for task in tasks for index in range(run.n) if (task.task_id, index) not in have]
    done = run.progress_total - len(missing)
    on_progress("generating", done, run.progress_total)
    if not missing:
        return
    batched = custom is None and _batches(run)
    generate = custom or pipeline_generate
    size = max(1, int(_setting("PROMPTYARD_EVAL_BATCH_SIZE"))) if batched else 1
    saver = _Saver(run, any(row.verdict != GENERATION_FAILED for row in have.values()))
    for start in range(0, len(missing), size):
        stopping.check()  # the process is stopping (Ctrl-C, a server going down): the run stays resumable
        chunk = missing[start:start + size]
        answers = _with_retries(lambda part: _batched(run, part) if batched else _one_at_a_time(generate, run, part),
                                chunk)
        for (task, index), answer in zip(chunk, answers):
            saver.add(task, index, answer)
        db.session.commit()
        on_progress("generating", done + saver.saved, run.progress_total)
    saver.finish()
