"""Generation params and timeouts of evaluation runs from the API and the CLI; n > 1 with greedy params refused."""

from __future__ import annotations

import json

import pytest

from promptyard.db import db
from promptyard.db.eval_models import EvalRun
from promptyard.db.models import Execution
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin

SEEN: list[dict] = []


def echo_params(prompt, params) -> str:
    SEEN.append(params.model_dump())
    return "    return None\n"


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_WORKERS": 2}


@pytest.fixture
def coder(app):
    SEEN.clear()
    install_plugin("coder", FunctionPlugin(echo_params))
    return "coder"


def test_cli_params_and_timeout_reach_every_sample(cli, coder):
    result = cli("eval", "run", "--dataset", "humaneval", "--model", coder, "--limit", "2", "-n", "3", "-k", "1,3",
                 "--param", "temperature=0.8", "--param", "top_p=0.95", "--param", "max_new_tokens=64",
                 "--param", 'stop=["\\nprint"]', "--timeout", "7.5", "--no-progress")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and run["timeout"] == 7.5
    assert run["params"] == {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64, "stop": ["\nprint"],
                             "do_sample": True}
    assert len(SEEN) == 6
    assert all((p["temperature"], p["top_p"], p["do_sample"], p["max_new_tokens"], p["stop"])
               == (0.8, 0.95, True, 64, ["\nprint"]) for p in SEEN)
    assert db.session.query(EvalRun).one().timeout == 7.5


@pytest.mark.parametrize("args, message", [
    (["-n", "4"], "4 identical completions"),
    (["-n", "2", "--param", "temperature=0"], "2 identical completions"),
    (["-n", "2", "--param", "temperature=0.8", "--param", "do_sample=false"], "identical completions"),
    (["--param", "temperature"], "is not NAME=VALUE"),
    (["--param", "temperature=hot"], "'temperature'"),
    (["--param", "warmth=1"], "'warmth' is not a known parameter"),
    (["--timeout", "0"], "--timeout"),
])
def test_cli_refuses_bad_params_and_writes_nothing(cli, coder, args, message):
    result = cli("eval", "run", "--dataset", "humaneval", "--model", coder, "--limit", "1", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert db.session.query(EvalRun).count() == 0 and not SEEN


def test_cli_resume_needs_a_stopped_run(cli, coder):
    assert cli("eval", "run", "--resume", "999").exit_code == 2
    missing = cli("eval", "run", "--model", coder)
    assert missing.exit_code == 2 and "--dataset and --model are required" in missing.output


@pytest.mark.parametrize("body, code", [
    ({"n": 3}, "greedy_with_n"),
    ({"n": 3, "params": {"temperature": 0}}, "greedy_with_n"),
    ({"n": 3, "params": {"do_sample": True, "temperature": 0}}, "greedy_with_n"),  # temperature 0 is greedy
    ({"params": {"temperature": "warm"}}, "invalid_params"),
    ({"params": {"top_k": 5}}, "invalid_params"),
    ({"params": "hot"}, None),
    ({"timeout": 61}, None),
    ({"timeout": -1}, None),
])
def test_api_refuses_bad_params_with_422_and_writes_nothing(client, coder, body, code):
    executions = db.session.query(Execution).count()
    response = client.post("/api/v1/evals", json={"dataset": "humaneval", "model": coder, "limit": 1, **body})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["message"] and set(error) == {"code", "message", "details"}
    if code:
        assert error["code"] == code
    if code == "greedy_with_n":
        assert "pass@k meaningless" in error["message"] and error["details"]["n"] == 3
    assert db.session.query(EvalRun).count() == 0 and db.session.query(Execution).count() == executions


def test_the_models_own_sampling_defaults_allow_n_above_one(client, app):
    install_plugin("sampler", FunctionPlugin(echo_params), params={"do_sample": True, "temperature": 0.6})
    response = client.post("/api/v1/evals", json={"dataset": "humaneval", "model": "sampler", "n": 2, "limit": 1})
    assert response.status_code == 202, response.get_json()
    run = db.session.get(EvalRun, response.get_json()["id"])
    app.extensions["promptyard.jobs"].wait(run.job_id, timeout=120)  # done before the tables are emptied
    # ... and a run's own greedy params override them, and are refused.
    refused = client.post("/api/v1/evals", json={"dataset": "humaneval", "model": "sampler", "n": 2, "limit": 1,
                                                 "params": {"do_sample": False}})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "greedy_with_n"


def test_a_fixed_seed_gives_each_sample_of_a_task_its_own(cli, coder):
    result = cli("eval", "run", "--dataset", "humaneval", "--model", coder, "--limit", "2", "-n", "3",
                 "--param", "temperature=0.8", "--param", "seed=3", "--no-progress")
    assert result.exit_code == 0, result.output
    # Samples 0, 1, 2 of each task: seeds 3, 4, 5 (one seed for all would make them identical).
    assert [p["seed"] for p in SEEN] == [3, 4, 5, 3, 4, 5]
