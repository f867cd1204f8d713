"""Feedback on an execution: a rating from 1 to 5 and an optional comment."""

from __future__ import annotations

from typing import Any

from promptyard.db import db
from promptyard.db.models import Execution, Feedback
from promptyard.errors import NotFound, Unprocessable

MAX_COMMENT = 5000


def add_feedback(execution_id: int, rating: Any, comment: str | None = "") -> Feedback:
    """Attach a rating (an integer 1..5, else 422) and a comment to an execution (404 if unknown)."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Unprocessable(f"'rating' must be a whole number from 1 to 5, not {rating!r}.", code="invalid_rating",
                            details={"field": "rating"})
    comment = comment or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise Unprocessable(f"'comment' must be text of at most {MAX_COMMENT} characters.", code="invalid_comment",
                            details={"field": "comment"})
    if db.session.get(Execution, execution_id) is None:
        raise NotFound(f"No execution with id {execution_id}.", code="execution_not_found")
    row = Feedback(execution_id=execution_id, rating=rating, comment=comment)
    db.session.add(row)
    db.session.commit()
    return row


def feedback_to_dict(row: Feedback) -> dict[str, Any]:
    return {
        "id": row.id,
        "execution_id": row.execution_id,
        "rating": row.rating,
        "comment": row.comment,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }
