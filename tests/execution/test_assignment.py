"""Sticky experiment assignment: a stable hash onto cumulative weights, recorded."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import ExperimentAssignment
from promptyard.execution.assignment import bucket, pick_arm, sticky_arm


def test_bucket_is_stable_and_in_range():
    assert bucket("exp", "alice") == bucket("exp", "alice")
    assert bucket("exp", "alice") != bucket("other", "alice")
    assert all(0 <= bucket("exp", f"s{i}") < 1 for i in range(100))


def test_pick_arm_follows_cumulative_weights():
    arms = [SimpleNamespace(weight=1.0, name="a"), SimpleNamespace(weight=3.0, name="b")]
    assert pick_arm(arms, 0.0).name == "a"
    assert pick_arm(arms, 0.2499).name == "a"
    assert pick_arm(arms, 0.25).name == "b"
    assert pick_arm(arms, 0.9999).name == "b"


def test_weights_shape_the_split():
    arms = [SimpleNamespace(weight=0.9, name="a"), SimpleNamespace(weight=0.1, name="b")]
    picks = [pick_arm(arms, bucket("exp", f"user-{i}")).name for i in range(1000)]
    assert 850 < picks.count("a") < 950


def test_assignment_is_recorded_once_and_kept(make_prompt, make_experiment):
    prompt = make_prompt("p", ["A {{ name }}", "B {{ name }}"])
    experiment = make_experiment("exp", prompt, {1: 1.0, 2: 1.0})
    arm = sticky_arm(experiment, "alice")
    # Even if the weights change later, a subject keeps the arm it was given.
    for other in experiment.arms:
        other.weight = 0.0 if other.id == arm.id else 1.0
    db.session.commit()
    assert sticky_arm(experiment, "alice").id == arm.id
    rows = list(db.session.scalars(select(ExperimentAssignment)))
    assert [(r.subject, r.arm_id) for r in rows] == [("alice", arm.id)]
