"""Evaluation runs: generate n completions per task, extract, execute in the sandbox, score; resumable."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from flask import current_app
from sqlalchemy import case, func, select

from promptyard.db import db, utcnow
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.eval_queries import pass_rate_by_version  # noqa: F401 - part of this module's interface
from promptyard.db.models import PromptVersion
from promptyard.errors import Conflict, NotFound, Unprocessable
from promptyard.evals import lease, passk, prompting, stopping
from promptyard.evals.datasets import Dataset, Task, load_dataset
from promptyard.evals.sandbox import Sandbox
from promptyard.evals.score import human_eval_result, isolation_summary
from promptyard.evals.generation import GENERATION_FAILED, generate_missing, pipeline_generate, task_variables
from promptyard.models import service as models_service
from promptyard.monitoring import events
from promptyard.plugins.base import generation_fields, validate_params
from promptyard.prompts import library
from promptyard.prompts.templates import VariableError, build_context

log = logging.getLogger(__name__)

# (phase, samples done in it, samples in all): called after each sample is generated or executed and saved.
Progress = Callable[[str, int, int], None]
MODES = ("completion", "chat")


def _check_prompt_fits(version: PromptVersion, tasks: list[Task], dataset: str) -> None:
    """A prompt needing a variable the tasks do not supply would fail the run at its first generation: refuse it."""
    one_per_style = {task.style: task for task in tasks}.values()
    for task in one_per_style:
        try:
            build_context(version.variables or [], task_variables(version, task))
        except VariableError as exc:
            supplied = list(prompting.template_variables(task))
            raise Unprocessable(
                f"Prompt {version.prompt.name} v{version.number} cannot be filled from the tasks of {dataset} "
                f"(they supply {', '.join(supplied)}): {exc.message}",
                code="prompt_variables_unavailable", details={"supplied": supplied, **exc.details},
            ) from None


def _resolve_prompt(prompt: str | None, version: int | None, label: str | None):
    if not prompt:
        return None
    return library.resolve_version(prompt, version=version, label=label)


def _check_generation(model: str) -> None:
    """With the pipeline generating, the model must be registered (a 404, like everywhere else it is named)."""
    if current_app.config.get("PROMPTYARD_EVAL_GENERATE") in (None, pipeline_generate):
        models_service.get_model(model)


def create_run(
    dataset: str, model: str, *, prompt: str | None = None, version: int | None = None, label: str | None = None,
    n: int = 1, k: list[int] | str = (1,), params: dict | None = None, limit: int | None = None,
    mode: str = "completion", timeout: float = 3.0, dataset_path: str | None = None, submit: bool = True,
) -> EvalRun:
    """Validate, record a queued run, and hand it to the background jobs."""
    try:
        ks = passk.parse_ks(k) if isinstance(k, str) else passk.parse_ks(list(k))
    except ValueError as exc:
        raise Unprocessable(f"{exc}.", code="invalid_k") from None
    if not 1 <= n <= 1000:
        raise Unprocessable("n must be between 1 and 1000.", code="invalid_n", details={"n": n})
    if max(ks) > n:
        raise Unprocessable(f"Every k must be at most n ({n}); got {max(ks)}.", code="invalid_k")
    if mode not in MODES:
        raise Unprocessable(f"mode must be one of {', '.join(MODES)}.", code="invalid_mode")
    if limit is not None and limit < 1:
        raise Unprocessable("limit must be at least 1.", code="invalid_limit")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise Unprocessable("timeout must be more than 0 and at most 60 seconds.", code="invalid_timeout",
                            details={"field": "timeout"})
    try:
        tasks = load_dataset(dataset, dataset_path, home=current_app.config.get("PROMPTYARD_HOME")).first(limit)
    except NotFound as exc:
        # In a request body an unknown dataset is bad input, not a missing resource.
        raise Unprocessable(exc.message, code=exc.code, details=exc.details) from None
    version_row = _resolve_prompt(prompt, version, label)
    if version_row is not None:
        _check_prompt_fits(version_row, tasks, dataset)
    _check_generation(model)
    params = run_params(params, model, version_row, n)
    run = EvalRun(
        dataset=dataset, dataset_path=dataset_path, model_name=model, prompt_name=prompt,
        version_id=version_row.id if version_row is not None else None,
        version_number=version_row.number if version_row is not None else None,
        label=label, mode=mode, n=n, ks=ks, params=prompting.run_params(mode, n, params), task_limit=limit,
        timeout=timeout,
        progress_total=len(tasks) * n,
    )
    db.session.add(run)
    db.session.commit()
    if submit:
        from promptyard import jobs

        run.job_id = jobs.submit("promptyard.evals.runs:execute_run", run.id)
        db.session.commit()
    return run


def run_params(params: dict | None, model: str, version_row: PromptVersion | None, n: int) -> dict:
    """The run's generation params, checked (422 naming a bad one). A temperature above 0 asks for sampling, so it
    turns do_sample on unless the params say otherwise. n > 1 with greedy decoding (after the model's and the
    prompt version's defaults) is refused: n identical samples make pass@k meaningless."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Unprocessable("'params' must be an object of generation params.", code="invalid_params",
                            details={"param": "params"})
    params = dict(params)
    temperature = params.get("temperature")
    if "do_sample" not in params and isinstance(temperature, (int, float)) and not isinstance(temperature, bool) \
            and temperature > 0:
        params["do_sample"] = True
    validate_params(params)
    stored: dict = {}
    try:
        stored.update(generation_fields(models_service.get_model(model).params))
    except NotFound:
        pass  # a configured generator needs no registered model
    if version_row is not None:
        stored.update(generation_fields(version_row.params))
    merged = validate_params(stored, strict=False).model_dump(include=set(stored))
    effective = validate_params({**merged, **params})
    if n > 1 and not (effective.do_sample and effective.temperature > 0):
        raise Unprocessable(
            f"n = {n} samples with greedy decoding would be {n} identical completions, which makes pass@k "
            "meaningless: sample (set a temperature above 0, e.g. temperature=0.8 with top_p=0.95) or use n = 1.",
            code="greedy_with_n", details={"n": n, "param": "temperature"})
    return params


