"""Evaluation runs through the real execution pipeline: a FunctionPlugin model at the boundary, and a tiny GPT-2."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.models import Execution
from promptyard.evals.datasets import load_humaneval
from promptyard.models.service import install_plugin, register_model
from promptyard.plugins.function import FunctionPlugin, prompt_text

HUMANEVAL = load_humaneval()
TASKS = list(HUMANEVAL.tasks.values())
# How many of the first three samples of each of the first four tasks are right (by the order they are asked for).
RIGHT_OF_THREE = {"HumanEval/0": 3, "HumanEval/1": 1, "HumanEval/2": 0, "HumanEval/3": 2}


def task_in(text: str):
    """The HumanEval task whose prompt the model was shown (as text, or inside a chat message)."""
    return next(t for t in TASKS if t.prompt.strip() in text)


class CompletionModel:
    """Completion mode: the canonical body for the first RIGHT_OF_THREE[task] requests of a task, else a wrong one."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, prompt, params) -> str:
        task = task_in(prompt_text(prompt))
        self.calls[task.task_id] += 1
        if self.calls[task.task_id] <= RIGHT_OF_THREE.get(task.task_id, 0):
            return task.canonical_solution + "\n\ndef trailing():\n    pass\n"
        return "    return None\n"


def chat_model(prompt, params) -> str:
    """Chat mode: prose around a fenced, whole function; right for even-numbered tasks."""
    assert isinstance(prompt, list) and prompt[0]["role"] == "user"
    task = task_in(prompt[0]["content"])
    body = task.canonical_solution if int(task.task_id.split("/")[1]) % 2 == 0 else "    return None\n"
    return f"Sure! Here is the function:\n\n```python\n{task.prompt}{body}```\n\nIt handles every case."


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_WORKERS": 2}


def wait(app, run_id: int) -> EvalRun:
    db.session.expire_all()
    run = db.session.get(EvalRun, run_id)
    app.extensions["promptyard.jobs"].wait(run.job_id, timeout=300)
    db.session.expire_all()
    return db.session.get(EvalRun, run_id)


def check_linked_executions(run_id: int, *, model: str) -> list[Execution]:
    """Every sample points at the execution that produced its raw output, recorded with source "eval"."""
    samples = db.session.query(EvalSample).filter_by(run_id=run_id).all()
    assert samples and all(s.execution_id is not None for s in samples)
    executions = {row.id: row for row in db.session.query(Execution).filter(
        Execution.id.in_([s.execution_id for s in samples])).all()}
    assert len(executions) == len(samples)
    for sample in samples:
        row = executions[sample.execution_id]
        assert row.source == "eval" and row.model_name == model and row.status == "succeeded"
        assert row.output == sample.raw_output
    return list(executions.values())


def test_api_run_through_the_pipeline_scores_pass_at_k(app, client):
    model = CompletionModel()
    install_plugin("coder", FunctionPlugin(model))
    response = client.post("/api/v1/evals", json={
        "dataset": "humaneval", "model": "coder", "n": 3, "k": [1, 2], "limit": 4, "params": {"temperature": 0.8},
    })
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] in ("queued", "running", "succeeded")
    run = wait(app, response.get_json()["id"])
    body = client.get(f"/api/v1/evals/{run.id}").get_json()
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"] == {"done": 12, "total": 12, "generated": 12, "phase": "done"}
    # Per task c of n=3: 3, 1, 0, 2. pass@1 = mean(c/3) = 0.5; pass@2 = mean(1, 1 - 1/3, 0, 1) = 2/3.
    assert body["pass_at_k"]["pass@1"] == pytest.approx(0.5)
    assert body["pass_at_k"]["pass@2"] == pytest.approx(2 / 3)
    assert sum(model.calls.values()) == 12
    executions = check_linked_executions(run.id, model="coder")
    # n > 1: every sample is its own generation, none served from the cache.
    assert not any(row.cache_hit for row in executions)
    samples = client.get(f"/api/v1/evals/{run.id}/samples?limit=500").get_json()["items"]
    passed = Counter(s["task_id"] for s in samples if s["passed"])
    assert dict(passed) == {k: v for k, v in RIGHT_OF_THREE.items() if v}
    assert all("trailing" not in s["completion"] for s in samples)
    assert all((s["result"] == "passed") == s["passed"] for s in samples)


