"""execution_history rows: written `running` before generation, finished after, each in its own short commit.

The finished records these functions return are built from the values they were written with: answering the
request reads nothing back from the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, update

from promptyard.db import db, utcnow
from promptyard.db.models import Execution, Experiment
from promptyard.monitoring import events

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
# Every column's value when a record is written without one (its plain default, else NULL): Core statements fill
# no defaults, and the records handed back must carry every column.
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


@dataclass(frozen=True)
class RunningRecord:
    """A `running` row as written: its id and every column's value, so finishing it needs no read."""

    id: int
    values: dict[str, Any]


# Built once: building a statement costs more than SQLite takes to run it. Core statements on the session's
# connection, not the ORM's unit of work (a third of the time) nor Session.execute (its ORM layer costs ~0.1 ms a
# statement right after a generation, when the CPU caches hold the model).
_TABLE = Execution.__table__
_INSERT_RETURNING_ID = insert(_TABLE).returning(_TABLE.c.id)
_FINISH = update(_TABLE).where(_TABLE.c.id == bindparam("finished_id"))


def start_record(**values: Any) -> RunningRecord:
    """Insert a `running` row and commit at once, so no transaction stays open while the model generates."""
    values = _UNSET | values | {"status": "running", "created_at": utcnow()}
    execution_id = db.session.connection().execute(_INSERT_RETURNING_ID, values).scalar_one()
    db.session.commit()
    return RunningRecord(execution_id, values)


def finish_record(record: RunningRecord, outcome: Outcome) -> FinishedRecord:
    """Write how the execution ended and commit; the row is never left `running`."""
    if outcome.status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {outcome.status}")
    db.session.rollback()  # drop anything a failed statement left behind before writing the outcome
    values = dict(status=outcome.status, output=outcome.output, error=outcome.error,
                  finish_reason=outcome.finish_reason, latency_ms=outcome.latency_ms, tokens_in=outcome.tokens_in,
                  tokens_out=outcome.tokens_out, cost=outcome.cost, finished_at=utcnow(), **outcome.extra)
    # A plain UPDATE: the row handed back is what start_record wrote plus this outcome. Reading it back (RETURNING
    # every column) cost twice as much, most of it converting JSON and timestamps that were never changed.
    db.session.connection().execute(_FINISH, {"finished_id": record.id, **values})
    db.session.commit()
    finished = {"id": record.id, **record.values, **values}
    events.execution_finished(finished)
    return FinishedRecord(finished)


def record_complete(**values: Any) -> FinishedRecord:
    """Insert an execution that is already finished (a cache hit) and commit it with the session's other writes."""
    now = utcnow()
    values = _UNSET | values
    values.update(created_at=now, finished_at=now)
    execution_id = db.session.connection().execute(_INSERT_RETURNING_ID, values).scalar_one()
    db.session.commit()
    finished = {"id": execution_id, **values}
    events.execution_finished(finished)
    return FinishedRecord(finished)


def record_many(rows: list[dict[str, Any]]) -> list[FinishedRecord]:
    """Insert finished executions (a batch's samples) in one statement and one commit; their records, in order."""
    if not rows:
        return []
    now = utcnow()
    values = [_UNSET | {"created_at": now, "finished_at": now} | row for row in rows]
    statement = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
    ids = db.session.connection().execute(statement, values).scalars().all()
    db.session.commit()
    return [FinishedRecord({"id": execution_id, **row}) for execution_id, row in zip(ids, values)]


class FinishedRecord:
    """A finished execution as written: every column of execution_history as an attribute, like an Execution row
    read back, and its `experiment`. A plain object, not an ORM instance: building one of those cost ~0.3 ms right
    after a generation, more than the UPDATE it describes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    @property
    def experiment(self) -> Experiment | None:
        return db.session.get(Experiment, self.experiment_id) if self.experiment_id is not None else None
