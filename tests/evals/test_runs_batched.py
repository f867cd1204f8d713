"""Evaluation runs in batches: the tiny GPT-2 through the transformers batch call (each sample its own execution,
greedy batched output equal to one at a time, cached, resumable), and a real HTTP server that times out, fails
and rate limits (retries, generation failures, a run stopped when the backend is down, resumed by API and CLI)."""

from __future__ import annotations

import json

import pytest

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.db.models import Execution
from promptyard.evals import runs
from promptyard.evals.datasets import register_custom
from promptyard.evals.generation import pipeline_generate
from promptyard.models.service import register_model
from tests.fixtures.openai_server import OpenAIServer, Reply

# Short tasks (the tiny model reads 128 tokens); every one asks for add(a, b), which the fake server always writes.
TASKS = [
    {"task_id": f"add/{i}", "prompt": f"# task {i}\ndef add(a, b):\n", "entry_point": "add",
     "tests": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    for i in range(6)
]


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_WORKERS": 2, "PROMPTYARD_EVAL_RETRY_BACKOFF": 0.01, "PROMPTYARD_EVAL_BATCH_SIZE": 4}


@pytest.fixture
def adds(app, tmp_path):
    path = tmp_path / "adds.jsonl"
    path.write_text("".join(json.dumps(task) + "\n" for task in TASKS))
    register_custom(app.config["PROMPTYARD_HOME"], "adds", str(path))
    return "adds"


@pytest.fixture
def server():
    with OpenAIServer() as fake:
        fake.default_text = "    return a + b\n"  # the body the tasks' prompt opens
        yield fake


def run_now(**options) -> dict:
    run = runs.create_run(submit=False, **options)
    return runs.execute_run(run.id, per_task=True)


def samples_of(run_id: int) -> list[EvalSample]:
    db.session.expire_all()
    return db.session.query(EvalSample).filter_by(run_id=run_id).order_by(EvalSample.task_id,
                                                                          EvalSample.sample_index).all()


def executions_of(run_id: int) -> list[Execution]:
    ids = [s.execution_id for s in samples_of(run_id)]
    return db.session.query(Execution).filter(Execution.id.in_(ids)).all()


# --- the tiny GPT-2, batched -----------------------------------------------------------------------------------

def test_greedy_batched_run_equals_one_at_a_time_and_is_cached(app, adds, tiny_gpt2_dir):
    register_model("tiny", "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 12},
                   options={"max_batch_size": 3})
    batched = run_now(dataset=adds, model="tiny")
    assert batched["status"] == "succeeded", batched["error"]
    outputs = [s.raw_output for s in samples_of(batched["id"])]
    rows = executions_of(batched["id"])
    assert len(rows) == 6 and all(r.source == "eval" and r.status == "succeeded" and r.tokens_out > 0 for r in rows)
    assert not any(r.cache_hit for r in rows)
    assert len(set(outputs)) > 1  # varied text: the comparison below means something

    # The same run one sample at a time through the single-request path: the same text (from the cache, as the
    # params are greedy)...
    app.config["PROMPTYARD_EVAL_GENERATE"] = pipeline_generate
    single = run_now(dataset=adds, model="tiny")
    assert [s.raw_output for s in samples_of(single["id"])] == outputs
    assert all(r.cache_hit for r in executions_of(single["id"]))
    # ... and, the cache off, generated again one at a time, still the same text.
    db.session.execute(db.text("DELETE FROM model_cache"))
    db.session.commit()
    fresh = run_now(dataset=adds, model="tiny", params={"seed": 1})  # a greedy param change: a new cache key
    assert [s.raw_output for s in samples_of(fresh["id"])] == outputs
    assert not any(r.cache_hit for r in executions_of(fresh["id"]))


def test_sampled_batched_run_records_every_sample(app, adds, tiny_gpt2_dir):
    register_model("tiny", "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 10},
                   pricing={"input_per_1k": 1.0, "output_per_1k": 2.0})
    body = run_now(dataset=adds, model="tiny", n=5, k=[1, 5], limit=3, params={"temperature": 0.9, "top_p": 0.95})
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"] == {"done": 15, "total": 15, "generated": 15, "phase": "done"}
    samples = samples_of(body["id"])
    assert [(s.task_id, s.sample_index) for s in samples] == [(f"add/{t}", i) for t in range(3) for i in range(5)]
    rows = {r.id: r for r in executions_of(body["id"])}
    assert len(rows) == 15  # each sample its own execution
    assert all(r.params["do_sample"] is True and r.params["temperature"] == 0.9 for r in rows.values())
    assert all(rows[s.execution_id].output == s.raw_output for s in samples)
    for row in rows.values():  # each sample priced on its own tokens, timed as the batch it waited for
        assert 0 < row.tokens_out <= 10 and row.tokens_in > 0 and row.latency_ms > 0
        assert row.cost == pytest.approx((row.tokens_in * 1.0 + row.tokens_out * 2.0) / 1000)
        assert row.finish_reason in ("stop", "length") and not row.cache_hit and row.finished_at
    # Samples of a task differ (they are sampled, not one greedy answer repeated).
    assert len({s.raw_output for s in samples if s.task_id == "add/0"}) > 1


class Crash(BaseException):
    """Stands for the process dying mid-run."""


def test_a_batched_run_resumes_after_a_crash_without_regenerating(app, adds, tiny_gpt2_dir):
    register_model("tiny", "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 6})
    run = runs.create_run(adds, "tiny", n=2, k=[1], params={"temperature": 1.0}, submit=False)

    def crash_after_first_batch(phase, done, total):
        if phase == "generating" and done == 4:
            raise Crash()

    with pytest.raises(Crash):
        runs.execute_run(run.id, on_progress=crash_after_first_batch)
    db.session.rollback()
    kept = {(s.task_id, s.sample_index): (s.id, s.raw_output) for s in samples_of(run.id)}
    assert len(kept) == 4  # the first batch (PROMPTYARD_EVAL_BATCH_SIZE=4) was saved
    assert runs.resume_interrupted_runs() == "resumed 1 evaluation run(s)"
    app.extensions["promptyard.jobs"].wait(db.session.get(EvalRun, run.id).job_id, timeout=120)
    after = samples_of(run.id)
    assert len(after) == 12
    assert {key: value for key, value in ((( s.task_id, s.sample_index), (s.id, s.raw_output)) for s in after)
            if key in kept} == kept
    assert db.session.query(Execution).count() == 12  # nothing generated twice


# --- a real HTTP server that misbehaves -------------------------------------------------------------------------

def remote(server, **options) -> str:
    # No retries inside the plugin: the run's own retries are what is tested. One request at a time, so the
    # scripted replies meet the samples in order.
    register_model("remote", "openai-compatible", server.base_url, options={
        "model": "tiny", "timeout": 0.5, "max_retries": 0, "backoff": 0.01, "max_in_flight": 1, **options})
    return "remote"


def test_timeouts_500s_and_429s_are_retried_and_the_run_passes(app, adds, server):
    server.replies += [Reply(status=500, body={"error": {"message": "overloaded"}}),
                       Reply(status=429, headers={"Retry-After": "0"}, body={"error": "slow down"}),
                       Reply(delay=1.5)]
    body = run_now(dataset=adds, model=remote(server), limit=3)
    assert body["status"] == "succeeded", body["error"]
    assert body["generation_failures"] == 0 and body["pass_at_k"] == {"pass@1": 1.0}
    assert len(server.requests) == 6  # three failed attempts, each retried once
    statuses = sorted(r.status for r in db.session.query(Execution))
    assert statuses == ["failed"] * 3 + ["succeeded"] * 3  # every attempt is in the history
    errors = " ".join(r.error for r in db.session.query(Execution).filter_by(status="failed"))
    assert "overloaded" in errors and "rate limiting" in errors and "did not answer within" in errors


def test_a_sample_failing_for_good_is_a_generation_failure_and_the_run_goes_on(app, adds, server, client):
    app.config["PROMPTYARD_EVAL_RETRIES"] = 2
    server.replies += [Reply(), Reply(status=503)] + [Reply()] * 2 + [Reply(status=502)] * 2
    body = run_now(dataset=adds, model=remote(server), limit=4)
    assert body["status"] == "succeeded", body["error"]
    assert body["generation_failures"] == 1
    assert body["pass_at_k"] == {"pass@1": 0.75}
    assert body["per_task"]["add/1"] == {"samples": 1, "passed": 0, "pass@1": 0.0}
    failed = [s for s in samples_of(body["id"]) if s.verdict == "generation_failed"]
    assert [(s.task_id, s.passed) for s in failed] == [("add/1", False)]
    assert failed[0].result.startswith("generation failed: The model server") and "502" in failed[0].result
    assert len(server.requests) == 6

    # Resumed over the API: only the failed sample is generated again.
    response = client.post(f"/api/v1/evals/{body['id']}/resume")
    assert response.status_code == 202, response.get_json()
    db.session.expire_all()
    app.extensions["promptyard.jobs"].wait(db.session.get(EvalRun, body["id"]).job_id, timeout=120)
    resumed = client.get(f"/api/v1/evals/{body['id']}").get_json()
    assert resumed["status"] == "succeeded" and resumed["generation_failures"] == 0
    assert resumed["pass_at_k"] == {"pass@1": 1.0} and len(server.requests) == 7
    assert resumed["progress"] == {"done": 4, "total": 4, "generated": 4, "phase": "done"}
    # A complete run has nothing to resume.
    again = client.post(f"/api/v1/evals/{body['id']}/resume")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "eval_run_complete"


def test_a_backend_down_for_good_fails_the_run_and_the_cli_resumes_it(app, adds, server, cli):
    app.config.update(PROMPTYARD_EVAL_RETRIES=1, PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW=3)
    server.replies += [Reply(), Reply()] + [Reply(status=500)] * 50
    remote(server)
    result = cli("eval", "run", "--dataset", adds, "--model", "remote", "--no-progress")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "failed" and "3 times in a row" in body["error"]
    assert f"eval resume {body['id']}" in result.stderr
    # Two answered; the three failures in a row that stopped it are not saved (the resume generates them).
    assert body["progress"]["generated"] == 2 and body["generation_failures"] == 0
    kept = {s.task_id: s.id for s in samples_of(body["id"])}
    assert sorted(kept) == ["add/0", "add/1"]

    server.replies.clear()  # the backend is back
    before = len(server.requests)
    resumed = cli("eval", "run", "--resume", str(body["id"]), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded" and done["pass_at_k"] == {"pass@1": 1.0}
    assert done["generation_failures"] == 0
    assert len(server.requests) - before == 4  # add/2 .. add/5, nothing twice
    assert {s.task_id: s.id for s in samples_of(body["id"]) if s.task_id in kept} == kept


def test_a_model_that_never_answers_fails_the_run_with_nothing_saved(app, adds, server, client):
    server.replies += [Reply(status=500, body={"error": {"message": "no GPU"}})] * 20
    body = run_now(dataset=adds, model=remote(server), limit=2)
    assert body["status"] == "failed" and "No sample could be generated" in body["error"]
    assert "no GPU" in body["error"]
    assert body["progress"]["generated"] == 0 and body["pass_at_k"] == {}
    # Two samples, each tried four times (three retries).
    assert len(server.requests) == 8


def test_resume_refuses_what_cannot_be_resumed(app, adds, client):
    assert client.post("/api/v1/evals/999/resume").status_code == 404
    app.config["PROMPTYARD_EVAL_GENERATE"] = lambda run, task, index: ("    return a + b\n", None)
    queued = runs.create_run(adds, "fake", limit=1, submit=False)
    refused = client.post(f"/api/v1/evals/{queued.id}/resume")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "eval_run_active"
    assert db.session.get(EvalRun, queued.id).status == "queued"