def test_single_sample_runs_use_the_response_cache(app, client):
    model = CompletionModel()
    install_plugin("coder", FunctionPlugin(model))
    body = {"dataset": "humaneval", "model": "coder", "n": 1, "k": [1], "limit": 4}
    first = wait(app, client.post("/api/v1/evals", json=body).get_json()["id"])
    second = wait(app, client.post("/api/v1/evals", json=body).get_json()["id"])
    assert first.status == second.status == "succeeded"
    # Greedy and n = 1: the second run is answered from the cache (recorded as cache hits), the model is not asked.
    assert sum(model.calls.values()) == 4
    assert not any(row.cache_hit for row in check_linked_executions(first.id, model="coder"))
    assert all(row.cache_hit for row in check_linked_executions(second.id, model="coder"))
    # Same outputs, same verdicts: the first sample of tasks 0, 1 and 3 is right.
    assert first.pass_at_k == second.pass_at_k == {"pass@1": pytest.approx(0.75)}


def test_chat_mode_extracts_the_fenced_function(app, client):
    install_plugin("chatty", FunctionPlugin(chat_model))
    response = client.post("/api/v1/evals", json={
        "dataset": "humaneval", "model": "chatty", "n": 1, "k": [1], "limit": 4, "mode": "chat",
    })
    run = wait(app, response.get_json()["id"])
    assert run.status == "succeeded", run.error
    assert run.pass_at_k == {"pass@1": pytest.approx(0.5)}
    check_linked_executions(run.id, model="chatty")
    samples = db.session.query(EvalSample).filter_by(run_id=run.id).all()
    assert all("Sure!" not in s.completion and "```" not in s.completion for s in samples)
    assert {s.task_id for s in samples if s.passed} == {"HumanEval/0", "HumanEval/2"}


def make_prompt_with_experiment(client) -> None:
    """Prompt `wrap` with two versions (v2 adds a marker the model answers wrongly), label `candidate` on v2."""
    created = client.post("/api/v1/prompts", json={"name": "wrap", "template": "{{ prompt }}"})
    assert created.status_code == 201, created.get_json()
    added = client.post("/api/v1/prompts/wrap/versions", json={"template": "# v2, be brief\n{{ prompt }}"})
    assert added.status_code == 201, added.get_json()
    assert client.put("/api/v1/prompts/wrap/labels/candidate", json={"version": 2}).status_code == 200
    experiment = client.post("/api/v1/experiments", json={
        "name": "wrap-ab", "prompt": "wrap", "arms": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
    })
    assert experiment.status_code == 201, experiment.get_json()


def versioned_model(prompt, params) -> str:
    """Right on every task under v1; under v2's marker, right only on HumanEval/0."""
    text = prompt_text(prompt)
    task = task_in(text)
    if "# v2" in text and task.task_id != "HumanEval/0":
        return "    return None\n"
    return task.canonical_solution


