"""The trainings table: one LoRA fine-tuning run of a registered model, its data, progress and result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from promptyard.db import db, utcnow
from promptyard.db.types import UTCDateTime


class Training(db.Model):
    """A fine-tuning run: base model, method, data summary, hyperparameters, per-step losses, the new model."""

    __tablename__ = "trainings"
    __table_args__ = (Index("ix_trainings_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed|cancelled
    base_model: Mapped[str] = mapped_column(String(100))
    model_name: Mapped[str] = mapped_column(String(100))  # the model registered when it succeeds
    method: Mapped[str] = mapped_column(String(10))  # sft | kto | dpo
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the filters the rows were built with
    data_summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # rows, counts per source
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step: Mapped[int] = mapped_column(Integer, default=0)
    resumed_from_step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the checkpoint resumed
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    losses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    output_dir: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
