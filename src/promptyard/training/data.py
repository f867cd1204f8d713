"""Training data from what promptyard records: SFT, KTO and DPO rows in the formats TRL reads.

- `sft`: {"prompt", "completion"} from executions rated at least `min_rating`, evaluation samples that passed,
  an evaluation dataset's reference solutions, or rows given as JSONL;
- `kto`: {"prompt", "completion", "label"}: good (rated >= min_rating, or passed) vs bad (rated <= max_bad_rating,
  or failed);
- `dpo`: {"prompt", "chosen", "rejected"}: two answers to the same rendered input, one rated higher or passing
  where the other failed.

A chat input (recorded as JSON messages) gives TRL's conversational form: the prompt is the message list and the
completion one assistant message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.models import Execution, Feedback
from promptyard.errors import NotFound, Unprocessable

FORMATS = ("sft", "kto", "dpo")
SOURCES = ("history", "evals", "dataset", "jsonl")
# What each format's rows must hold when they are given as JSONL.
FORMAT_FIELDS = {"sft": ("prompt", "completion"), "kto": ("prompt", "completion", "label"),
                 "dpo": ("prompt", "chosen", "rejected")}
MAX_JSONL_CHARS = 20_000_000


class DataSpec(BaseModel):
    """Where training rows come from and which ones: the `data` object of POST /api/v1/trainings."""

    model_config = ConfigDict(extra="forbid")

    source: list[Literal["history", "evals", "dataset", "jsonl"]] = Field(
        default_factory=lambda: ["history", "evals"],
        description="history (rated executions), evals (evaluation samples with a verdict), dataset (an "
                    "evaluation dataset's reference solutions), jsonl (rows given in `jsonl`); one or a list.")
    prompt: str | None = Field(None, max_length=100, description="Only executions/runs of this library prompt.")
    version: int | None = Field(None, ge=1, description="Only this version of the prompt.")
    label: str | None = Field(None, max_length=100, description="Only executions/runs made through this label.")
    model: str | None = Field(None, max_length=100, description="Only executions/runs of this model.")
    since: datetime | None = Field(None, description="Only records made at or after this time.")
    until: datetime | None = Field(None, description="Only records made at or before this time.")
    min_rating: int = Field(4, ge=1, le=5, description="A rating at or above this is good (sft, kto, dpo chosen).")
    max_bad_rating: int = Field(2, ge=1, le=5, description="A rating at or below this is bad (kto, dpo rejected).")
    dataset: str | None = Field(None, max_length=100, description="The evaluation dataset (source dataset).")
    limit: int | None = Field(None, ge=1, description="Only the dataset's first N tasks (source dataset).")
    jsonl: str | None = Field(None, max_length=MAX_JSONL_CHARS, description="Rows as JSONL (source jsonl).")

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def filters(self) -> dict[str, Any]:
        """The filters that were given, for messages and the training record."""
        given = self.model_dump(exclude_none=True, exclude={"jsonl"}, mode="json")
        given["source"] = list(self.source)
        return given


def parse_spec(raw: dict[str, Any] | DataSpec | None) -> DataSpec:
    """A DataSpec from a dict (422 naming the bad field) with the cross-field rules checked."""
    if isinstance(raw, DataSpec):
        spec = raw
    else:
        try:
            spec = DataSpec.model_validate(raw or {})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "data"
            raise Unprocessable(f"Training data filter '{where}': {first['msg']}.", code="invalid_training_data",
                                details={"field": f"data.{where}"}) from None
    if not spec.source:
        raise Unprocessable("Name at least one data source.", code="invalid_training_data",
                            details={"field": "data.source"})
    if "dataset" in spec.source and not spec.dataset:
        raise Unprocessable("Source 'dataset' needs 'dataset' (an evaluation dataset's name).",
                            code="invalid_training_data", details={"field": "data.dataset"})
    if "jsonl" in spec.source and not spec.jsonl:
        raise Unprocessable("Source 'jsonl' needs 'jsonl' (the rows as JSONL text).", code="invalid_training_data",
                            details={"field": "data.jsonl"})
    if spec.since and spec.until and _utc(spec.since) > _utc(spec.until):
        raise Unprocessable("'since' is after 'until'.", code="invalid_training_data", details={"field": "data.since"})
    if spec.max_bad_rating >= spec.min_rating:
        raise Unprocessable("'max_bad_rating' must be below 'min_rating' (a rating cannot be good and bad).",
                            code="invalid_training_data", details={"field": "data.max_bad_rating"})
    return spec


@dataclass
class Candidate:
    """One recorded answer with its verdict: good (True), bad (False) or neither (None)."""

    source: str
    prompt: str | list[dict[str, str]]
    completion: str
    good: bool | None


@dataclass
class TrainingData:
    """The rows of one format, how many came from each source, and how many duplicates were dropped."""

    format: str
    rows: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    def jsonl(self) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)

    def summary(self) -> dict[str, Any]:
        return {"format": self.format, "rows": len(self.rows), "counts": dict(self.counts),
                "duplicates_dropped": self.duplicates}


def build(fmt: str, raw_spec: dict[str, Any] | DataSpec | None, *, home: str | None = None) -> TrainingData:
    """The training rows of format `fmt` matching the spec; a 422 naming the filters when there are none."""
    if fmt not in FORMATS:
        raise Unprocessable(f"Unknown training data format '{fmt}'; use one of {', '.join(FORMATS)}.",
                            code="invalid_format", details={"field": "format"})
    spec = parse_spec(raw_spec)
    home = home or current_app.config.get("PROMPTYARD_HOME")
    rows: list[tuple[str, dict[str, Any]]] = []
    for source in spec.source:
        if source == "jsonl":
            rows.extend(("jsonl", row) for row in parse_rows(fmt, spec.jsonl or ""))
            continue
        candidates = _candidates(source, spec, home)
        rows.extend((source, row) for row in _to_rows(fmt, candidates))
    data = _dedup(fmt, rows)
    if not data.rows:
        described = ", ".join(f"{key}={value!r}" for key, value in spec.filters().items())
        raise Unprocessable(
            f"No {fmt} training rows match these filters ({described}). "
            f"{_hint(fmt)}", code="no_training_data", details={"format": fmt, "filters": spec.filters()},
        )
    return data


def _hint(fmt: str) -> str:
    if fmt == "dpo":
        return "DPO needs two answers to the same input, one rated higher or passing where the other failed."
    if fmt == "kto":
        return "KTO needs answers rated good or bad, or evaluation samples with a verdict."
    return "SFT needs executions rated at or above min_rating, or evaluation samples that passed."


def _candidates(source: str, spec: DataSpec, home: str | None) -> list[Candidate]:
    if source == "history":
        return _from_history(spec)
    if source == "evals":
        return _from_evals(spec, home)
    return _from_dataset(spec, home)


def _from_history(spec: DataSpec) -> list[Candidate]:
    """Succeeded executions with feedback; an execution rated several times counts with its latest rating."""
    latest = (select(Feedback.execution_id, Feedback.rating).order_by(Feedback.execution_id, Feedback.id))
    ratings: dict[int, int] = {}
    for execution_id, rating in db.session.execute(latest):
        ratings[execution_id] = rating
    if not ratings:
        return []
    stmt = select(Execution).where(Execution.id.in_(list(ratings)), Execution.status == "succeeded")
    stmt = _filter(stmt, spec, Execution.prompt_name, Execution.version_number, Execution.label,
                   Execution.model_name, Execution.created_at)
    found = []
    for row in db.session.scalars(stmt.order_by(Execution.id)):
        rating = ratings[row.id]
        good = True if rating >= spec.min_rating else False if rating <= spec.max_bad_rating else None
        found.append(Candidate("history", _prompt_of(row.rendered_input), row.output or "", good))
    return found


def _from_evals(spec: DataSpec, home: str | None) -> list[Candidate]:
    """Executed samples of finished evaluation runs: the code that ran (passed or failed) for the input shown."""
    from promptyard.evals import prompting
    from promptyard.evals.datasets import load_dataset

    stmt = select(EvalRun).where(EvalRun.status == "succeeded")
    stmt = _filter(stmt, spec, EvalRun.prompt_name, EvalRun.version_number, EvalRun.label, EvalRun.model_name,
                   EvalRun.created_at)
    found = []
    for run in db.session.scalars(stmt.order_by(EvalRun.id)):
        samples = db.session.scalars(
            select(EvalSample).where(EvalSample.run_id == run.id, EvalSample.verdict.is_not(None))
            .order_by(EvalSample.task_id, EvalSample.sample_index)
        ).all()
        tasks = None
        for sample in samples:
            prompt = _recorded_input(sample.execution_id)
            if prompt is None:  # generated outside the pipeline: the input is the one the run's mode shows
                if tasks is None:
                    tasks = load_dataset(run.dataset, run.dataset_path, home=home).tasks
                task = tasks.get(sample.task_id)
                if task is None:
                    continue
                prompt = prompting.model_input(task, run.mode)
            # A completion-mode sample is trained on the code that ran, not the raw tail the sandbox never saw.
            completion = sample.completion if run.mode == "completion" else sample.raw_output
            found.append(Candidate("evals", prompt, completion, bool(sample.passed)))
    return found


def _from_dataset(spec: DataSpec, home: str | None) -> list[Candidate]:
    """An evaluation dataset's reference solutions, each shown as a completion model sees its task."""
    from promptyard.evals import prompting
    from promptyard.evals.datasets import load_dataset

    try:
        tasks = load_dataset(spec.dataset or "", home=home).first(spec.limit)
    except NotFound as exc:
        raise Unprocessable(exc.message, code=exc.code, details={**exc.details, "field": "data.dataset"}) from None
    found = []
    for task in tasks:
        if task.canonical_solution:
            found.append(Candidate("dataset", prompting.completion_prompt(task), task.canonical_solution, True))
    return found


