"""Experiments page: empty state, create from versions and weights (garbage refused), results per arm."""

from __future__ import annotations

import pytest
from tests.ui.ui_helpers import assert_no_crash, texts


@pytest.fixture
def greet(api):
    api.create_prompt("greet", "Say hello to {{ who }}")
    api.create_version("greet", "Say hi to {{ who }}")
    return api


def test_empty(open_page):
    at = open_page("experiments")
    assert "No experiments yet" in texts(at)


def test_create_then_see_results(open_page, greet):
    at = open_page("experiments")
    next(r for r in at.radio if r.key == "exp_section").set_value("New experiment").run()
    next(t for t in at.text_input if t.label == "Experiment name").input("greet-ab")
    next(n for n in at.number_input if n.label == "Weight of v2").set_value(3.0)
    next(b for b in at.button if b.label == "Create experiment").click().run()
    assert_no_crash(at)
    created = greet.get_experiment("greet-ab")
    assert sorted((arm["version"], arm["weight"]) for arm in created["arms"]) == [(1, 1.0), (2, 3.0)]
    assert at.session_state["exp_section"] == "Results"
    arms = at.dataframe[0].value
    assert sorted(arms["version"]) == [1, 2]
    assert {m.label: m.value for m in at.metric}["Winner"] == "none yet"


def test_one_version_or_bad_name_is_refused(open_page, greet):
    at = open_page("experiments")
    next(r for r in at.radio if r.key == "exp_section").set_value("New experiment").run()
    next(t for t in at.text_input if t.label == "Experiment name").input("solo")
    next(m for m in at.multiselect if m.label == "Versions to compare").set_value([1])
    next(b for b in at.button if b.label == "Create experiment").click().run()
    assert "at least two versions" in texts(at)
    next(m for m in at.multiselect if m.label == "Versions to compare").set_value([1, 2])
    next(t for t in at.text_input if t.label == "Experiment name").input("Bad Name!")
    next(b for b in at.button if b.label == "Create experiment").click().run()
    assert_no_crash(at)
    assert at.error
    assert greet.list_experiments()["total"] == 0


def test_pick_metric_and_alpha_then_stop(open_page, greet):
    at = open_page("experiments")
    next(r for r in at.radio if r.key == "exp_section").set_value("New experiment").run()
    next(t for t in at.text_input if t.label == "Experiment name").input("rated-ab")
    next(s for s in at.selectbox if s.label == "Metric").set_value("mean_rating")
    next(n for n in at.number_input if n.label == "Significance level (alpha)").set_value(0.01)
    next(b for b in at.button if b.label == "Create experiment").click().run()
    assert_no_crash(at)
    created = greet.get_experiment("rated-ab")
    assert created["metric"] == "mean_rating" and created["alpha"] == pytest.approx(0.01)
    assert "decided on mean rating at alpha 0.01" in texts(at)
    next(b for b in at.button if b.label == "Stop experiment").click().run()
    assert_no_crash(at)
    assert greet.get_experiment("rated-ab")["status"] == "stopped"
    assert "stopped" in texts(at) and not any(b.label == "Stop experiment" for b in at.button)
