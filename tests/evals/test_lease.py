"""One owner per evaluation run: the lease is refused to a second owner while alive, renewed by heartbeats, taken
over once it lapses, and an owner that lost it stops without failing the run."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from promptyard.db import db, utcnow
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.lease_models import JobLease
from promptyard.evals import lease, runs
from promptyard.evals.datasets import load_humaneval

HUMANEVAL = load_humaneval()
CALLS: list[tuple[str, int]] = []


def generate(run, task, index):
    CALLS.append((task.task_id, index))
    return task.canonical_solution, None


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_GENERATE": generate, "PROMPTYARD_EVAL_WORKERS": 2, "PROMPTYARD_LEASE_TTL_S": 0.6}


def row(name):
    db.session.expire_all()
    return db.session.get(JobLease, name)


def test_a_second_owner_is_refused_while_the_lease_is_alive(app):
    first = lease.acquire(db.engine, "eval_run:1", ttl_s=0.6, owner="first")
    try:
        with pytest.raises(lease.LeaseHeld) as refused:
            lease.acquire(db.engine, "eval_run:1", ttl_s=0.6, owner="second", wait_s=1.5)
        assert refused.value.owner == "first"
        # Heartbeats kept it alive through more than two TTLs of waiting.
        assert not first.lost.is_set()
        assert row("eval_run:1").owner == "first"
    finally:
        first.release()
    assert row("eval_run:1") is None
    # Released: the next owner gets it at once.
    second = lease.acquire(db.engine, "eval_run:1", ttl_s=0.6, owner="second")
    second.release()


def test_a_lapsed_lease_is_taken_over_and_its_old_owner_learns_it(app):
    first = lease.acquire(db.engine, "eval_run:2", ttl_s=30, owner="first")
    first._stop.set()  # the owner stops beating (as if frozen), then its lease runs out
    first._thread.join()
    with db.engine.begin() as conn:
        conn.execute(update(JobLease.__table__).values(expires_at=utcnow() - timedelta(seconds=1)))
    second = lease.acquire(db.engine, "eval_run:2", ttl_s=30, owner="second")
    try:
        assert row("eval_run:2").owner == "second"
        assert first.renew() is False
        first.lost.set()
        with pytest.raises(lease.LeaseLost):
            first.guard(lambda *a: None)("generating", 1, 2)
    finally:
        first.release()  # releasing a lease that is no longer ours leaves the new owner's alone
        assert row("eval_run:2").owner == "second"
        second.release()


def test_a_run_whose_lease_is_held_elsewhere_is_not_run_twice(app):
    """The IntegrityError story: `promptyard eval run` is working on a run when `promptyard up` restarts and
    resumes every running run. The resumed job must leave the live run to its owner, not generate beside it."""
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=1, limit=3, submit=False)
    owner = lease.acquire(db.engine, f"eval_run:{run.id}", ttl_s=0.6, owner="promptyard eval run (pid 1)")
    try:
        run.status = "running"
        db.session.commit()
        message = runs.resume_interrupted_runs()
        assert message == "resumed 1 evaluation run(s)"
        app.extensions["promptyard.jobs"].wait(db.session.get(EvalRun, run.id).job_id, timeout=60)
        assert CALLS == []  # the resumed job waited ~2 TTLs for the live owner, then left the run alone
        db.session.expire_all()
        assert db.session.get(EvalRun, run.id).status == "running"
        # The owner carries on and finishes, with nothing done twice and nothing failed.
        assert runs._execute_owned(run.id, runs._quiet, per_task=False)["status"] == "succeeded"
    finally:
        owner.release()
    samples = db.session.scalars(select(EvalSample).where(EvalSample.run_id == run.id)).all()
    assert len(samples) == 3 and len(CALLS) == 3
    db.session.expire_all()
    finished = db.session.get(EvalRun, run.id)
    assert finished.error is None and finished.status == "succeeded"


def test_a_crashed_owners_run_is_resumed_once_its_lease_lapses(app):
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=1, limit=2, submit=False)
    crashed = lease.acquire(db.engine, f"eval_run:{run.id}", ttl_s=0.6, owner="crashed")
    crashed._stop.set()  # the process died: no more heartbeats, and it never releases
    crashed._thread.join()
    run.status = "running"
    db.session.commit()
    result = runs.execute_run(run.id)
    assert result["status"] == "succeeded" and len(CALLS) == 2
    assert row(f"eval_run:{run.id}") is None


def test_an_owner_that_loses_its_lease_stops_without_failing_the_run(app):
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=1, limit=4, submit=False)

    def taken_over_after_first(run_row, task, index):
        CALLS.append((task.task_id, index))
        if len(CALLS) == 1:
            # Another owner takes the run over (as if this one had been silent past its TTL).
            with db.engine.begin() as conn:
                conn.execute(update(JobLease.__table__).values(owner="someone else"))
            time.sleep(0.6)  # heartbeats come every TTL/3: at least one sees the lease gone
        return task.canonical_solution, None

    app.config["PROMPTYARD_EVAL_GENERATE"] = taken_over_after_first
    result = runs.execute_run(run.id)
    assert result["status"] == "running" and result["error"] is None
    assert len(CALLS) == 1  # stopped after the sample it was generating
    assert db.session.scalar(select(EvalSample.task_id).where(EvalSample.run_id == run.id)) == "HumanEval/0"


def test_lease_table_migrates_up_and_down(tmp_path):
    from promptyard.migrations import downgrade, upgrade
    from sqlalchemy import inspect

    from tests.conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'lease.db'}", tmp_path / "home")
    with app.app_context():
        upgrade()
        assert "job_leases" in inspect(db.engine).get_table_names()
        downgrade("0002")
        assert "job_leases" not in inspect(db.engine).get_table_names()
        upgrade()
        assert "job_leases" in inspect(db.engine).get_table_names()
        db.session.remove()
        db.engine.dispose()