def test_run_against_a_labelled_version_feeds_the_experiment_pass_rate(app, client):
    install_plugin("coder", FunctionPlugin(versioned_model))
    make_prompt_with_experiment(client)
    before = client.get("/api/v1/experiments/wrap-ab/results").get_json()
    assert [arm["pass_rate"] for arm in before["arms"]] == [None, None]

    response = client.post("/api/v1/evals", json={
        "dataset": "humaneval", "model": "coder", "prompt": "wrap", "label": "candidate", "n": 2, "k": [1],
        "params": {"temperature": 0.7},
        "limit": 4,
    })
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["version"] == 2
    run = wait(app, response.get_json()["id"])
    assert run.status == "succeeded", run.error
    assert run.pass_at_k == {"pass@1": pytest.approx(0.25)}
    for row in check_linked_executions(run.id, model="coder"):
        assert row.prompt_name == "wrap" and row.version_number == 2
        assert row.rendered_input.startswith("# v2")

    results = client.get("/api/v1/experiments/wrap-ab/results").get_json()
    rates = {arm["version"]: arm["pass_rate"] for arm in results["arms"]}
    assert rates == {1: None, 2: pytest.approx(2 / 8)}

    # The same model on v1 (by version number) fills in the other arm.
    response = client.post("/api/v1/evals", json={
        "dataset": "humaneval", "model": "coder", "prompt": "wrap", "version": 1, "n": 1, "k": [1], "limit": 4,
    })
    assert wait(app, response.get_json()["id"]).status == "succeeded"
    results = client.get("/api/v1/experiments/wrap-ab/results").get_json()
    assert {arm["version"]: arm["pass_rate"] for arm in results["arms"]} == {1: 1.0, 2: pytest.approx(0.25)}


