"""Evaluations page: start a run from the form on any listed dataset, watch both phases, pass@k as numbers and a
chart, per-task pass@1, isolation, drill-down, compare."""

from __future__ import annotations

import json
import threading
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


def wait_for(api, run_id: int, reached) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = api.get_eval(run_id)
        if reached(run):
            return run
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} did not get there")


def wait_finished(api, run_id: int) -> dict:
    return wait_for(api, run_id, lambda run: run["status"] in ("succeeded", "failed"))


def chart_rows(chart) -> list[dict]:
    """The rows a chart draws (Streamlit sends its data as Arrow)."""
    import pyarrow

    return pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pylist()


def bars(at) -> list[str]:
    """The texts of the page's progress bars, in order."""
    return [bar.proto.text for bar in at.get("progress")]


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
    assert bars(at) == ["Generated 2/2 samples", "Executed 2/2 samples"]
    assert "**succeeded** · phase: done" in texts(at)
    levels = api.get_eval(run_id)["isolation"]["levels"]
    assert f"Sandbox isolation: {next(iter(levels))} (2 samples)" in texts(at)
    pass_table = at.dataframe[0].value
    assert list(pass_table["k"]) == ["pass@1"] and list(pass_table["pass rate"]) == [0.5]
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert chart["mark"]["type"] == "bar" and chart["title"] == "pass@k"
    assert chart_rows(at.get("vega_lite_chart")[0]) == [{"k": "pass@1", "pass rate": 0.5}]
    per_task = at.dataframe[1].value
    assert list(per_task["task"]) == ["HumanEval/0", "HumanEval/1"] and list(per_task["pass@1"]) == [1.0, 0.0]
    samples = at.dataframe[2].value
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


@pytest.fixture
def held_model(live_api):
    """A model that answers the first task at once and holds the second until `release` is set."""
    from promptyard.models.service import install_plugin

    release, calls = threading.Event(), []

    def answer(prompt, params) -> str:
        calls.append(prompt)
        if len(calls) > 1:
            release.wait(60)
        return "    return None\n"

    with live_api[0].app_context():
        install_plugin("held", FunctionPlugin(answer))
    yield release
    release.set()


def test_progress_moves_during_generation(open_page, api, held_model):
    run_id = api.start_eval("humaneval", "held", limit=2)["id"]
    wait_for(api, run_id, lambda run: run["progress"]["generated"] == 1)
    at = open_page("evaluations", eval_run=run_id)
    # Nothing is executed yet, but the generated bar has moved and the phase says what is going on.
    assert bars(at) == ["Generated 1/2 samples", "Executed 0/2 samples"]
    assert [bar.proto.value for bar in at.get("progress")] == [50, 0]
    assert "**running** · phase: generating" in texts(at)
    assert "Sandbox isolation: reported once samples have run." in texts(at)
    assert not at.get("vega_lite_chart") and not at.dataframe
    held_model.set()
    assert wait_finished(api, run_id)["status"] == "succeeded"


def test_a_registered_custom_dataset_is_offered_and_runs(open_page, api, solver):
    tasks = [{"task_id": f"mine/{number}", "prompt": "Write one().", "entry_point": "one",
              "test_list": ["assert one() == 1"]} for number in (10, 2)]
    api.register_dataset("mine", "".join(json.dumps(task) + "\n" for task in tasks))
    at = open_page("evaluations")
    next(r for r in at.radio if r.key == "eval_section").set_value("Start a run").run()
    picker = next(s for s in at.selectbox if s.label == "Dataset")
    assert picker.options == ["humaneval · 164 tasks", "mbpp · size known once loaded",
                              "mbpp-full · size known once loaded", "mine (custom) · 2 tasks"]
    picker.set_value("mine")
    next(s for s in at.selectbox if s.label == "Model").set_value("solver")
    next(b for b in at.button if b.label == "Start run").click().run()
    assert_no_crash(at)
    run = wait_finished(api, at.session_state["eval_run"])
    assert (run["dataset"], run["status"], run["progress"]["total"]) == ("mine", "succeeded", 2)
    at.run()
    assert_no_crash(at)
    # Task ids in number order, each with its pass@1 (the solver only knows HumanEval).
    per_task = at.dataframe[1].value
    assert list(per_task["task"]) == ["mine/2", "mine/10"] and list(per_task["pass@1"]) == [0.0, 0.0]


