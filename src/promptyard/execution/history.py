"""Execution history: filtered lists (newest first) and CSV / JSONL export."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from sqlalchemy import Select, func, select

from promptyard.db import db
from promptyard.db.models import Execution, Feedback
from promptyard.errors import NotFound, Unprocessable
from promptyard.execution.pipeline import execution_to_dict

STATUSES = ("running", "succeeded", "failed", "cancelled")
EXPORT_FORMATS = ("csv", "jsonl")
MAX_LIMIT = 500
EXPORT_BATCH = 500


@dataclass
class HistoryFilters:
    """The filters of GET /api/v1/executions, its export and analytics."""

    prompt: str | None = None
    version: int | None = None
    model: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cache_hit: bool | None = None

    def statement(self) -> Select:
        """SELECT executions matching every given filter (422 for a bad status or a reversed range)."""
        if self.status is not None and self.status not in STATUSES:
            raise Unprocessable(f"Unknown status '{self.status}'; use one of {', '.join(STATUSES)}.",
                                code="invalid_filter", details={"field": "status"})
        since, until = _utc(self.since), _utc(self.until)
        if since and until and since > until:
            raise Unprocessable("'since' is after 'until'.", code="invalid_filter", details={"field": "since"})
        stmt = select(Execution)
        if self.prompt is not None:
            stmt = stmt.where(Execution.prompt_name == self.prompt)
        if self.version is not None:
            stmt = stmt.where(Execution.version_number == self.version)
        if self.model is not None:
            stmt = stmt.where(Execution.model_name == self.model)
        if self.status is not None:
            stmt = stmt.where(Execution.status == self.status)
        if since is not None:
            stmt = stmt.where(Execution.created_at >= since)
        if until is not None:
            stmt = stmt.where(Execution.created_at <= until)
        if self.cache_hit is not None:
            stmt = stmt.where(Execution.cache_hit.is_(self.cache_hit))
        return stmt


def get_execution(execution_id: int) -> Execution:
    row = db.session.get(Execution, execution_id)
    if row is None:
        raise NotFound(f"No execution with id {execution_id}.", code="execution_not_found")
    return row


def list_executions(filters: HistoryFilters, limit: int = 50, offset: int = 0) -> tuple[list[Execution], int]:
    """One page of matching executions, newest first, and how many match in all."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise Unprocessable(f"'limit' must be 1..{MAX_LIMIT} and 'offset' at least 0.", code="invalid_page")
    stmt = filters.statement()
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
    page = stmt.order_by(Execution.created_at.desc(), Execution.id.desc()).limit(limit).offset(offset)
    return list(db.session.scalars(page)), total


EXPORT_COLUMNS = [
    "id", "created_at", "finished_at", "status", "model", "plugin", "prompt", "version", "label", "experiment",
    "experiment_id", "subject", "source", "params", "variables", "rendered_input", "output", "error", "finish_reason",
    "cache_hit", "stream", "queue_wait_ms", "latency_ms", "tokens_in", "tokens_out", "cost",
    # People's feedback: the latest rating and comment, and every one of them as JSON.
    "rating", "comment", "feedback",
]


def export_executions(filters: HistoryFilters, fmt: str) -> Iterator[str]:
    """The matching executions in the order they were made, as CSV (with a header) or JSON Lines, a chunk at a time."""
    if fmt not in EXPORT_FORMATS:
        raise Unprocessable(f"Unknown export format '{fmt}'; use csv or jsonl.", code="invalid_format",
                            details={"field": "format"})
    stmt = filters.statement().order_by(Execution.id)
    records = _batches(stmt)
    return _csv(records) if fmt == "csv" else (json.dumps(record) + "\n" for record in records)


def _batches(stmt: Select) -> Iterator[dict]:
    """Each execution as a dict with its `feedback` list (oldest first)."""
    # Keyset pages by id keep memory flat and never hold a cursor open between chunks.
    last_id = 0
    while True:
        page = list(db.session.scalars(stmt.where(Execution.id > last_id).limit(EXPORT_BATCH)))
        if not page:
            return
        feedback: dict[int, list[dict]] = {}
        ids = [row.id for row in page]
        for entry in db.session.scalars(select(Feedback).where(Feedback.execution_id.in_(ids))
                                        .order_by(Feedback.created_at, Feedback.id)):
            feedback.setdefault(entry.execution_id, []).append(
                {"rating": entry.rating, "comment": entry.comment or "",
                 "created_at": entry.created_at.isoformat() if entry.created_at else None})
        for row in page:
            yield {**execution_to_dict(row), "feedback": feedback.get(row.id, [])}
        last_id = page[-1].id


def _csv(records: Iterator[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        record["params"] = json.dumps(record["params"])
        record["variables"] = json.dumps(record["variables"])
        latest = record["feedback"][-1] if record["feedback"] else {}
        record["rating"], record["comment"] = latest.get("rating"), latest.get("comment")
        record["feedback"] = json.dumps(record["feedback"]) if record["feedback"] else ""
        writer.writerow(record)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
