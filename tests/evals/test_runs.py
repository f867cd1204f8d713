"""Evaluation runs end to end with a FunctionPlugin-backed generator: jobs, resume, pass rates, compare, API, CLI."""

from __future__ import annotations

import json

import pytest

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.evals import runs
from promptyard.evals.compare import compare_runs
from promptyard.evals.datasets import load_humaneval
from promptyard.plugins.base import GenerationParams
from promptyard.plugins.function import FunctionPlugin

HUMANEVAL = load_humaneval()
CALLS: list[tuple[str, int]] = []


def answer(prompt, params) -> str:
    """A 'model' that solves even-numbered HumanEval tasks and returns None elsewhere."""
    task = next(t for t in HUMANEVAL.tasks.values() if t.prompt == prompt)
    number = int(task.task_id.split("/")[1])
    return task.canonical_solution if number % 2 == 0 else "    return None\n\ndef unrelated():\n    pass\n"


PLUGIN = FunctionPlugin(answer)
SAMPLED = {"temperature": 0.8, "top_p": 0.95}  # n > 1 needs sampling


def generate(run, task, index):
    CALLS.append((task.task_id, index))
    return PLUGIN.generate(task.prompt, GenerationParams()).text, None


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_GENERATE": generate, "PROMPTYARD_EVAL_WORKERS": 2}


def wait(app, run_id):
    run = db.session.get(EvalRun, run_id)
    app.extensions["promptyard.jobs"].wait(run.job_id, timeout=120)
    db.session.expire_all()
    return db.session.get(EvalRun, run_id)


def test_run_generates_executes_and_scores(app):
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=2, k=[1, 2], limit=4, params=SAMPLED)
    run = wait(app, run.id)
    assert run.status == "succeeded"
    assert run.progress_done == run.progress_total == 8
    assert run.pass_at_k == {"pass@1": 0.5, "pass@2": 0.5}
    assert sum(run.isolation["levels"].values()) == 8
    assert runs.run_to_dict(run, per_task=True)["per_task"] == {
        f"HumanEval/{i}": {"samples": 2, "passed": 2 * (i % 2 == 0), "pass@1": float(i % 2 == 0),
                           "pass@2": float(i % 2 == 0)}
        for i in range(4)
    }
    samples, total = runs.list_samples(run.id)
    assert total == 8
    # Completion mode cut the trailing `def unrelated` off at the stop sequence.
    assert all("unrelated" not in s.completion for s in samples)
    assert {s.task_id for s in samples if s.passed} == {"HumanEval/0", "HumanEval/2"}


class Crash(BaseException):
    """Stands for the process dying mid-run (not an error the run could record)."""


def test_resume_after_a_crash_does_not_redo_finished_samples(app):
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=1, k=[1], limit=4, submit=False)

    def crashing(run_row, task, index):
        if len(CALLS) == 2:
            raise Crash()
        return generate(run_row, task, index)

    app.config["PROMPTYARD_EVAL_GENERATE"] = crashing
    with pytest.raises(Crash):
        runs.execute_run(run.id)
    db.session.rollback()
    assert db.session.get(EvalRun, run.id).status == "running"
    assert [c[0] for c in CALLS] == ["HumanEval/0", "HumanEval/1"]

    app.config["PROMPTYARD_EVAL_GENERATE"] = generate
    assert runs.resume_interrupted_runs() == "resumed 1 evaluation run(s)"
    run = wait(app, run.id)
    assert run.status == "succeeded"
    assert [c[0] for c in CALLS] == ["HumanEval/0", "HumanEval/1", "HumanEval/2", "HumanEval/3"]
    assert db.session.query(EvalSample).filter_by(run_id=run.id).count() == 4


def test_resume_after_a_crash_during_execution_runs_only_the_unexecuted_samples(app):
    CALLS.clear()
    run = runs.create_run("humaneval", "fake", n=1, k=[1], limit=6, submit=False)

    def crash_after_three(phase, done, total):
        if phase == "executing" and done == 3:
            raise Crash()

    with pytest.raises(Crash):
        runs.execute_run(run.id, on_progress=crash_after_three)
    db.session.rollback()
    samples = db.session.query(EvalSample).filter_by(run_id=run.id).all()
    executed = {s.id: (s.verdict, s.duration) for s in samples if s.verdict is not None}
    assert len(samples) == 6 and len(executed) == 3
    crashed = db.session.get(EvalRun, run.id)
    assert crashed.status == "running" and crashed.progress_done == 3
    assert runs.run_to_dict(crashed)["progress"] == {"done": 3, "total": 6, "generated": 6, "phase": "executing"}
    assert sum(crashed.isolation["levels"].values()) == 3

    assert runs.resume_interrupted_runs() == "resumed 1 evaluation run(s)"
    run = wait(app, run.id)
    assert run.status == "succeeded" and run.progress_done == 6
    assert len(CALLS) == 6  # nothing generated twice
    after = {s.id: (s.verdict, s.duration) for s in db.session.query(EvalSample).filter_by(run_id=run.id)}
    # The three executed before the crash kept their verdicts and timings: they were not run again ...
    assert {sid: after[sid] for sid in executed} == executed
    assert all(verdict is not None for verdict, _ in after.values())
    # ... and the isolation summary covers both sessions, each sample once.
    assert sum(run.isolation["levels"].values()) == 6 and run.isolation["example"]
    assert run.pass_at_k == {"pass@1": 0.5}


