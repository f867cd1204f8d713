"""Roles as documented (a GET never writes; archiving a prompt is an editor's, keys and models an admin's) and
bounded experiment weights."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from promptyard import keys
from promptyard.db import db
from promptyard.db.models import Experiment, ExperimentAssignment, Prompt
from promptyard.prompts import experiments
from promptyard.errors import Unprocessable
from tests.prompts.test_experiments import make_prompt

ARMS = [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assignments() -> int:
    return db.session.scalar(select(func.count()).select_from(ExperimentAssignment))


@pytest.fixture
def role_keys(client):
    make_prompt()
    assert client.post("/api/v1/experiments", json={"name": "exp", "prompt": "greet", "arms": ARMS}).status_code == 201
    return {role: keys.create_key(role)[1] for role in ("viewer", "editor", "admin")}


def test_get_assign_writes_nothing_even_for_a_viewer(client, role_keys):
    viewer = bearer(role_keys["viewer"])
    first = client.get("/api/v1/experiments/exp/assign?subject=alice", headers=viewer)
    assert first.status_code == 200
    assert all(client.get("/api/v1/experiments/exp/assign?subject=alice", headers=viewer).get_json()
               == first.get_json() for _ in range(3))
    assert assignments() == 0


def test_post_assign_records_needs_an_editor_and_agrees_with_get(client, role_keys):
    peeked = client.get("/api/v1/experiments/exp/assign?subject=bob", headers=bearer(role_keys["viewer"])).get_json()
    response = client.post("/api/v1/experiments/exp/assign", json={"subject": "bob"},
                           headers=bearer(role_keys["viewer"]))
    assert response.status_code == 403 and assignments() == 0
    response = client.post("/api/v1/experiments/exp/assign", json={"subject": "bob"},
                           headers=bearer(role_keys["editor"]))
    assert response.status_code == 200 and response.get_json() == peeked
    assert assignments() == 1
    again = client.post("/api/v1/experiments/exp/assign", json={"subject": "bob"}, headers=bearer(role_keys["editor"]))
    assert again.get_json() == peeked and assignments() == 1


@pytest.mark.parametrize("body", [{}, {"subject": ""}, {"subject": "x" * 300}, {"subject": 5}, {"who": "a"}])
def test_post_assign_refuses_garbage_and_records_nothing(client, role_keys, body):
    response = client.post("/api/v1/experiments/exp/assign", json=body, headers=bearer(role_keys["editor"]))
    assert response.status_code == 422
    assert assignments() == 0


def test_a_stopped_experiment_peeks_recorded_subjects_only(client, role_keys):
    editor = bearer(role_keys["editor"])
    client.post("/api/v1/experiments/exp/assign", json={"subject": "carol"}, headers=editor)
    assert client.post("/api/v1/experiments/exp/stop", headers=editor).status_code == 200
    assert client.get("/api/v1/experiments/exp/assign?subject=carol", headers=editor).status_code == 200
    assert client.get("/api/v1/experiments/exp/assign?subject=dave", headers=editor).status_code == 409


def test_archiving_a_prompt_is_an_editors_and_not_a_viewers(client, role_keys):
    response = client.delete("/api/v1/prompts/greet", headers=bearer(role_keys["viewer"]))
    assert response.status_code == 403
    assert not db.session.scalar(select(Prompt.archived).where(Prompt.name == "greet"))
    assert client.delete("/api/v1/prompts/greet", headers=bearer(role_keys["editor"])).status_code == 204
    db.session.expire_all()
    assert db.session.scalar(select(Prompt.archived).where(Prompt.name == "greet"))


def test_keys_models_and_the_cache_are_an_admins(client, role_keys):
    editor = bearer(role_keys["editor"])
    assert client.post("/api/v1/keys", json={"role": "viewer"}, headers=editor).status_code == 403
    assert client.delete("/api/v1/cache", headers=editor).status_code == 403
    response = client.post("/api/v1/models", json={"name": "m", "plugin": "function", "source": "x"}, headers=editor)
    assert response.status_code == 403


@pytest.mark.parametrize("weights", [(1e308, 1e308), (1e7, 1), (-1, 2), (0, 0)])
def test_weights_out_of_bounds_are_refused_and_create_nothing(client, weights):
    make_prompt()
    arms = [{"version": 1, "weight": weights[0]}, {"version": 2, "weight": weights[1]}]
    response = client.post("/api/v1/experiments", json={"name": "exp", "prompt": "greet", "arms": arms})
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Experiment)) == 0


def test_the_service_bounds_weights_too(app):
    make_prompt()
    with pytest.raises(Unprocessable) as caught:
        experiments.create_experiment("exp", "greet",
                                      [{"version": 1, "weight": 1e308}, {"version": 2, "weight": 1e308}])
    assert caught.value.code == "invalid_weight"


def test_the_largest_weights_still_split_subjects(client):
    make_prompt()
    arms = [{"version": 1, "weight": experiments.MAX_WEIGHT}, {"version": 2, "weight": experiments.MAX_WEIGHT}]
    assert client.post("/api/v1/experiments", json={"name": "exp", "prompt": "greet", "arms": arms}).status_code == 201
    seen = {client.get(f"/api/v1/experiments/exp/assign?subject=u{i}").get_json()["version"] for i in range(30)}
    assert seen == {1, 2}