def test_cli_run_through_the_pipeline(app, cli):
    model = CompletionModel()
    install_plugin("coder", FunctionPlugin(model))
    result = cli("eval", "run", "--dataset", "humaneval", "--model", "coder", "-n", "3", "-k", "1,2", "--limit", "4",
                 "--param", "temperature=0.8")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout[result.stdout.index("{"):])
    assert run["status"] == "succeeded" and run["progress"]["done"] == run["progress"]["total"] == 12
    assert run["pass_at_k"] == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(2 / 3)}
    db.session.expire_all()
    check_linked_executions(run["id"], model="coder")
    refused = cli("eval", "run", "--dataset", "humaneval", "--model", "ghost", "--limit", "1")
    assert refused.exit_code == 2 and "ghost" in refused.output


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"dataset": "humaneval", "model": "ghost"}, 404, "model_not_found"),
        ({"dataset": "nope", "model": "coder"}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "prompt": "nope"}, 404, "prompt_not_found"),
        ({"dataset": "humaneval", "model": "coder", "prompt": "wrap", "label": "nope"}, 404, None),
        ({"dataset": "humaneval", "model": "coder", "prompt": "wrap", "version": 9}, 404, None),
        ({"dataset": "humaneval", "model": "coder", "n": 0}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "n": 1001}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "n": 2, "k": [0]}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "n": 2, "k": [3]}, 422, "invalid_k"),
        ({"dataset": "humaneval", "model": "coder", "n": 2, "k": []}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "limit": 0}, 422, None),
        ({"dataset": "humaneval", "model": "coder", "timeout": 0}, 422, None),
    ],
)
def test_bad_bodies_against_the_real_pipeline_write_nothing(app, client, body, status, code):
    install_plugin("coder", FunctionPlugin(versioned_model))
    assert client.post("/api/v1/prompts", json={"name": "wrap", "template": "{{ prompt }}"}).status_code == 201
    executions_before = db.session.query(Execution).count()
    response = client.post("/api/v1/evals", json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    assert db.session.query(EvalRun).count() == 0
    assert db.session.query(Execution).count() == executions_before


def test_tiny_gpt2_end_to_end(app, client, tiny_gpt2_dir, tmp_path):
    from promptyard.evals.datasets import register_custom

    # The tiny model reads 128 tokens at most, less than a HumanEval prompt: two short tasks in a custom dataset,
    # one of each style: code to continue (a check function) and a statement with asserts (MBPP-like).
    tasks = tmp_path / "short.jsonl"
    tasks.write_text("".join(json.dumps(line) + "\n" for line in [
        {"task_id": "short/0", "prompt": "def add(a, b):\n", "entry_point": "add",
         "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n"},
        {"task_id": "short/1", "prompt": "Write neg(x), the opposite of x.", "entry_point": "neg",
         "test_list": ["assert neg(2) == -2"]},
    ]))
    register_custom(app.config["PROMPTYARD_HOME"], "short", str(tasks))
    register_model("tiny-gpt2", "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 16})
    response = client.post("/api/v1/evals", json={"dataset": "short", "model": "tiny-gpt2", "n": 1, "k": [1]})
    assert response.status_code == 202, response.get_json()
    run = wait(app, response.get_json()["id"])
    assert run.status == "succeeded", run.error
    assert run.progress_done == run.progress_total == 2
    assert run.pass_at_k == {"pass@1": 0.0}
    executions = {row.id: row for row in check_linked_executions(run.id, model="tiny-gpt2")}
    assert all(row.plugin == "transformers" and row.tokens_out > 0 for row in executions.values())
    samples = {s.task_id: s for s in db.session.query(EvalSample).filter_by(run_id=run.id)}
    assert sorted(samples) == ["short/0", "short/1"]
    for sample in samples.values():
        # The tiny model writes noise: what runs fails, never passes.
        assert sample.passed is False
        assert sample.verdict in ("failed", "error", "crashed", "timeout")
        assert sample.result and sample.result != "passed"
    # Code to continue: the model was shown the prompt; its continuation up to the first stop is the completion,
    # and the prompt goes in front of it when it runs.
    add = samples["short/0"]
    assert executions[add.execution_id].rendered_input == "def add(a, b):\n"
    assert add.raw_output.startswith(add.completion)
    # A statement: the model was shown it with the test that names the function; its answer runs as it is.
    neg = samples["short/1"]
    assert executions[neg.execution_id].rendered_input == '"""\nWrite neg(x), the opposite of x.\nassert neg(2) == -2\n"""\n'
    assert neg.completion in neg.raw_output
    assert "\nassert " not in neg.completion
    assert sum(run.isolation["levels"].values()) == 2


# --- MBPP: the model is shown the statement and the tests (they name the function) and answers with whole code.

@pytest.fixture(scope="module")
def mbpp(mbpp_path):
    from promptyard.evals.datasets import load_mbpp

    return load_mbpp(mbpp_path)


@pytest.fixture(scope="module")
def mbpp_reference_passes(mbpp, sandbox) -> set[str]:
    """The tasks whose canonical solution passes its own tests, run straight in the sandbox."""
    tasks = list(mbpp.tasks.values())
    programs = [task.program(task.canonical_solution, task.task_id) for task in tasks]
    passes = {program.key for program, result in sandbox.run_many(programs) if result.passed}
    assert len(passes) == 390  # the shared copy's README: 19 references fail their own tests
    return passes


def mbpp_task_shown(text: str, dataset):
    """The MBPP task whose first test is in the model's input, found the way a model must: by reading it."""
    first_test = re.search(r"^assert .*$", text, re.M).group(0)
    return next(task for task in dataset.tasks.values() if task.test_list[0] == first_test)


def mbpp_completion_model(dataset):
    def answer(prompt, params) -> str:
        assert isinstance(prompt, str)
        task = mbpp_task_shown(prompt, dataset)
        # A completion model opens with a blank line, writes the code, then goes on to test it.
        return "\n" + task.canonical_solution.strip("\n") + "\n\n\nassert False, 'rambling'\nprint('done')\n"

    return answer


def mbpp_chat_model(dataset):
    def answer(prompt, params) -> str:
        task = mbpp_task_shown(prompt_text(prompt), dataset)
        return (
            f"Sure! Here is a function `{task.entry_point}` that solves it:\n\n"
            f"```python\n{task.canonical_solution.strip()}\n```\n\n"
            f"You can try it like this:\n\n```python\nprint({task.test_list[0].split('assert ', 1)[1]})\n```\n\n"
            "It runs in linear time. Let me know if you have questions!"
        )

    return answer


def run_mbpp(app, client, mbpp_path, **options) -> dict:
    from promptyard.evals import runs

    run = runs.create_run("mbpp", "coder", dataset_path=str(mbpp_path), **options)
    wait(app, run.id)
    body = client.get(f"/api/v1/evals/{run.id}").get_json()
    assert body["status"] == "succeeded", body["error"]
    return body


def check_scored_like_the_references(body: dict, passes: set[str], mbpp) -> None:
    """Each task passed exactly when its canonical solution does (all of the first `limit` tasks were run)."""
    tasks = {task.task_id for task in mbpp.first(body["limit"])}
    assert set(body["per_task"]) == tasks
    assert {task for task, counts in body["per_task"].items() if counts["passed"]} == passes & tasks
    assert body["pass_at_k"] == {"pass@1": pytest.approx(len(passes & tasks) / len(tasks))}


def test_mbpp_completion_run_scores_exactly_like_the_references(app, client, mbpp, mbpp_path, mbpp_reference_passes):
    install_plugin("coder", FunctionPlugin(mbpp_completion_model(mbpp)))
    body = run_mbpp(app, client, mbpp_path, n=1, k=[1])  # all 409 tasks
    check_scored_like_the_references(body, mbpp_reference_passes, mbpp)
    for row in check_linked_executions(body["id"], model="coder"):
        task = mbpp_task_shown(row.rendered_input, mbpp)
        # The input names the function: the statement and a test calling it.
        assert row.rendered_input == f'"""\n{task.text}\n{task.test_list[0]}\n"""\n'
        assert task.entry_point in row.rendered_input


def test_mbpp_chat_run_takes_the_code_out_of_prose(app, client, mbpp, mbpp_path, mbpp_reference_passes):
    install_plugin("coder", FunctionPlugin(mbpp_chat_model(mbpp)))
    # The first 120 tasks hold three of the broken references (Mbpp/83, 115, 117).
    body = run_mbpp(app, client, mbpp_path, n=1, k=[1], mode="chat", limit=120)
    check_scored_like_the_references(body, mbpp_reference_passes, mbpp)
    samples = client.get(f"/api/v1/evals/{body['id']}/samples?limit=500").get_json()["items"]
    assert len(samples) == 120
    assert all("Sure!" not in s["completion"] and "print(" not in s["completion"] for s in samples)
    for row in check_linked_executions(body["id"], model="coder"):
        # EvalPlus's protocol: its request with the statement and first test, and the answer begun for the model.
        request, begun = json.loads(row.rendered_input)
        task = mbpp_task_shown(request["content"], mbpp)
        assert f'```\n"""\n{task.text}\n{task.test_list[0]}\n"""\n```' in request["content"]
        assert begun["role"] == "assistant" and begun["content"].endswith("```python\n")
        assert row.params["max_new_tokens"] == 768 and row.params["do_sample"] is False


def test_mbpp_run_with_the_starter_prompt_from_the_cli(app, cli, mbpp, mbpp_path):
    from promptyard.prompts.starter import seed_starter_library

    seed_starter_library()
    install_plugin("coder", FunctionPlugin(mbpp_chat_model(mbpp)))
    result = cli("eval", "run", "--dataset", "mbpp", "--dataset-path", str(mbpp_path), "--model", "coder",
                 "--prompt", "mbpp-task@production", "--mode", "chat", "--limit", "5", "--no-progress")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and run["pass_at_k"] == {"pass@1": 1.0}
    assert sorted(run["per_task"]) == sorted(task.task_id for task in mbpp.first(5))
    db.session.expire_all()
    for row in check_linked_executions(run["id"], model="coder"):
        task = mbpp_task_shown(row.rendered_input, mbpp)
        assert row.prompt_name == "mbpp-task" and row.variables == {"text": task.text, "tests": task.test_list}
        assert row.rendered_input.startswith(f"You are an expert Python programmer, and here is your task: {task.text}")


def test_a_prompt_needing_variables_the_dataset_lacks_is_refused(app, client):
    from promptyard.prompts.starter import seed_starter_library

    seed_starter_library()
    install_plugin("coder", FunctionPlugin(versioned_model))
    response = client.post("/api/v1/evals", json={"dataset": "humaneval", "model": "coder", "prompt": "mbpp-task"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "prompt_variables_unavailable"
    assert "text, tests" in error["message"] and "prompt, task_id, entry_point" in error["message"]
    assert db.session.query(EvalRun).count() == 0
