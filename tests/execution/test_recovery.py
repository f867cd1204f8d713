"""Startup recovery: rows a killed process left `running` become `failed` with the reason."""

from __future__ import annotations

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.execution.records import Outcome, finish_record, start_record
from promptyard.execution.recovery import INTERRUPTED_REASON, recover_interrupted
from promptyard.startup import run_startup_hooks


def test_running_rows_are_marked_failed_and_finished_ones_are_left_alone(app):
    interrupted = start_record(model_name="m", rendered_input="x")
    done = start_record(model_name="m", rendered_input="y")
    finish_record(done, Outcome("succeeded", output="ok"))
    assert recover_interrupted() == "1 interrupted execution(s) marked failed"
    db.session.expire_all()
    row = db.session.get(Execution, interrupted.id)
    assert (row.status, row.error) == ("failed", INTERRUPTED_REASON) and row.finished_at is not None
    assert db.session.get(Execution, done.id).status == "succeeded"
    assert recover_interrupted() == "0 interrupted execution(s) marked failed"


def test_recovery_runs_as_a_startup_hook(app):
    start_record(model_name="m", rendered_input="x")
    report = run_startup_hooks()
    assert "interrupted executions: 1 interrupted execution(s) marked failed" in report
