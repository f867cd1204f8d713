"""Experiments service: arm validation, sticky weighted assignment, results and significance tests."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from types import SimpleNamespace

import pytest
from scipy import stats
from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.models import Execution, ExperimentAssignment, Feedback, Prompt
from promptyard.errors import Conflict, NotFound, Unprocessable
from promptyard.prompts import experiments
from promptyard.prompts.library import create_prompt
from promptyard.prompts.versions import add_version


def make_prompt(name: str = "greet", versions: int = 3) -> Prompt:
    """A prompt with `versions` versions ("v1: hello {{ who }}", ...), made by the prompts service."""
    declared = [{"name": "who", "type": "string", "required": True}]
    prompt, _ = create_prompt(name, "v1: hello {{ who }}", variables=declared)
    for number in range(2, versions + 1):
        add_version(name, f"v{number}: hello {{{{ who }}}}", variables=declared)
    return prompt


def record_runs(experiment_name: str, version: int, succeeded: int, failed: int, ratings=(), **extra) -> None:
    """Insert real execution rows (and feedback) for one arm, as the pipeline would."""
    experiment = experiments.get_experiment(experiment_name)
    version_row = next(arm.version for arm in experiment.arms if arm.version.number == version)
    rows = []
    for index, status in enumerate(["succeeded"] * succeeded + ["failed"] * failed):
        row = Execution(
            prompt_id=experiment.prompt_id,
            version_id=version_row.id,
            prompt_name=experiment.prompt.name,
            version_number=version,
            experiment_id=experiment.id,
            subject=f"s{version}-{index}",
            model_name="fake",
            status=status,
            **extra,
        )
        rows.append(row)
    db.session.add_all(rows)
    db.session.flush()
    for row, rating in zip(rows, ratings):
        db.session.add(Feedback(execution_id=row.id, rating=rating))
    db.session.commit()


def two_arms(name="exp", weights=(1, 1), **kwargs):
    return experiments.create_experiment(
        name, "greet", [{"version": 1, "weight": weights[0]}, {"version": 2, "weight": weights[1]}], **kwargs
    )


def test_create_records_arms(app):
    make_prompt()
    row = two_arms(weights=(3, 1), alpha=0.01, description="copy test")
    data = experiments.experiment_to_dict(row)
    assert data["arms"] == [{"version": 1, "weight": 3.0}, {"version": 2, "weight": 1.0}]
    assert data["status"] == "running" and data["alpha"] == 0.01 and data["prompt"] == "greet"


@pytest.mark.parametrize(
    "arms, code",
    [
        ([{"version": 1, "weight": -1}, {"version": 2, "weight": 2}], "invalid_weight"),
        ([{"version": 1, "weight": 0}, {"version": 2, "weight": 0}], "invalid_weight"),
        ([{"version": 1, "weight": float("inf")}, {"version": 2, "weight": 1}], "invalid_weight"),
        ([{"version": 1, "weight": 1}, {"version": 1, "weight": 1}], "duplicate_arm"),
        ([{"version": 1, "weight": 1}], "too_few_arms"),
        ([{"version": "1", "weight": 1}, {"version": 2, "weight": 1}], "invalid_arms"),
        ("1,2", "invalid_arms"),
    ],
)
def test_bad_arms_are_refused_and_nothing_is_written(app, arms, code):
    make_prompt()
    with pytest.raises(Unprocessable) as exc:
        experiments.create_experiment("exp", "greet", arms)
    assert exc.value.code == code
    assert experiments.list_experiments()[1] == 0


def test_unknown_version_and_prompt_are_404(app):
    make_prompt(versions=2)
    with pytest.raises(NotFound) as exc:
        experiments.create_experiment("exp", "greet", [{"version": 1, "weight": 1}, {"version": 9, "weight": 1}])
    assert exc.value.code == "version_not_found"
    with pytest.raises(NotFound) as exc:
        experiments.create_experiment("exp", "nope", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}])
    assert exc.value.code == "prompt_not_found"
    assert experiments.list_experiments()[1] == 0


def test_bad_name_alpha_and_metric(app):
    make_prompt()
    for kwargs, code in [({"alpha": 1.5}, "invalid_alpha"), ({"metric": "vibes"}, "invalid_metric")]:
        with pytest.raises(Unprocessable) as exc:
            two_arms(**kwargs)
        assert exc.value.code == code
    with pytest.raises(Unprocessable):
        two_arms(name="Bad Name")


def test_one_running_experiment_per_prompt(app):
    make_prompt()
    two_arms("first")
    with pytest.raises(Conflict) as exc:
        two_arms("second")
    assert exc.value.code == "experiment_already_running"
    experiments.stop_experiment("first")
    assert two_arms("second").status == "running"
    with pytest.raises(Conflict):
        two_arms("second")  # duplicate name


def test_assignment_is_sticky_and_recorded_once(app):
    make_prompt()
    two_arms()
    first = {f"user-{i}": experiments.assign("exp", f"user-{i}") for i in range(50)}
    again = {subject: experiments.assign("exp", subject) for subject in first}
    assert first == again
    assert set(first.values()) == {1, 2}
    assert db.session.scalar(select(func.count()).select_from(ExperimentAssignment)) == 50


def test_assignment_is_the_documented_hash_onto_cumulative_weights(app):
    make_prompt()
    two_arms(weights=(1, 3))
    for i in range(30):
        subject = f"subject-{i}"
        digest = hashlib.sha256(f"exp\x00{subject}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        assert experiments.assign("exp", subject) == (1 if point * 4 < 1 else 2)


def test_bucket_is_stable_and_in_range():
    assert experiments.bucket("exp", "alice") == experiments.bucket("exp", "alice")
    assert experiments.bucket("exp", "alice") != experiments.bucket("other", "alice")
    assert all(0 <= experiments.bucket("exp", f"s{i}") < 1 for i in range(100))


def test_pick_arm_follows_cumulative_weights():
    arms = [SimpleNamespace(weight=1.0, name="a"), SimpleNamespace(weight=3.0, name="b")]
    assert experiments.pick_arm(arms, 0.0).name == "a"
    assert experiments.pick_arm(arms, 0.2499).name == "a"
    assert experiments.pick_arm(arms, 0.25).name == "b"
    assert experiments.pick_arm(arms, 0.9999).name == "b"


def test_a_subject_keeps_its_arm_when_the_weights_change_later(app):
    make_prompt()
    two_arms()
    arm = experiments.assign_arm("exp", "alice")
    for other in experiments.get_experiment("exp").arms:
        other.weight = 0.0 if other.id == arm.id else 1.0
    db.session.commit()
    assert experiments.assign_arm("exp", "alice").id == arm.id
    rows = list(db.session.scalars(select(ExperimentAssignment)))
    assert [(r.subject, r.arm_id) for r in rows] == [("alice", arm.id)]


def test_weights_shape_the_split_and_zero_weight_arms_get_nobody(app):
    make_prompt()
    experiments.create_experiment(
        "exp", "greet", [{"version": 1, "weight": 1}, {"version": 2, "weight": 0}, {"version": 3, "weight": 3}]
    )
    recorded = Counter(experiments.assign("exp", f"u{i}") for i in range(40))
    assert recorded[2] == 0 and recorded[1] + recorded[3] == 40
    # The split itself, over many subjects, through the same hash and arm choice (no rows needed).
    arms = list(experiments.get_experiment("exp").arms)
    counts = Counter(experiments.pick_arm(arms, experiments.bucket("exp", f"u{i}")).version.number for i in range(4000))
    assert counts[2] == 0
    # 4000 draws at p=0.25: mean 1000, sd about 27; these bounds are over 5 sd away.
    assert 850 < counts[1] < 1150


def test_stopped_experiment_keeps_old_subjects_and_refuses_new(app):
    make_prompt()
    two_arms()
    version = experiments.assign("exp", "alice")
    experiments.stop_experiment("exp")
    assert experiments.assign("exp", "alice") == version
    with pytest.raises(Conflict):
        experiments.assign("exp", "bob")
    with pytest.raises(Conflict):
        experiments.stop_experiment("exp")


def test_bad_subject_and_unknown_experiment(app):
    make_prompt()
    two_arms()
    with pytest.raises(Unprocessable):
        experiments.assign("exp", "  ")
    with pytest.raises(NotFound):
        experiments.assign("nope", "alice")


def test_concurrent_assignment_of_one_subject_records_one_row(app):
    make_prompt()
    two_arms()
    results, errors = [], []

    def worker():
        with app.app_context():
            try:
                results.append(experiments.assign("exp", "same-subject"))
            except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 8
    assert db.session.scalar(select(func.count()).select_from(ExperimentAssignment)) == 1


def test_results_count_only_finished_runs_of_the_experiment(app):
    make_prompt()
    two_arms()
    experiments.assign("exp", "a")
    record_runs("exp", 1, succeeded=3, failed=1, ratings=[5, 4])
    record_runs("exp", 2, succeeded=1, failed=1, ratings=[2])
    exp = experiments.get_experiment("exp")
    # Runs that must not count: cancelled, still running, and runs outside the experiment.
    db.session.add_all(
        [
            Execution(version_id=exp.arms[0].version_id, experiment_id=exp.id, model_name="m", status="cancelled"),
            Execution(version_id=exp.arms[0].version_id, experiment_id=exp.id, model_name="m", status="running"),
            Execution(version_id=exp.arms[1].version_id, experiment_id=None, model_name="m", status="succeeded"),
        ]
    )
    db.session.commit()
    result = experiments.experiment_results("exp")
    first, second = result["arms"]
    assert (first["executions"], first["successes"], first["success_rate"]) == (4, 3, 0.75)
    assert (first["ratings"], first["mean_rating"]) == (2, 4.5)
    assert (second["executions"], second["success_rate"], second["mean_rating"]) == (2, 0.5, 2.0)
    assert sum(arm["assignments"] for arm in result["arms"]) == 1
    assert first["pass_rate"] is None
    # Tiny samples: Fisher's exact test, nothing significant, no winner.
    assert result["test"] == "fisher_exact"
    assert result["p_value"] == pytest.approx(stats.fisher_exact([[3, 1], [1, 1]])[1])
    assert result["winner"] is None
    assert result["sample_sizes"] == [{"version": 1, "n": 4}, {"version": 2, "n": 2}]


def test_no_data_means_no_test_and_no_winner(app):
    make_prompt()
    two_arms()
    result = experiments.experiment_results("exp")
    assert result["p_value"] is None and result["test"] is None and result["winner"] is None
    assert all(arm["success_rate"] is None and arm["mean_rating"] is None for arm in result["arms"])


def test_large_samples_use_the_z_test_and_name_a_clear_winner(app):
    make_prompt()
    two_arms()
    record_runs("exp", 1, succeeded=60, failed=140)
    record_runs("exp", 2, succeeded=120, failed=80)
    result = experiments.experiment_results("exp")
    assert result["test"] == "two_proportion_z"
    # By hand: pooled p = 180/400 = 0.45; se = sqrt(0.45*0.55*(2/200)); z = (0.3-0.6)/se.
    se = (0.45 * 0.55 * (1 / 200 + 1 / 200)) ** 0.5
    z = (0.3 - 0.6) / se
    assert result["tests"]["success_rate"]["statistic"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    # The same test through scipy's chi-square without continuity correction (chi2 = z^2).
    chi2, p_chi2, _, _ = stats.chi2_contingency([[60, 140], [120, 80]], correction=False)
    assert result["p_value"] == pytest.approx(p_chi2)
    assert result["significant"] is True and result["winner"] == 2


def test_equal_large_samples_have_no_winner(app):
    make_prompt()
    two_arms()
    record_runs("exp", 1, succeeded=50, failed=50)
    record_runs("exp", 2, succeeded=50, failed=50)
    result = experiments.experiment_results("exp")
    assert result["test"] == "two_proportion_z"
    assert result["p_value"] == pytest.approx(1.0)
    assert result["winner"] is None and result["significant"] is False


def test_alpha_decides_significance(app):
    make_prompt()
    two_arms(alpha=0.001)
    # p is about 0.02 here: significant at 0.05, not at 0.001.
    record_runs("exp", 1, succeeded=40, failed=60)
    record_runs("exp", 2, succeeded=56, failed=44)
    result = experiments.experiment_results("exp")
    assert 0.001 < result["p_value"] < 0.05
    assert result["winner"] is None


def test_three_arms_use_chi_square(app):
    make_prompt()
    experiments.create_experiment(
        "exp", "greet", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}, {"version": 3, "weight": 1}]
    )
    record_runs("exp", 1, succeeded=30, failed=70)
    record_runs("exp", 2, succeeded=35, failed=65)
    record_runs("exp", 3, succeeded=70, failed=30)
    result = experiments.experiment_results("exp")
    expected = stats.chi2_contingency([[30, 70], [35, 65], [70, 30]])[1]
    assert result["test"] == "chi_square"
    assert result["p_value"] == pytest.approx(expected)
    assert result["winner"] == 3


def test_rating_metric_uses_mann_whitney(app):
    make_prompt()
    two_arms(metric="mean_rating")
    low, high = [1, 2, 2, 3, 2, 1, 3, 2] * 4, [4, 5, 4, 3, 5, 5, 4, 4] * 4
    record_runs("exp", 1, succeeded=len(low), failed=0, ratings=low)
    record_runs("exp", 2, succeeded=len(high), failed=0, ratings=high)
    result = experiments.experiment_results("exp")
    expected = stats.mannwhitneyu(low, high, alternative="two-sided").pvalue
    assert result["test"] == "mann_whitney_u"
    assert result["p_value"] == pytest.approx(expected)
    assert result["winner"] == 2
    assert result["sample_sizes"] == [{"version": 1, "n": 32}, {"version": 2, "n": 32}]
    # Both arms always succeeded: the rate test sees no difference.
    assert result["tests"]["success_rate"]["p_value"] == 1.0


def test_identical_ratings_have_no_winner(app):
    make_prompt()
    two_arms(metric="mean_rating")
    record_runs("exp", 1, succeeded=5, failed=0, ratings=[4] * 5)
    record_runs("exp", 2, succeeded=5, failed=0, ratings=[4] * 5)
    result = experiments.experiment_results("exp")
    assert result["p_value"] == 1.0 and result["winner"] is None


def test_list_filters_and_pages(app):
    make_prompt()
    make_prompt("other")
    two_arms("a")
    experiments.stop_experiment("a")
    two_arms("b")
    experiments.create_experiment("c", "other", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}])
    rows, total = experiments.list_experiments()
    assert [row.name for row in rows] == ["c", "b", "a"] and total == 3
    assert [row.name for row in experiments.list_experiments(prompt="greet")[0]] == ["b", "a"]
    assert [row.name for row in experiments.list_experiments(status="stopped")[0]] == ["a"]
    rows, total = experiments.list_experiments(limit=1, offset=1)
    assert [row.name for row in rows] == ["b"] and total == 3


def test_pass_rate_comes_from_the_evaluation_tables(app, monkeypatch):
    make_prompt()
    exp = two_arms()
    first_id = exp.arms[0].version_id
    seen = []

    def pass_rate_by_version(version_ids):
        seen.append(list(version_ids))
        return {first_id: {"passed": 3, "total": 4}}

    # The read over the evaluation tables (db/eval_queries.py) is exercised against real runs in tests/evals.
    monkeypatch.setattr(experiments, "pass_rate_by_version", pass_rate_by_version)
    result = experiments.experiment_results("exp")
    assert seen == [[arm.version_id for arm in exp.arms]]
    assert [arm["pass_rate"] for arm in result["arms"]] == [0.75, None]