def _filter(stmt, spec: DataSpec, prompt_col, version_col, label_col, model_col, created_col):
    if spec.prompt is not None:
        stmt = stmt.where(prompt_col == spec.prompt)
    if spec.version is not None:
        stmt = stmt.where(version_col == spec.version)
    if spec.label is not None:
        stmt = stmt.where(label_col == spec.label)
    if spec.model is not None:
        stmt = stmt.where(model_col == spec.model)
    if spec.since is not None:
        stmt = stmt.where(created_col >= _utc(spec.since))
    if spec.until is not None:
        stmt = stmt.where(created_col <= _utc(spec.until))
    return stmt


def _recorded_input(execution_id: int | None) -> str | list[dict[str, str]] | None:
    if execution_id is None:
        return None
    rendered = db.session.scalar(select(Execution.rendered_input).where(Execution.id == execution_id))
    return _prompt_of(rendered) if rendered is not None else None


def _prompt_of(rendered: str) -> str | list[dict[str, str]]:
    """The recorded input: a chat is stored as its JSON message list, anything else is the text itself."""
    if rendered.startswith("["):
        try:
            messages = json.loads(rendered)
        except json.JSONDecodeError:
            return rendered
        if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
            return messages
    return rendered


def _answer(prompt: Any, text: str) -> Any:
    """A completion in the prompt's form: text, or one assistant message after a chat."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _to_rows(fmt: str, candidates: list[Candidate]) -> list[dict[str, Any]]:
    if fmt == "sft":
        return [{"prompt": c.prompt, "completion": _answer(c.prompt, c.completion)} for c in candidates if c.good]
    if fmt == "kto":
        return [{"prompt": c.prompt, "completion": _answer(c.prompt, c.completion), "label": c.good}
                for c in candidates if c.good is not None]
    return _pairs(candidates)


def _pairs(candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Every good answer against every bad one given to the same input (answers neither good nor bad pair with
    none: a 3 against a 4 is too close to call a preference)."""
    by_input: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_input.setdefault(json.dumps(c.prompt, sort_keys=True), []).append(c)
    rows = []
    for group in by_input.values():
        good = [c for c in group if c.good is True]
        bad = [c for c in group if c.good is False]
        for chosen in good:
            for rejected in bad:
                if chosen.completion != rejected.completion:
                    rows.append({"prompt": chosen.prompt, "chosen": _answer(chosen.prompt, chosen.completion),
                                 "rejected": _answer(chosen.prompt, rejected.completion)})
    return rows