def get_run(run_id: int) -> EvalRun:
    run = db.session.get(EvalRun, run_id)
    if run is None:
        raise NotFound(f"Evaluation run {run_id} does not exist.", code="eval_run_not_found")
    return run


def list_runs(limit: int = 50, offset: int = 0) -> tuple[list[EvalRun], int]:
    total = db.session.scalar(select(func.count()).select_from(EvalRun))
    rows = db.session.scalars(select(EvalRun).order_by(EvalRun.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def list_samples(run_id: int, limit: int = 50, offset: int = 0) -> tuple[list[EvalSample], int]:
    get_run(run_id)
    query = select(EvalSample).where(EvalSample.run_id == run_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(EvalSample.task_id, EvalSample.sample_index).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total or 0)


def _existing(run_id: int) -> dict[tuple[str, int], EvalSample]:
    rows = db.session.scalars(select(EvalSample).where(EvalSample.run_id == run_id)).all()
    return {(row.task_id, row.sample_index): row for row in rows}


def _quiet(phase: str, done: int, total: int) -> None:
    """No one is watching (a background job): progress is read from the run's row."""


def execute_run(run_id: int, on_progress: Progress = _quiet, *, per_task: bool = False) -> dict:
    """The job, run by one owner at a time (evals/lease.py): a second caller waits for a silent owner's lease to
    lapse, and gives up while the owner is alive; an owner whose lease is taken over stops after its current sample.

    Returns the run as run_to_dict gives it (with each task's pass@k when `per_task`)."""
    ttl = float(current_app.config.get("PROMPTYARD_LEASE_TTL_S") or lease.DEFAULT_TTL_S)
    try:
        held = lease.acquire(db.engine, f"eval_run:{run_id}", ttl_s=ttl, wait_s=2 * ttl + 1)
    except lease.LeaseHeld as exc:
        log.info("evaluation run %s is being run by %s: not running it twice", run_id, exc.owner,
                 extra={"event": "eval_run_owned_elsewhere", "run_id": run_id, "owner": exc.owner})
        return run_to_dict(get_run(run_id), per_task=per_task)
    try:
        return _execute_owned(run_id, held.guard(on_progress), per_task=per_task)
    except lease.LeaseLost:
        db.session.rollback()
        log.warning("evaluation run %s was taken over by another owner; this one stops", run_id)
        return run_to_dict(get_run(run_id), per_task=per_task)
    finally:
        held.release()


def _execute_owned(run_id: int, on_progress: Progress, *, per_task: bool) -> dict:
    """Generate what is missing, execute what is unscored, then score. Safe to call again after a crash."""
    run = get_run(run_id)
    if run.status in ("succeeded", "failed"):
        return run_to_dict(run, per_task=per_task)
    run.status, run.started_at = "running", run.started_at or utcnow()
    db.session.commit()
    try:
        dataset = load_dataset(run.dataset, run.dataset_path, home=current_app.config.get("PROMPTYARD_HOME"))
        tasks = dataset.first(run.task_limit)
        _generate_missing(run, tasks, on_progress)
        _execute_unscored(run, dataset, on_progress)
        _finish(run)
    except BaseException as exc:  # noqa: BLE001 - a failed run records why instead of vanishing
        db.session.rollback()
        run = get_run(run_id)
        if stopping.caused_by_shutdown(exc):
            # Stopped by this process's own shutdown (Ctrl-C, a server stopping, a model load cut short by it):
            # queued again, with what it generated and executed kept, for `eval resume` or the next start.
            run.status, run.error = "queued", None
            db.session.commit()
            log.info("evaluation run %s stopped with the process; it stays resumable", run_id)
            if not isinstance(exc, Exception):
                raise
            return run_to_dict(run, per_task=per_task)
        if not isinstance(exc, Exception):
            raise
        run.status, run.error, run.finished_at = "failed", f"{exc.__class__.__name__}: {exc}", utcnow()
        db.session.commit()
        log.exception("evaluation run %s failed", run_id)
        events.eval_run_finished(run_id, "failed", run.error)
    return run_to_dict(run, per_task=per_task)


def _generate_missing(run: EvalRun, tasks: list[Task], on_progress: Progress) -> None:
    generate_missing(run, tasks, _existing(run.id), on_progress)


def _execute_unscored(run: EvalRun, dataset: Dataset, on_progress: Progress) -> None:
    pending = [row for row in _existing(run.id).values() if row.verdict is None]
    run.progress_done = run.progress_total - len(pending)
    db.session.commit()
    if not pending:
        return
    on_progress("executing", run.progress_done, run.progress_total)
    by_id = {row.id: row for row in pending}
    programs = [dataset.tasks[row.task_id].program(row.completion, row.id) for row in pending]
    with Sandbox(current_app.config.get("PROMPTYARD_EVAL_WORKERS"), timeout=run.timeout) as box:
        for program, result in box.run_many(programs):
            row = by_id[program.key]
            row.passed, row.verdict = result.passed, result.verdict
            row.result, row.duration = human_eval_result(result), result.duration
            run.progress_done += 1
            # Saved with each verdict, so a run resumed after a crash still covers the samples executed before it.
            run.isolation = _merge_isolation(run.isolation or {}, isolation_summary([result]))
            db.session.commit()
            events.eval_sample_scored(run.id, row.task_id, row.sample_index, result.verdict)
            on_progress("executing", run.progress_done, run.progress_total)
            stopping.check()


def _merge_isolation(summary: dict, more: dict) -> dict:
    levels = Counter(summary.get("levels") or {})
    levels.update(more["levels"])
    return {"levels": dict(levels), "example": summary.get("example") or more["example"]}


def task_counts(run_id: int) -> dict[str, tuple[int, int]]:
    """{task_id: (samples executed, samples passed)} over the run's executed samples."""
    rows = db.session.execute(
        select(EvalSample.task_id, func.count(), func.sum(case((EvalSample.passed.is_(True), 1), else_=0)))
        .where(EvalSample.run_id == run_id, EvalSample.verdict.is_not(None))
        .group_by(EvalSample.task_id)
    ).all()
    return {task: (int(n), int(c or 0)) for task, n, c in rows}


def _finish(run: EvalRun) -> None:
    run.pass_at_k = passk.averaged(task_counts(run.id), run.ks)
    run.status, run.finished_at = "succeeded", utcnow()
    db.session.commit()
    events.eval_run_finished(run.id, "succeeded")


def resume_run(run_id: int, *, submit: bool = True) -> EvalRun:
    """Take up a failed run (or a finished one with generation failures) where it stopped: its generation
    failures are dropped and, with every sample never generated, generated again; nothing it has is redone."""
    run = get_run(run_id)
    if run.status in ("queued", "running"):
        raise Conflict(f"Evaluation run {run_id} is {run.status}; only a stopped run can be resumed.",
                       code="eval_run_active", details={"status": run.status})
    failures = db.session.scalars(select(EvalSample).where(
        EvalSample.run_id == run_id, EvalSample.verdict == GENERATION_FAILED)).all()
    if run.status == "succeeded" and not failures:
        raise Conflict(f"Evaluation run {run_id} finished with every sample generated; there is nothing to resume.",
                       code="eval_run_complete")
    for row in failures:
        db.session.delete(row)
    run.status, run.error, run.finished_at, run.pass_at_k = "queued", None, None, {}
    db.session.flush()
    run.progress_done = db.session.scalar(select(func.count()).select_from(EvalSample).where(
        EvalSample.run_id == run_id, EvalSample.verdict.is_not(None))) or 0
    db.session.commit()
    if submit:
        from promptyard import jobs

        run.job_id = jobs.submit("promptyard.evals.runs:execute_run", run.id)
        db.session.commit()
    return run


def resume_interrupted_runs() -> str:
    """Startup hook: runs left queued or running by a crash or restart go back to the job queue."""
    from promptyard import jobs

    rows = db.session.scalars(select(EvalRun).where(EvalRun.status.in_(("queued", "running")))).all()
    for run in rows:
        run.job_id = jobs.submit("promptyard.evals.runs:execute_run", run.id)
    db.session.commit()
    return f"resumed {len(rows)} evaluation run(s)"


def _generated_counts(run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """{run id: (samples generated, of which generation failures)}."""
    failed = func.sum(case((EvalSample.verdict == GENERATION_FAILED, 1), else_=0))
    rows = db.session.execute(
        select(EvalSample.run_id, func.count(), failed).where(EvalSample.run_id.in_(run_ids))
        .group_by(EvalSample.run_id)
    ).all()
    return {run_id: (int(count), int(failures or 0)) for run_id, count, failures in rows}


def _phase(run: EvalRun, generated: int) -> str:
    """The step the run is in, or stopped in: queued, generating, executing, scoring, done."""
    if run.status == "queued":
        return "queued"
    if generated < run.progress_total:
        return "generating"
    if run.progress_done < run.progress_total:
        return "executing"
    return "done" if run.status == "succeeded" else "scoring"


def _per_task(run: EvalRun) -> dict[str, dict]:
    """{task_id: {"samples", "passed", "pass@k"...}} of a finished run (each k the task has enough samples for)."""
    if run.status != "succeeded":
        return {}
    counts = task_counts(run.id)
    values = passk.per_task(counts, run.ks)
    return {task: {"samples": n, "passed": c, **values[task]} for task, (n, c) in counts.items()}


def runs_to_dicts(rows: list[EvalRun]) -> list[dict]:
    """A page of runs, their generated counts read in one query."""
    generated = _generated_counts([run.id for run in rows])
    return [run_to_dict(run, generated=generated.get(run.id, (0, 0))) for run in rows]


def run_to_dict(run: EvalRun, *, generated: tuple[int, int] | None = None, per_task: bool = False) -> dict:
    """The run as the API shows it; `per_task` adds each task's pass@k (the run's detail view)."""
    if generated is None:
        generated = _generated_counts([run.id]).get(run.id, (0, 0))
    generated, failures = generated
    body = {
        "id": run.id,
        "status": run.status,
        "dataset": run.dataset,
        "model": run.model_name,
        "prompt": run.prompt_name,
        "version": run.version_number,
        "label": run.label,
        "mode": run.mode,
        "n": run.n,
        "k": run.ks,
        "params": run.params,
        "limit": run.task_limit,
        # done: samples executed and scored; generated: samples the model has answered.
        "progress": {
            "done": run.progress_done, "total": run.progress_total, "generated": generated,
            "phase": _phase(run, generated),
        },
        "pass_at_k": run.pass_at_k or {},
        # Samples the model never answered (after retries): each counts as not passed; resuming retries them.
        "generation_failures": failures,
        "timeout": run.timeout,
        "isolation": run.isolation or {},
        "error": run.error,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }
    if per_task:
        body["per_task"] = _per_task(run)
    return body


def sample_to_dict(row: EvalSample) -> dict:
    return {
        "task_id": row.task_id,
        "sample_index": row.sample_index,
        "completion": row.completion,
        "passed": row.passed,
        "verdict": row.verdict,
        "result": row.result,
        "execution_id": row.execution_id,
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
