"""Evaluation tables: eval_runs (one evaluation of a model/prompt on a dataset) and eval_samples."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from promptyard.db import db, utcnow
from promptyard.db.types import UTCDateTime


class EvalRun(db.Model):
    """An evaluation run: n completions per task, executed in the sandbox and scored with pass@k."""

    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_status", "status"), Index("ix_eval_runs_version_id", "version_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    dataset: Mapped[str] = mapped_column(String(100))
    dataset_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_name: Mapped[str] = mapped_column(String(100))
    prompt_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"), nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    mode: Mapped[str] = mapped_column(String(20), default="completion")  # completion|chat
    n: Mapped[int] = mapped_column(Integer, default=1)
    ks: Mapped[list[int]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    task_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timeout: Mapped[float] = mapped_column(Float, default=3.0)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    pass_at_k: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    isolation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)


class EvalSample(db.Model):
    """One completion of one task in a run, with its sandbox verdict (None until executed)."""

    __tablename__ = "eval_samples"
    __table_args__ = (UniqueConstraint("run_id", "task_id", "sample_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(100))
    sample_index: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[int | None] = mapped_column(ForeignKey("execution_history.id"), nullable=True)
    raw_output: Mapped[str] = mapped_column(Text, default="")
    completion: Mapped[str] = mapped_column(Text, default="")
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(20), nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