def test_a_failed_run_shows_where_it_stopped(open_page, api, live_api):
    from promptyard.models.service import install_plugin

    def broken(prompt, params) -> str:
        raise RuntimeError("the model fell over")

    with live_api[0].app_context():
        install_plugin("broken", FunctionPlugin(broken))
    run_id = api.start_eval("humaneval", "broken", limit=2)["id"]
    assert wait_finished(api, run_id)["status"] == "failed"
    at = open_page("evaluations", eval_run=run_id)
    assert "**failed** · stopped while generating" in texts(at)
    assert bars(at) == ["Generated 0/2 samples", "Executed 0/2 samples"]
    assert any(box.value.startswith("The run failed:") for box in at.error)
    assert "Per task" not in texts(at) and "No samples recorded." in texts(at)


def start_form(at, **values):
    """Fill the run form's fields by label and press Start run."""
    next(r for r in at.radio if r.key == "eval_section").set_value("Start a run").run()
    for label, value in values.items():
        if label == "Model":
            next(s for s in at.selectbox if s.label == label).set_value(value)
        else:
            next(n for n in at.number_input if n.label == label).set_value(value)
    next(b for b in at.button if b.label == "Start run").click().run()
    assert_no_crash(at)


def test_run_form_sends_sampling_params_and_timeout(open_page, api, solver):
    at = open_page("evaluations")
    start_form(at, **{"Model": "solver", "Samples per task (n)": 2, "First N tasks": 1, "Temperature": 0.8,
                      "top_p": 0.9, "Max new tokens": 64, "Test timeout (s)": 5.0})
    run = wait_finished(api, at.session_state["eval_run"])
    assert run["status"] == "succeeded", run["error"]
    assert run["n"] == 2 and run["timeout"] == 5.0
    assert run["params"] == {"temperature": 0.8, "top_p": 0.9, "max_new_tokens": 64, "do_sample": True}


def test_n_above_one_with_greedy_params_is_refused_in_the_form(open_page, api, solver):
    at = open_page("evaluations")
    start_form(at, **{"Model": "solver", "Samples per task (n)": 4, "First N tasks": 1})
    assert any("4 identical completions" in box.value and "temperature" in box.value for box in at.error)
    assert api.list_evals()["total"] == 0


def test_a_stopped_run_is_resumed_from_its_page(open_page, api, live_api):
    from promptyard.models.service import install_plugin

    healthy = threading.Event()

    def flaky(prompt, params) -> str:
        if not healthy.is_set():
            raise RuntimeError("the model fell over")
        return solve_even_tasks(prompt, params)

    with live_api[0].app_context():
        install_plugin("flaky", FunctionPlugin(flaky))
    run_id = api.start_eval("humaneval", "flaky", limit=2)["id"]
    assert wait_finished(api, run_id)["status"] == "failed"
    at = open_page("evaluations", eval_run=run_id)
    assert any("No sample could be generated" in box.value for box in at.error)
    healthy.set()
    next(b for b in at.button if b.label == "Resume run").click().run()
    assert_no_crash(at)
    run = wait_finished(api, run_id)
    assert run["status"] == "succeeded" and run["pass_at_k"] == {"pass@1": 0.5}
    assert run["generation_failures"] == 0


def test_samples_in_task_order_and_a_verdict_that_reads(open_page, api, solver):
    run_id = api.start_eval("humaneval", "solver", limit=11)["id"]
    assert wait_finished(api, run_id)["status"] == "succeeded"
    at = open_page("evaluations")
    assert_no_crash(at)
    samples = at.dataframe[2].value
    tasks = list(samples["task"])
    assert tasks.index("HumanEval/2") < tasks.index("HumanEval/10")  # by number, not as text
    assert tasks == [f"HumanEval/{i}" for i in range(11)]
    failing = next(i for i, s in enumerate(samples.itertuples()) if not s.passed)
    next(s for s in at.selectbox if s.key == "sample_pick").set_value(failing).run()
    verdict = next(w.value for w in at.warning if w.value.startswith("Verdict:"))
    assert "(failed" not in verdict and not verdict.endswith(": )"), verdict
