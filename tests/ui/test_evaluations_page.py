"""Evaluations page: start a HumanEval run from the form, watch it finish, pass@k, drill-down, compare."""

from __future__ import annotations

import time

import pytest
from tests.ui.ui_helpers import assert_no_crash, texts

from promptyard.evals.datasets import load_humaneval
from promptyard.plugins.function import FunctionPlugin

HUMANEVAL = load_humaneval()


def solve_even_tasks(prompt, params) -> str:
    """Solves even-numbered HumanEval tasks, returns None on the others."""
    task = next((t for t in HUMANEVAL.tasks.values() if t.prompt.strip() in str(prompt)), None)
    if task is not None and int(task.task_id.split("/")[1]) % 2 == 0:
        return task.canonical_solution
    return "    return None\n"


@pytest.fixture
def solver(live_api):
    from promptyard.models.service import install_plugin

    with live_api[0].app_context():
        install_plugin("solver", FunctionPlugin(solve_even_tasks))
    return "solver"


def wait_finished(api, run_id: int) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = api.get_eval(run_id)
        if run["status"] in ("succeeded", "failed"):
            return run
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} did not finish")


def test_empty(open_page):
    at = open_page("evaluations")
    assert "No evaluation runs yet" in texts(at)


def test_start_watch_drill_down_and_compare(open_page, api, solver):
    at = open_page("evaluations")
    next(r for r in at.radio if r.key == "eval_section").set_value("Start a run").run()
    next(s for s in at.selectbox if s.label == "Model").set_value("solver")
    next(n for n in at.number_input if n.label == "First N tasks").set_value(2)
    next(b for b in at.button if b.label == "Start run").click().run()
    assert_no_crash(at)
    run_id = at.session_state["eval_run"]
    assert wait_finished(api, run_id)["status"] == "succeeded"
    api.start_eval("humaneval", "solver", limit=2)
    second = api.list_evals()["items"][0]["id"]
    wait_finished(api, second)

    at.run()
    assert_no_crash(at)
    assert at.session_state["eval_section"] == "Runs"
    pass_table = at.dataframe[0].value
    assert list(pass_table["k"]) == ["pass@1"] and list(pass_table["pass rate"]) == [0.5]
    samples = at.dataframe[1].value
    assert sorted(samples["task"]) == ["HumanEval/0", "HumanEval/1"]
    next(s for s in at.selectbox if s.key == "sample_pick").set_value(1).run()
    assert any(w.value.startswith("Verdict: failed") for w in at.warning)

    next(r for r in at.radio if r.key == "eval_section").set_value("Compare two runs").run()
    next(b for b in at.button if b.label == "Compare").click().run()
    assert_no_crash(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"pass@1 run #{run_id}"] == "0.500" and metrics["McNemar p-value"] == "1.0000"
    assert "No task differs between the two runs." in texts(at)


def test_bad_k_values_are_refused(open_page, api, solver):
    at = open_page("evaluations")
    next(r for r in at.radio if r.key == "eval_section").set_value("Start a run").run()
    next(t for t in at.text_input if t.label == "k values").input("one, two")
    next(b for b in at.button if b.label == "Start run").click().run()
    assert "k values must be whole numbers" in texts(at)
    next(t for t in at.text_input if t.label == "k values").input("5")
    next(b for b in at.button if b.label == "Start run").click().run()
    assert_no_crash(at)
    assert at.error
    assert api.list_evals()["total"] == 0
