"""Typed SQLAlchemy 2 models for every table in DESIGN.md (evaluation tables live in eval_models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from promptyard.db import db, utcnow
from promptyard.db.types import UTCDateTime


class Prompt(db.Model):
    """One row per prompt in the library."""

    __tablename__ = "prompt_library"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    task_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    versions: Mapped[list[PromptVersion]] = relationship(
        back_populates="prompt", order_by="PromptVersion.number", cascade="all, delete-orphan"
    )
    labels: Mapped[list[PromptLabel]] = relationship(back_populates="prompt", cascade="all, delete-orphan")


class PromptVersion(db.Model):
    """An immutable version of a prompt: template, declared variables, default params."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt_library.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    template: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(100), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    prompt: Mapped[Prompt] = relationship(back_populates="versions")


class PromptLabel(db.Model):
    """A movable pointer (`production`, `staging`, any name) to one version of a prompt."""

    __tablename__ = "prompt_labels"
    __table_args__ = (UniqueConstraint("prompt_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt_library.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    prompt: Mapped[Prompt] = relationship(back_populates="labels")
    version: Mapped[PromptVersion] = relationship()
    moves: Mapped[list[PromptLabelMove]] = relationship(
        back_populates="label", order_by="PromptLabelMove.id", cascade="all, delete-orphan"
    )


class PromptLabelMove(db.Model):
    """One move of a label, kept for rollback and audit."""

    __tablename__ = "prompt_label_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("prompt_labels.id", ondelete="CASCADE"), index=True)
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"), nullable=True)
    to_version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    action: Mapped[str] = mapped_column(String(20), default="set")  # "set" or "rollback"
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    label: Mapped[PromptLabel] = relationship(back_populates="moves")
    from_version: Mapped[PromptVersion | None] = relationship(foreign_keys=[from_version_id])
    to_version: Mapped[PromptVersion] = relationship(foreign_keys=[to_version_id])


class Experiment(db.Model):
    """An A/B test between versions of one prompt."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt_library.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | stopped
    metric: Mapped[str] = mapped_column(String(50), default="success_rate")
    alpha: Mapped[float] = mapped_column(Float, default=0.05)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    prompt: Mapped[Prompt] = relationship()
    arms: Mapped[list[ExperimentArm]] = relationship(
        back_populates="experiment", order_by="ExperimentArm.position", cascade="all, delete-orphan"
    )


class ExperimentArm(db.Model):
    """One arm of an experiment: a version and its weight."""

    __tablename__ = "experiment_arms"
    __table_args__ = (UniqueConstraint("experiment_id", "version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_versions.id"))
    weight: Mapped[float] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer, default=0)

    experiment: Mapped[Experiment] = relationship(back_populates="arms")
    version: Mapped[PromptVersion] = relationship()


class ExperimentAssignment(db.Model):
    """The arm a subject was given; sticky because it is a hash, recorded for audit and counts."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("experiment_arms.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    arm: Mapped[ExperimentArm] = relationship()


class ApiKey(db.Model):
    """An API key, stored as a SHA-256 hash with a role."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(20))  # viewer | editor | admin
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelConfig(db.Model):
    """A registered model: which plugin runs it, from where, with which defaults and prices."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    plugin: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(500))
    revision: Mapped[str | None] = mapped_column(String(100), nullable=True)
    quantization: Mapped[str | None] = mapped_column(String(20), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pricing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    is_preset: Mapped[bool] = mapped_column(Boolean, default=False)
    # Archived: hidden from lists and refused for new runs; kept because executions still name it.
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Execution(db.Model):
    """Every run of a model: what went in, what came out, and what it cost."""

    __tablename__ = "execution_history"
    __table_args__ = (
        Index("ix_execution_history_created_at", "created_at"),
        Index("ix_execution_history_model_name", "model_name"),
        Index("ix_execution_history_prompt_id", "prompt_id"),
        Index("ix_execution_history_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_library.id"), nullable=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_versions.id"), nullable=True)
    prompt_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id"), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    model_name: Mapped[str] = mapped_column(String(100))
    plugin: Mapped[str | None] = mapped_column(String(100), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rendered_input: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="running")  # running|succeeded|failed|cancelled
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    queue_wait_ms: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(20), default="api")  # api | v1 | eval | cli

    feedback: Mapped[list[Feedback]] = relationship(back_populates="execution", cascade="all, delete-orphan")
    experiment: Mapped[Experiment | None] = relationship()


class Feedback(db.Model):
    """A rating from 1 to 5 and an optional comment on an execution."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("execution_history.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    execution: Mapped[Execution] = relationship(back_populates="feedback")


class CacheEntry(db.Model):
    """A cached response, keyed by a hash of plugin, model source, revision, input and params."""

    __tablename__ = "model_cache"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
