"""Stopping an evaluation run: Ctrl-C on `eval run` stops it at once and leaves it resumable; a second Ctrl-C
quits without a traceback; a model load failed by the process's own shutdown does not fail the run for good."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample
from promptyard.errors import Unavailable
from promptyard.evals import runs, stopping
from tests.evals.test_runs import CALLS, generate


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_GENERATE": generate, "PROMPTYARD_EVAL_WORKERS": 2}


def latest_run() -> EvalRun:
    db.session.expire_all()
    return db.session.query(EvalRun).order_by(EvalRun.id.desc()).first()


def samples(run_id: int) -> int:
    return db.session.query(EvalSample).filter_by(run_id=run_id).count()


def interrupt_at(sample: int, presses: int = 1):
    """A generator that is 'Ctrl-C'-ed (a real SIGINT to this process) while generating sample `sample`."""

    def slow_generation(run, task, index):
        if len(CALLS) == sample:
            for press in range(presses):
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(30)  # a long generation: the interrupt must not wait for it
                except KeyboardInterrupt:
                    if press == presses - 1:
                        raise
                    # still cleaning up after the first press when the second one comes
        return generate(run, task, index)

    return slow_generation


def test_ctrl_c_stops_the_run_at_once_and_resume_finishes_it(app, cli):
    CALLS.clear()
    app.config["PROMPTYARD_EVAL_GENERATE"] = interrupt_at(2)
    stopped = cli("eval", "run", "--dataset", "humaneval", "--model", "fake", "--limit", "4", "--no-progress")
    assert stopped.exit_code == 130, stopped.output
    assert "Traceback" not in stopped.output and "eval resume" in stopped.stderr
    run = latest_run()
    assert run.status == "queued" and run.error is None
    assert samples(run.id) == 2  # what was generated before the interrupt is kept

    app.config["PROMPTYARD_EVAL_GENERATE"] = generate
    resumed = cli("eval", "resume", str(run.id), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert samples(run.id) == 4 and len(CALLS) == 4  # the 2 kept were not generated again
    finished = cli("eval", "resume", str(run.id))
    assert finished.exit_code == 2 and "nothing to resume" in finished.output


def test_a_second_ctrl_c_quits_without_a_traceback_and_the_run_stays_resumable(app, cli):
    CALLS.clear()
    app.config["PROMPTYARD_EVAL_GENERATE"] = interrupt_at(1, presses=2)
    stopped = cli("eval", "run", "--dataset", "humaneval", "--model", "fake", "--limit", "3", "--no-progress")
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    run = latest_run()
    assert run.status in ("queued", "running")  # either way resumable
    app.config["PROMPTYARD_EVAL_GENERATE"] = generate
    assert runs.resume_interrupted_runs() == "resumed 1 evaluation run(s)"


def test_a_model_load_failed_by_the_shutdown_leaves_the_run_resumable(app):
    """A closed terminal breaks the pipe while the model loads and prints its progress: not the run's fault."""
    run = runs.create_run("humaneval", "fake", limit=2, submit=False)

    def load_cut_short(run_row, task, index):
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError as exc:
            raise Unavailable("Model 'fake' could not be loaded: BrokenPipeError") from exc

    app.config["PROMPTYARD_EVAL_GENERATE"] = load_cut_short
    result = runs.execute_run(run.id)
    assert result["status"] == "queued" and latest_run().error is None


def test_a_stop_requested_by_the_server_stops_runs_between_samples(app):
    run = runs.create_run("humaneval", "fake", limit=3, submit=False)

    def stop_after_first(run_row, task, index):
        stopping.request_stop()  # `promptyard up` is shutting down
        return "    return 1\n", None

    app.config["PROMPTYARD_EVAL_GENERATE"] = stop_after_first
    assert runs.execute_run(run.id)["status"] == "queued"
    assert samples(run.id) == 1


def test_a_real_failure_still_fails_the_run(app):
    run = runs.create_run("humaneval", "fake", limit=1, submit=False)

    def broken(run_row, task, index):
        raise Unavailable("Model 'fake' could not be loaded: OSError: no such file")

    app.config["PROMPTYARD_EVAL_GENERATE"] = broken
    result = runs.execute_run(run.id)
    assert result["status"] == "failed" and "no such file" in result["error"]


def test_no_progress_also_hides_the_weights_loading_bar(app, cli, tiny_gpt2_dir):
    """A real transformers model: loading it draws a bar unless --no-progress."""
    from promptyard.models import service

    app.config.pop("PROMPTYARD_EVAL_GENERATE")  # generate through the pipeline and the real model
    for name in ("tiny-a", "tiny-b"):
        service.register_model(name, "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 4})
    shown = cli("eval", "run", "--dataset", "humaneval", "--model", "tiny-a", "--limit", "1")
    assert shown.exit_code == 0, shown.output
    assert "Loading weights" in shown.stderr
    quiet = cli("eval", "run", "--dataset", "humaneval", "--model", "tiny-b", "--limit", "1", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert "Loading weights" not in quiet.stderr and "it/s]" not in quiet.stderr
