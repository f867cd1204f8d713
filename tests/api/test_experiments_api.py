"""The experiments endpoints: contract paths, status codes, and garbage input."""

from __future__ import annotations

import pytest

from tests.prompts.test_experiments import make_prompt, record_runs

ARMS = [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]


def create(client, **overrides):
    return client.post("/api/v1/experiments", json={"name": "exp", "prompt": "greet", "arms": ARMS, **overrides})


def test_create_show_list_stop(client):
    make_prompt()
    response = create(client, alpha=0.01)
    assert response.status_code == 201
    body = response.get_json()
    assert body["name"] == "exp" and body["arms"] == [{"version": 1, "weight": 1.0}, {"version": 2, "weight": 1.0}]
    assert body["alpha"] == 0.01 and body["status"] == "running"
    assert client.get("/api/v1/experiments/exp").get_json() == body
    listing = client.get("/api/v1/experiments?limit=10").get_json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "exp"
    stopped = client.post("/api/v1/experiments/exp/stop")
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    assert client.post("/api/v1/experiments/exp/stop").status_code == 409


def test_assign_is_sticky(client):
    make_prompt()
    create(client)
    answers = {client.get(f"/api/v1/experiments/exp/assign?subject=user-{i}").get_json()["version"] for i in range(20)}
    assert answers == {1, 2}
    first = client.get("/api/v1/experiments/exp/assign?subject=alice").get_json()
    assert all(client.get("/api/v1/experiments/exp/assign?subject=alice").get_json() == first for _ in range(5))


def test_results_shape(client):
    make_prompt()
    create(client)
    record_runs("exp", 1, succeeded=60, failed=140)
    record_runs("exp", 2, succeeded=120, failed=80)
    body = client.get("/api/v1/experiments/exp/results").get_json()
    assert body["winner"] == 2 and body["test"] == "two_proportion_z" and body["p_value"] < 0.001
    assert set(body["arms"][0]) >= {"version", "executions", "success_rate", "mean_rating", "pass_rate"}


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"arms": [{"version": 1, "weight": -1}, {"version": 2, "weight": 1}]}, 422),
        ({"arms": [{"version": 1, "weight": 0}, {"version": 2, "weight": 0}]}, 422),
        ({"arms": [{"version": 1, "weight": 1}, {"version": 1, "weight": 1}]}, 422),
        ({"arms": [{"version": 1, "weight": 1}]}, 422),
        ({"arms": [{"version": 1, "weight": 1}, {"version": 7, "weight": 1}]}, 404),
        ({"arms": "1,2"}, 422),
        ({"arms": [{"version": 1, "weight": "heavy"}, {"version": 2, "weight": 1}]}, 422),
        ({"prompt": "missing"}, 404),
        ({"name": "Not A Name"}, 422),
        ({"alpha": 2}, 422),
        ({"surprise": True}, 422),
    ],
)
def test_bad_creates_get_the_error_shape_and_change_nothing(client, payload, status):
    make_prompt()
    response = create(client, **payload)
    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message", "details"}
    assert client.get("/api/v1/experiments").get_json()["total"] == 0


def test_malformed_and_non_object_bodies_are_400(client):
    make_prompt()
    for data in ("{not json", "[1, 2]", '"text"'):
        response = client.post("/api/v1/experiments", data=data, content_type="application/json")
        assert response.status_code == 400, data
        assert response.get_json()["error"]["code"] == "malformed_request"


def test_second_running_experiment_is_409(client):
    make_prompt()
    create(client)
    response = create(client, name="exp2")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "experiment_already_running"


def test_unknown_experiment_and_missing_subject(client):
    make_prompt()
    create(client)
    assert client.get("/api/v1/experiments/nope").status_code == 404
    assert client.get("/api/v1/experiments/nope/results").status_code == 404
    assert client.get("/api/v1/experiments/nope/assign?subject=a").status_code == 404
    assert client.get("/api/v1/experiments/exp/assign").status_code == 422
    assert client.get("/api/v1/experiments/exp/assign?subject=" + "x" * 300).status_code == 422
    assert client.get("/api/v1/experiments?limit=9999").status_code == 422


def test_experiment_paths_are_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/experiments", "/api/v1/experiments/{name}/assign", "/api/v1/experiments/{name}/results",
                 "/api/v1/experiments/{name}/stop"):
        assert path in paths, path


def test_nan_weights_are_refused(client):
    make_prompt()
    body = '{"name": "exp", "prompt": "greet", "arms": [{"version": 1, "weight": NaN}, {"version": 2, "weight": 1}]}'
    response = client.post("/api/v1/experiments", data=body, content_type="application/json")
    assert response.status_code in (400, 422)
    assert client.get("/api/v1/experiments").get_json()["total"] == 0