def test_progress_moves_through_generation_then_execution(app, client):
    seen = []

    def watched(run_row, task, index):
        seen.append(client.get(f"/api/v1/evals/{run_row.id}").get_json()["progress"])
        return generate(run_row, task, index)

    app.config["PROMPTYARD_EVAL_GENERATE"] = watched
    run = runs.create_run("humaneval", "fake", n=2, k=[1], limit=2, submit=False, params=SAMPLED)
    assert client.get(f"/api/v1/evals/{run.id}").get_json()["progress"] == {
        "done": 0, "total": 4, "generated": 0, "phase": "queued"}
    reported, seen_executing = [], []

    def report(phase, done, total):
        reported.append((phase, done, total))
        if phase == "executing":
            seen_executing.append(client.get(f"/api/v1/evals/{run.id}").get_json()["progress"])

    runs.execute_run(run.id, on_progress=report)
    # Seen over HTTP before each generation: the generated count moves while nothing is executed yet.
    assert seen == [{"done": 0, "total": 4, "generated": g, "phase": "generating"} for g in range(4)]
    assert reported[:5] == [("generating", g, 4) for g in range(5)]
    assert [event for event in reported if event[0] == "executing"] == [("executing", d, 4) for d in range(5)]
    # ... then the executed count, and once every sample has its verdict, the scoring.
    assert seen_executing == [
        {"done": d, "total": 4, "generated": 4, "phase": "executing" if d < 4 else "scoring"} for d in range(5)
    ]
    body = client.get(f"/api/v1/evals/{run.id}").get_json()
    assert body["progress"] == {"done": 4, "total": 4, "generated": 4, "phase": "done"}


def test_a_generation_error_fails_the_run_and_says_where(app, client):
    def broken(run_row, task, index):
        if task.task_id == "HumanEval/1":
            raise RuntimeError("the model server went away")
        return generate(run_row, task, index)

    app.config["PROMPTYARD_EVAL_GENERATE"] = broken
    run = runs.create_run("humaneval", "fake", n=1, k=[1], limit=3, submit=False)
    runs.execute_run(run.id)
    body = client.get(f"/api/v1/evals/{run.id}").get_json()
    assert body["status"] == "failed" and body["error"] == "RuntimeError: the model server went away"
    assert body["progress"] == {"done": 0, "total": 3, "generated": 1, "phase": "generating"}
    assert body["pass_at_k"] == {} and body["per_task"] == {}


def test_pass_rate_by_version_counts_finished_runs_only(app):
    from promptyard.db.models import Prompt, PromptVersion

    prompt = Prompt(name="p")
    db.session.add(prompt)
    db.session.flush()
    version = PromptVersion(prompt_id=prompt.id, number=1, template="{{ prompt }}", content_hash="x", author="t")
    db.session.add(version)
    db.session.commit()
    finished = runs.create_run("humaneval", "fake", n=1, limit=4, submit=False)
    finished.version_id = version.id
    unfinished = runs.create_run("humaneval", "fake", n=1, limit=4, submit=False)
    unfinished.version_id = version.id
    db.session.commit()
    runs.execute_run(finished.id)
    assert runs.pass_rate_by_version([version.id, 999]) == {
        version.id: {"passed": 2, "total": 4}, 999: {"passed": 0, "total": 0}
    }


