"""End to end: executions run through an A/B experiment are recorded with their arm and counted in its results."""

from __future__ import annotations

import hashlib

import pytest
from scipy import stats

from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin, prompt_text

SUBJECTS = [f"user-{i}" for i in range(60)]
# Out of 10 hash buckets per subject, how many fail on each version: version 2 fails far more often.
FAILING_BUCKETS = {"v1": 1, "v2": 6}


def fails(text: str) -> bool:
    """Whether the fake backend fails on this rendered prompt ("vN: review the change by SUBJECT")."""
    version, subject = text.split(": review the change by ")
    bucket = int(hashlib.sha256(subject.encode()).hexdigest(), 16) % 10
    return bucket < FAILING_BUCKETS[version]


def flaky(prompt, params):
    text = prompt_text(prompt)
    if fails(text):
        raise RuntimeError("the backend gave up")
    return "looks good"


@pytest.fixture
def experiment(client):
    install_plugin("flaky", FunctionPlugin(flaky, source="fake/flaky"))
    created = client.post("/api/v1/prompts", json={"name": "review", "template": "v1: review the change by {{ who }}"})
    assert created.status_code == 201
    added = client.post("/api/v1/prompts/review/versions", json={"template": "v2: review the change by {{ who }}"})
    assert added.status_code == 201 and added.get_json()["version"] == 2
    body = {"name": "review-ab", "prompt": "review", "arms": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]}
    response = client.post("/api/v1/experiments", json=body)
    assert response.status_code == 201
    return response.get_json()


def test_runs_through_an_experiment_are_recorded_and_counted(client, experiment):
    outcomes = {1: {"succeeded": 0, "failed": 0}, 2: {"succeeded": 0, "failed": 0}}
    ratings = {1: [], 2: []}
    failed_subjects = set()
    for subject in SUBJECTS:
        response = client.post("/api/v1/executions", json={
            "model": "flaky", "experiment": "review-ab", "subject": subject, "variables": {"who": subject},
        })
        if response.status_code == 503:
            failed_subjects.add(subject)
            continue
        assert response.status_code == 201
        run = response.get_json()
        version = run["version"]
        assert (run["status"], run["prompt"], run["output"]) == ("succeeded", "review", "looks good")
        assert (run["experiment"], run["experiment_id"], run["subject"]) == ("review-ab", experiment["id"], subject)
        assert not fails(f"v{version}: review the change by {subject}")
        outcomes[version]["succeeded"] += 1
        rating = 5 if version == 1 else 3
        assert client.post(f"/api/v1/executions/{run['id']}/feedback", json={"rating": rating}).status_code == 201
        ratings[version].append(rating)

    # Failed runs are recorded too, with the arm they ran on: the one the experiment assigns the subject.
    history = client.get("/api/v1/executions", query_string={"prompt": "review", "limit": 500}).get_json()
    assert history["total"] == len(SUBJECTS)
    for item in history["items"]:
        assert (item["experiment"], item["experiment_id"]) == ("review-ab", experiment["id"])
        assert item["version"] in (1, 2) and item["subject"] in SUBJECTS
    failed = [item for item in history["items"] if item["status"] == "failed"]
    assert {item["subject"] for item in failed} == failed_subjects
    for item in failed:
        assert fails(f"v{item['version']}: review the change by {item['subject']}")
        assigned = client.get("/api/v1/experiments/review-ab/assign", query_string={"subject": item["subject"]})
        assert assigned.get_json() == {"version": item["version"]}
        outcomes[item["version"]]["failed"] += 1

    results = client.get("/api/v1/experiments/review-ab/results").get_json()
    by_version = {arm["version"]: arm for arm in results["arms"]}
    for version in (1, 2):
        arm, counts = by_version[version], outcomes[version]
        total = counts["succeeded"] + counts["failed"]
        assert total > 10  # both arms get a fair share of the subjects
        assert (arm["executions"], arm["successes"], arm["assignments"]) == (total, counts["succeeded"], total)
        assert arm["success_rate"] == pytest.approx(counts["succeeded"] / total)
        assert arm["ratings"] == len(ratings[version])
        assert arm["mean_rating"] == pytest.approx(sum(ratings[version]) / len(ratings[version]))
    # The pooled two-proportion z-test equals the uncorrected chi-square test on the 2x2 table.
    table = [[outcomes[v]["succeeded"], outcomes[v]["failed"]] for v in (1, 2)]
    assert results["test"] == "two_proportion_z"
    assert results["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1])
    assert results["p_value"] < results["alpha"] and results["significant"] is True
    assert results["winner"] == 1
    assert by_version[1]["success_rate"] > by_version[2]["success_rate"]
