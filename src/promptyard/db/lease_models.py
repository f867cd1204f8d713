"""job_leases: who owns a long-running job (an evaluation run), until when; renewed by heartbeats."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from promptyard.db import db
from promptyard.db.types import UTCDateTime


class JobLease(db.Model):
    """One row per leased job: the owner holds it while expires_at is in the future."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # e.g. "eval_run:12"
    owner: Mapped[str] = mapped_column(String(200))                   # host:pid:random of the holding process
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