def test_compare_runs_gives_differences_and_p_value(app):
    a = runs.create_run("humaneval", "fake", n=1, limit=6, submit=False)
    runs.execute_run(a.id)
    app.config["PROMPTYARD_EVAL_GENERATE"] = lambda run, task, index: (task.canonical_solution, None)
    b = runs.create_run("humaneval", "fake", n=1, limit=6, submit=False)
    runs.execute_run(b.id)
    result = compare_runs(a.id, b.id)
    assert result["a_pass_at_1"] == 0.5 and result["b_pass_at_1"] == 1.0
    assert [t["task_id"] for t in result["tasks"]] == ["HumanEval/1", "HumanEval/3", "HumanEval/5"]
    assert result["mcnemar"] == {"only_a": 0, "only_b": 3, "p_value": pytest.approx(0.25)}
    low, high = result["bootstrap"]["ci95"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_api_run_lifecycle(app, client):
    response = client.post("/api/v1/evals", json={"dataset": "humaneval", "model": "fake", "n": 1, "k": [1], "limit": 2})
    assert response.status_code == 202
    run_id = response.get_json()["id"]
    wait(app, run_id)
    body = client.get(f"/api/v1/evals/{run_id}").get_json()
    assert body["status"] == "succeeded" and body["pass_at_k"] == {"pass@1": 0.5}
    assert body["progress"] == {"done": 2, "total": 2, "generated": 2, "phase": "done"}
    assert body["per_task"] == {"HumanEval/0": {"samples": 1, "passed": 1, "pass@1": 1.0},
                                "HumanEval/1": {"samples": 1, "passed": 0, "pass@1": 0.0}}
    samples = client.get(f"/api/v1/evals/{run_id}/samples?limit=1").get_json()
    assert samples["total"] == 2 and len(samples["items"]) == 1
    assert set(samples["items"][0]) >= {"task_id", "completion", "passed", "result"}
    listing = client.get("/api/v1/evals").get_json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == run_id
    assert listing["items"][0]["progress"] == body["progress"] and "per_task" not in listing["items"][0]
    compared = client.get(f"/api/v1/evals/compare?a={run_id}&b={run_id}").get_json()
    assert compared["mcnemar"]["p_value"] == 1.0


@pytest.mark.parametrize(
    "body",
    [
        {"dataset": "nope", "model": "fake"},
        {"dataset": "humaneval", "model": "fake", "n": 2, "k": [5]},
        {"dataset": "humaneval", "model": "fake", "n": 0},
        {"dataset": "humaneval", "model": "fake", "surprise": 1},
        {"dataset": "humaneval"},
        {"dataset": "humaneval", "model": "fake", "mode": "poetry"},
    ],
)
def test_api_rejects_bad_bodies_and_writes_nothing(client, body):
    response = client.post("/api/v1/evals", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"]
    assert db.session.query(EvalRun).count() == 0


def test_api_unknown_runs(client, app):
    assert client.get("/api/v1/evals/999").status_code == 404
    assert client.get("/api/v1/evals/999/samples").status_code == 404
    assert client.get("/api/v1/evals/compare?a=1&b=2").status_code == 404
    assert client.get("/api/v1/evals/compare?a=x").status_code == 422
    queued = runs.create_run("humaneval", "fake", limit=1, submit=False)
    assert client.get(f"/api/v1/evals/compare?a={queued.id}&b={queued.id}").status_code == 409


def test_cli_run_and_compare(cli):
    first = cli("eval", "run", "--dataset", "humaneval", "--model", "fake", "--limit", "2", "-n", "2", "-k", "1,2",
                "--param", "temperature=0.8")
    assert first.exit_code == 0, first.output
    run = json.loads(first.stdout)
    assert run["status"] == "succeeded" and run["pass_at_k"] == {"pass@1": 0.5, "pass@2": 0.5}
    assert run["per_task"]["HumanEval/1"] == {"samples": 2, "passed": 0, "pass@1": 0.0, "pass@2": 0.0}
    # A progress bar for each phase, on stderr.
    assert "Generating" in first.stderr and "Running tests" in first.stderr and "4/4" in first.stderr
    shown = cli("eval", "show", str(run["id"]))
    assert shown.exit_code == 0 and json.loads(shown.output) == run
    assert cli("eval", "show", "999").exit_code == 2
    quiet = cli("eval", "run", "--dataset", "humaneval", "--model", "fake", "--limit", "1", "--no-progress")
    assert quiet.exit_code == 0 and "Generating" not in quiet.stderr
    compared = cli("eval", "compare", str(run["id"]), str(run["id"]))
    assert compared.exit_code == 0 and json.loads(compared.output)["tasks_compared"] == 2
    assert cli("eval", "compare", "998", "999").exit_code == 2
    assert cli("eval", "run", "--dataset", "humaneval", "--model", "fake", "-n", "1", "-k", "3").exit_code == 2


@pytest.fixture
def default_generator_app(database_url, tmp_path):
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path / "home2")
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_default_generator_needs_a_known_model(default_generator_app):
    from promptyard.errors import PromptyardError

    with pytest.raises(PromptyardError) as caught:
        runs.create_run("humaneval", "no-such-model", limit=1, submit=False)
    assert caught.value.status == 404 and caught.value.code == "model_not_found"
    assert db.session.query(EvalRun).count() == 0


def test_cli_registers_a_custom_dataset_and_rejects_bad_lines(cli, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"task_id": "t/1", "prompt": "Write one().", "entry_point": "one",
                                "test_list": ["assert one() == 1"]}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"task_id": "t/2", "prompt": "p"}\n')
    result = cli("eval", "register-dataset", "mine", str(good))
    assert result.exit_code == 0 and "1 tasks" in result.output
    refused = cli("eval", "register-dataset", "other", str(bad))
    assert refused.exit_code == 2 and "line 2: missing field 'entry_point'" in refused.output
    run = runs.create_run("mine", "fake", submit=False)
    assert run.progress_total == 1
    assert runs.create_run("mine", "fake", submit=False).dataset == "mine"
