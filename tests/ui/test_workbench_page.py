"""Workbench page: streamed runs of a prompt or raw input, metrics, rating, side-by-side comparison."""

from __future__ import annotations

import pytest
from tests.ui.ui_helpers import assert_no_crash, texts


@pytest.fixture
def greet(api, echo_model):
    api.create_prompt("greet", "Say hello to {{ who }}")
    api.create_version("greet", "Say hi to {{ who }}")
    api.set_label("greet", "production", 1)
    return api


def button(at, label):
    return next(b for b in at.button if b.label == label)


def test_no_model_says_where_to_register_one(open_page):
    at = open_page("workbench")
    assert "No model is registered yet" in texts(at)


def test_run_a_prompt_label_streams_and_records(open_page, greet):
    at = open_page("workbench", prompt="greet")
    next(s for s in at.selectbox if s.key == "run::target").set_value("label:production").run()
    next(t for t in at.text_area if t.label == "who").input("Ada").run()
    button(at, "Run").click().run()
    assert_no_crash(at)
    last = at.session_state["last_execution"]
    assert last["output"] == "Ada to hello Say" and last["version"] == 1 and last["label"] == "production"
    assert any("Ada to hello Say" in m.value for m in at.markdown)  # written by st.write_stream
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cache"] == "miss"
    assert any(c.value.endswith("· echo · succeeded") for c in at.caption)
    stored = greet.list_executions()["items"]
    assert [e["id"] for e in stored] == [last["id"]] and stored[0]["source"] in ("api", "ui")


def test_rate_the_last_run(open_page, greet):
    at = open_page("workbench", prompt="greet")
    next(t for t in at.text_area if t.label == "who").input("Bob").run()
    button(at, "Run").click().run()
    execution_id = at.session_state["last_execution"]["id"]
    button(at, "Submit rating").click().run()
    assert "Pick a rating" in texts(at)
    next(r for r in at.radio if r.label == "Rate this output").set_value(4)
    button(at, "Submit rating").click().run()
    assert_no_crash(at)
    assert f"execution {execution_id} rated 4/5" in texts(at)
    analytics = greet.analytics(group_by="prompt")["items"]
    assert analytics[0]["mean_rating"] == 4


def test_raw_input_run(open_page, greet):
    at = open_page("workbench")
    next(r for r in at.radio if r.key == "run::mode").set_value("Raw input").run()
    next(t for t in at.text_area if t.key == "run::raw").input("one two three").run()
    button(at, "Run").click().run()
    assert_no_crash(at)
    assert at.session_state["last_execution"]["output"] == "three two one"


def test_a_required_variable_must_be_filled_before_running(open_page, greet):
    at = open_page("workbench", prompt="greet")
    assert button(at, "Run").disabled
    assert "Fill in `who` to run." in texts(at)
    assert greet.list_executions()["total"] == 0


def test_a_failing_model_reads_as_a_message(open_page, greet, live_api):
    from promptyard.models.service import install_plugin
    from promptyard.plugins.function import FunctionPlugin

    def broken(prompt, params):
        raise RuntimeError("the GPU caught fire")

    with live_api[0].app_context():
        install_plugin("broken", FunctionPlugin(broken))
    at = open_page("workbench")
    next(r for r in at.radio if r.key == "run::mode").set_value("Raw input").run()
    next(t for t in at.text_area if t.key == "run::raw").input("hello").run()
    next(s for s in at.selectbox if s.key.startswith("run::model::")).set_value("broken")
    button(at, "Run").click().run()
    assert_no_crash(at)
    assert at.error
    assert greet.list_executions()["items"][0]["status"] == "failed"


def test_compare_two_versions_side_by_side(open_page, greet):
    at = open_page("workbench", prompt="greet")
    next(r for r in at.radio if r.key == "bench_section").set_value("Compare side by side").run()
    next(t for t in at.text_area if t.key == "cmp::greet::who").input("Cy").run()
    next(t for t in at.text_input if t.key == "cmp::ver_a").input("v1")
    next(t for t in at.text_input if t.key == "cmp::ver_b").input("label:production")
    button(at, "Run both").click().run()
    assert_no_crash(at)
    a, b = at.session_state["compare_results"]
    assert a["output"] == "Cy to hello Say" and b["output"] == "Cy to hello Say"
    assert b["cache_hit"] is True  # same model, version and variables: the second answer comes from the cache
    next(t for t in at.text_input if t.key == "cmp::ver_b").input("v7x")
    button(at, "Run both").click().run()
    assert "is not a version choice" in texts(at)


def test_the_model_defaults_to_the_versions_model_else_one_that_can_run(open_page, api, echo_model, live_api):
    """A fresh install has presets without weights: the first Run must not pick one of them."""
    from promptyard.models.service import install_plugin
    from promptyard.plugins.function import FunctionPlugin

    api.register_model("aaa-not-downloaded", "transformers", "nobody/not-downloaded-anywhere")
    with live_api[0].app_context():
        install_plugin("zz-other", FunctionPlugin(lambda prompt, params: "other"))
    api.create_prompt("plain", "Say {{ who }}")
    api.create_prompt("pinned", "Hi {{ who }}", params={"model": "zz-other"})
    at = open_page("workbench", prompt="plain")
    picker = next(s for s in at.selectbox if s.key.startswith("run::model::"))
    assert picker.value == "echo"  # the first available one, not the alphabetically first
    assert "aaa-not-downloaded (not downloaded)" in picker.options
    next(t for t in at.text_area if t.label == "who").input("Ada").run()
    button(at, "Run").click().run()
    assert_no_crash(at)
    assert at.session_state["last_execution"]["model"] == "echo"

    next(s for s in at.selectbox if s.key == "run::prompt").set_value("pinned").run()
    assert next(s for s in at.selectbox if s.key.startswith("run::model::")).value == "zz-other"  # the version's own model
    next(s for s in at.selectbox if s.key.startswith("run::model::")).set_value("aaa-not-downloaded").run()
    assert "not downloaded" in texts(at) and "Models page" in texts(at)


def test_runs_sent_into_an_experiment_get_the_subjects_arm(open_page, greet):
    greet.create_experiment("greet-ab", "greet", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}])
    arm = greet.assign("greet-ab", "user-7")["version"]
    at = open_page("workbench")
    next(r for r in at.radio if r.key == "run::mode").set_value("Experiment").run()
    assert next(s for s in at.selectbox if s.key == "run::experiment").value == "greet-ab"
    next(t for t in at.text_input if t.key == "run::subject").input("user-7").run()
    next(t for t in at.text_area if t.label == "who").input("Ada").run()
    for _ in range(2):
        button(at, "Run").click().run()
        assert_no_crash(at)
    runs = greet.list_executions()["items"]
    assert len(runs) == 2 and {r["version"] for r in runs} == {arm}
    assert all(r["experiment"] == "greet-ab" for r in runs)
    results = greet.experiment_results("greet-ab")
    assert sum(int(a.get("executions") or 0) for a in results["arms"]) == 2
