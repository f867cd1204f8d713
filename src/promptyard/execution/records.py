"""execution_history rows: written `running` before generation, finished after, each in its own short commit.

The finished rows these functions return keep the values they were written with: reading them to answer the
request costs no second SELECT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import make_transient_to_detached

from promptyard.db import db, utcnow
from promptyard.db.models import Execution

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
# Every column's value when record_complete is not given one (its plain default, else NULL): the row it hands
# back must carry every value, or reading a missing one would SELECT the row again.
_UNSET = {c.key: c.default.arg if c.default is not None and c.default.is_scalar else None
          for c in Execution.__table__.columns if not c.primary_key}


@dataclass
class Outcome:
    """How a generation ended, to be written onto its record."""

    status: str
    output: str = ""
    error: str | None = None
    finish_reason: str | None = None
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def start_record(**values: Any) -> int:
    """Insert a `running` row and commit at once, so no transaction stays open while the model generates."""
    row = Execution(status="running", **values)
    db.session.add(row)
    db.session.flush()
    execution_id = row.id  # read before the commit, which would expire it (reading it after costs a SELECT)
    # Forget the row: touching it later would begin a new transaction in the middle of generation.
    db.session.expunge(row)
    db.session.commit()
    return execution_id


def finish_record(execution_id: int, outcome: Outcome) -> Execution:
    """Write how the execution ended and commit; the row is never left `running`."""
    if outcome.status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {outcome.status}")
    db.session.rollback()  # drop anything a failed statement left behind before writing the outcome
    values = dict(status=outcome.status, output=outcome.output, error=outcome.error,
                  finish_reason=outcome.finish_reason, latency_ms=outcome.latency_ms, tokens_in=outcome.tokens_in,
                  tokens_out=outcome.tokens_out, cost=outcome.cost, finished_at=utcnow(), **outcome.extra)
    # One UPDATE ... RETURNING writes the outcome and hands back the whole row (no SELECT before or after).
    statement = update(Execution).where(Execution.id == execution_id).values(**values).returning(Execution)
    row = db.session.scalars(statement, execution_options={"synchronize_session": False}).one()
    return _commit_keeping_values(row)


# Built once: a cache hit's whole database work is this INSERT and the hit counter's UPDATE.
_INSERT_RETURNING_ID = insert(Execution.__table__).returning(Execution.__table__.c.id)


def record_complete(**values: Any) -> Execution:
    """Insert an execution that is already finished (a cache hit) and commit it with the session's other writes.

    A Core INSERT ... RETURNING id rather than the ORM's unit of work (a third of the time); the row handed back is
    then attached as if loaded, so its relationships still load and nothing reads it again.
    """
    now = utcnow()
    values = _UNSET | values
    values.update(created_at=now, finished_at=now)
    execution_id = db.session.execute(_INSERT_RETURNING_ID, values).scalar_one()
    db.session.commit()
    row = Execution(id=execution_id, **values)
    make_transient_to_detached(row)
    db.session.add(row)
    return row


def _commit_keeping_values(row: Execution) -> Execution:
    """Commit without expiring `row` (commit would, and reading it again would cost a SELECT).

    The row sits outside the session during the commit, then goes back in, so relationships still load.
    """
    db.session.flush()
    db.session.expunge(row)
    db.session.commit()
    db.session.add(row)
    return row
