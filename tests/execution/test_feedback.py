"""Feedback: a rating from 1 to 5 and a comment on an execution."""

from __future__ import annotations

import pytest

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import NotFound, Unprocessable
from promptyard.execution.feedback import add_feedback, feedback_to_dict
from promptyard.execution.pipeline import ExecutionRequest, execute


def test_feedback_is_stored(install):
    install("m")
    row = execute(ExecutionRequest(model="m", input="x"))
    feedback = add_feedback(row.id, 4, "good enough")
    assert feedback_to_dict(feedback)["rating"] == 4
    assert [f.comment for f in db.session.get(Execution, row.id).feedback] == ["good enough"]


@pytest.mark.parametrize("rating", [0, 6, -1, 2.5, "3", True, None])
def test_ratings_outside_one_to_five_are_422(install, rating):
    install("m")
    row = execute(ExecutionRequest(model="m", input="x"))
    with pytest.raises(Unprocessable):
        add_feedback(row.id, rating)
    assert db.session.get(Execution, row.id).feedback == []


def test_feedback_on_a_missing_execution_is_404(app):
    with pytest.raises(NotFound):
        add_feedback(999, 3)


def test_a_huge_comment_is_422(install):
    install("m")
    row = execute(ExecutionRequest(model="m", input="x"))
    with pytest.raises(Unprocessable):
        add_feedback(row.id, 3, "x" * 5001)
