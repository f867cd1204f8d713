"""Training data from rated history, evaluation samples, a dataset's references and JSONL, in TRL's formats."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from promptyard.errors import Unprocessable
from promptyard.evals.runs import create_run, execute_run
from promptyard.training.data import build
from tests.training.conftest import TASKS, record

ADD = "def add(a, b):\n"


@pytest.fixture
def rated_history(app, scripted):
    """Answers to ADD rated 5, 5 (the same text twice), 4, 3 and 1; one answer unrated; a chat rated 5."""
    scripted("coder", {ADD: ["    return a + b\n", "    return a + b\n", "    return b + a\n", "    return 0\n",
                             "    return a - b\n", "    pass\n"],
                       "user: write add": ["def add(a, b): return a + b"]})
    for rating in (5, 5, 4, 3, 1, None):
        record("coder", ADD, rating)
    record("coder", [{"role": "user", "content": "write add"}], 5)
    return "coder"


def test_sft_keeps_good_ratings_once_each(rated_history):
    data = build("sft", {"source": "history"})
    completions = [row["completion"] for row in data.rows if row["prompt"] == ADD]
    assert completions == ["    return a + b\n", "    return b + a\n"]
    assert data.duplicates == 1
    assert data.counts == {"history": 3}
    chat = next(row for row in data.rows if isinstance(row["prompt"], list))
    assert chat == {"prompt": [{"role": "user", "content": "write add"}],
                    "completion": [{"role": "assistant", "content": "def add(a, b): return a + b"}]}


def test_kto_labels_good_and_bad_and_leaves_the_middle_out(rated_history):
    rows = [row for row in build("kto", {"source": "history"}).rows if row["prompt"] == ADD]
    assert [(row["completion"], row["label"]) for row in rows] == [
        ("    return a + b\n", True), ("    return b + a\n", True), ("    return a - b\n", False)]


def test_dpo_pairs_good_against_bad_on_the_same_input(rated_history):
    rows = build("dpo", {"source": "history"}).rows
    assert rows == [
        {"prompt": ADD, "chosen": "    return a + b\n", "rejected": "    return a - b\n"},
        {"prompt": ADD, "chosen": "    return b + a\n", "rejected": "    return a - b\n"},
    ]


def test_an_empty_result_is_refused_naming_the_filters(rated_history):
    with pytest.raises(Unprocessable) as caught:
        build("sft", {"source": "history", "model": "someone-else"})
    assert caught.value.code == "no_training_data"
    assert "model='someone-else'" in caught.value.message
    future = datetime.now(timezone.utc) + timedelta(days=1)
    with pytest.raises(Unprocessable, match="since="):
        build("sft", {"source": "history", "since": future})
    assert build("sft", {"source": "history", "until": future, "model": "coder"}).rows


def test_bad_filters_are_refused(app):
    for spec, field in [({"source": "nowhere"}, "data.source.0"), ({"min_rating": 9}, "data.min_rating"),
                        ({"source": "dataset"}, "data.dataset"), ({"bogus": 1}, "data.bogus"),
                        ({"min_rating": 2, "max_bad_rating": 3}, "data.max_bad_rating")]:
        with pytest.raises(Unprocessable) as caught:
            build("sft", spec)
        assert caught.value.details["field"] == field
    with pytest.raises(Unprocessable, match="format"):
        build("ppo", {})


def run_eval(model: str, dataset: str, n: int) -> None:
    # n > 1 greedy samples are refused (identical samples make pass@k meaningless): sample when n > 1.
    params = {"max_new_tokens": 20, **({"temperature": 0.8} if n > 1 else {})}
    run = create_run(dataset, model, n=n, submit=False, params=params)
    assert execute_run(run.id)["status"] == "succeeded"


def test_evaluation_samples_give_passing_code_and_pass_fail_pairs(app, tiny_dataset, scripted):
    # Task add: one right and one wrong sample; sub: always right; the rest always wrong.
    answers = {prompt: ["    return None\n"] for _, prompt, _, _ in TASKS}
    answers[ADD] = ["    return a + b\n", "    return a * b\n"]
    answers["def sub(a, b):\n"] = ["    return a - b\n"]
    run_eval(scripted("evaluated", answers), tiny_dataset, n=2)

    sft = build("sft", {"source": "evals", "model": "evaluated"})
    assert sft.rows == [{"prompt": ADD, "completion": "    return a + b\n"},
                        {"prompt": "def sub(a, b):\n", "completion": "    return a - b\n"}]
    assert sft.counts == {"evals": 2} and sft.duplicates == 1  # sub passed twice with the same code
    dpo = build("dpo", {"source": "evals"})
    assert dpo.rows == [{"prompt": ADD, "chosen": "    return a + b\n", "rejected": "    return a * b\n"}]
    kto = build("kto", {"source": "evals"})
    assert sum(row["label"] for row in kto.rows) == 2 and len(kto.rows) == 5


def test_counts_per_source_when_sources_are_combined(app, tiny_dataset, rated_history):
    data = build("sft", {"source": ["history", "dataset"], "dataset": tiny_dataset})
    assert data.counts == {"history": 3, "dataset": len(TASKS) - 1}  # add was in history already
    assert {"prompt": ADD, "completion": "    return a + b\n"} in data.rows
    assert data.duplicates == 2  # the same add solution rated twice in history, and once more from the dataset


def test_jsonl_rows_are_checked_line_by_line(app):
    good = '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    assert build("dpo", {"source": "jsonl", "jsonl": good + good}).rows == [
        {"prompt": "p", "chosen": "a", "rejected": "b"}]
    with pytest.raises(Unprocessable) as caught:
        build("dpo", {"source": "jsonl", "jsonl": good + '{"prompt": "p", "chosen": "a"}\n'})
    assert caught.value.details == {"field": "data.jsonl", "line": 2, "key": "rejected"}
    with pytest.raises(Unprocessable, match="line 1 is not JSON"):
        build("sft", {"source": "jsonl", "jsonl": "{nope"})
    with pytest.raises(Unprocessable, match="'label' must be true or false"):
        build("kto", {"source": "jsonl", "jsonl": '{"prompt": "p", "completion": "c", "label": "yes"}'})


def test_api_gives_counts_rows_and_refusals(client, rated_history):
    body = client.get("/api/v1/training/data?format=sft&source=history&rows=1").get_json()
    assert body["rows"] == 3 and body["counts"] == {"history": 3} and len(body["items"]) == 1
    refused = client.get("/api/v1/training/data?format=dpo&source=history&prompt=nothing-like-it")
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "no_training_data" and "prompt='nothing-like-it'" in error["message"]
    assert client.get("/api/v1/training/data?format=ppo").status_code == 422
    assert client.get("/api/v1/training/data?source=history,nowhere").status_code == 422


def test_cli_writes_jsonl_and_counts(cli, rated_history, tmp_path):
    out = tmp_path / "kto.jsonl"
    result = cli("train", "data", "--format", "kto", "--source", "history", "--model", "coder", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {row["label"] for row in rows} == {True, False}
    assert "4 kto rows (history: 4)" in result.output
    refused = cli("train", "data", "--source", "history", "--label", "production")
    assert refused.exit_code == 2 and "label='production'" in refused.output


def test_prompt_version_and_label_filters_pick_library_executions(app, scripted):
    from promptyard.prompts.labels import set_label
    from promptyard.prompts.library import create_prompt
    from promptyard.prompts.versions import add_version

    create_prompt("explain", "Explain {{ code }}")
    add_version("explain", "Explain briefly: {{ code }}")
    set_label("explain", "production", 2)
    scripted("lib", {"Explain x": ["It is x."], "Explain briefly: x": ["x."], ADD: ["    return a + b\n"]})
    record("lib", None, 5, prompt="explain", version=1, variables={"code": "x"})
    record("lib", None, 5, prompt="explain", label="production", variables={"code": "x"})
    record("lib", ADD, 5)
    assert build("sft", {"source": "history", "prompt": "explain"}).rows == [
        {"prompt": "Explain x", "completion": "It is x."}, {"prompt": "Explain briefly: x", "completion": "x."}]
    assert build("sft", {"source": "history", "prompt": "explain", "version": 1}).rows == [
        {"prompt": "Explain x", "completion": "It is x."}]
    assert build("sft", {"source": "history", "label": "production"}).rows == [
        {"prompt": "Explain briefly: x", "completion": "x."}]
