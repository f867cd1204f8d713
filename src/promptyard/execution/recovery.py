"""Startup hook: executions a killed process left `running` are marked `failed` with the reason."""

from __future__ import annotations

from sqlalchemy import update

from promptyard.db import db, utcnow
from promptyard.db.models import Execution

INTERRUPTED_REASON = "interrupted: the server stopped before this generation finished"


def recover_interrupted() -> str:
    """Mark every `running` execution failed; run once at startup, before any request is served."""
    result = db.session.execute(
        update(Execution)
        .where(Execution.status == "running")
        .values(status="failed", error=INTERRUPTED_REASON, finished_at=utcnow())
    )
    db.session.commit()
    return f"{result.rowcount} interrupted execution(s) marked failed"