def _dedup(fmt: str, rows: list[tuple[str, dict[str, Any]]]) -> TrainingData:
    seen: set[str] = set()
    data = TrainingData(fmt, [])
    for source, row in rows:
        key = json.dumps(row, sort_keys=True)
        if key in seen:
            data.duplicates += 1
            continue
        seen.add(key)
        data.rows.append(row)
        data.counts[source] = data.counts.get(source, 0) + 1
    return data


def parse_rows(fmt: str, text: str) -> list[dict[str, Any]]:
    """Rows of `fmt` from JSONL text, each checked to hold its format's fields (422 naming the line)."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Unprocessable(f"JSONL line {number} is not JSON: {exc.msg}.", code="invalid_training_data",
                                details={"field": "data.jsonl", "line": number}) from None
        if not isinstance(row, dict):
            raise Unprocessable(f"JSONL line {number} is not a JSON object.", code="invalid_training_data",
                                details={"field": "data.jsonl", "line": number})
        for name in FORMAT_FIELDS[fmt]:
            value = row.get(name)
            valid = isinstance(value, bool) if name == "label" else _text_or_messages(value)
            if not valid:
                kind = "true or false" if name == "label" else "text or a list of chat messages"
                raise Unprocessable(f"JSONL line {number}: '{name}' must be {kind} for {fmt} rows.",
                                    code="invalid_training_data",
                                    details={"field": "data.jsonl", "line": number, "key": name})
        rows.append({name: row[name] for name in FORMAT_FIELDS[fmt]})
    return rows


def _text_or_messages(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
