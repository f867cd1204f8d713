"""The closed loop, end to end from the CLI: a dataset whose reference solutions the tiny base model does not
write, SFT with LoRA on them, evaluation runs of base and tuned model, and `eval compare` reporting pass@1 up.

Memorization on purpose: it proves the data, training, registration, serving and evaluation are wired together.
"""

from __future__ import annotations

import json

import pytest

from promptyard.models.service import register_model
from tests.training.conftest import TASKS


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_WORKERS": 2}


def test_sft_on_reference_solutions_raises_pass_at_1(app, cli, trainable_gpt2_dir, tiny_dataset):
    register_model("tiny-base", "transformers", str(trainable_gpt2_dir), params={"max_new_tokens": 24})
    trained = cli("train", "start", "tiny-base", "--name", "tiny-tuned", "--source", "dataset",
                  "--dataset", tiny_dataset, "--param", "learning_rate=0.01", "--param", "max_steps=40",
                  "--param", "lora_dropout=0", "--param", "lr_scheduler_type=constant",
                  "--param", "per_device_train_batch_size=4", "--param", "max_length=64")
    assert trained.exit_code == 0, trained.output
    assert f"sft of tiny-base on {len(TASKS)} rows -> tiny-tuned" in trained.output
    assert "model 'tiny-tuned' is registered" in trained.output

    runs = {}
    for model in ("tiny-base", "tiny-tuned"):
        result = cli("eval", "run", "--dataset", tiny_dataset, "--model", model, "--no-progress")
        assert result.exit_code == 0, result.output
        run = json.loads(result.stdout)
        assert run["status"] == "succeeded"
        runs[model] = run
    assert runs["tiny-base"]["pass_at_k"]["pass@1"] == 0.0
    assert runs["tiny-tuned"]["pass_at_k"]["pass@1"] == 1.0

    compared = cli("eval", "compare", str(runs["tiny-base"]["id"]), str(runs["tiny-tuned"]["id"]))
    assert compared.exit_code == 0, compared.output
    report = json.loads(compared.stdout)
    assert report["a_pass_at_1"] == 0.0 and report["b_pass_at_1"] == 1.0
    assert report["mcnemar"]["only_b"] == len(TASKS) and report["mcnemar"]["only_a"] == 0

    listed = cli("train", "list")
    assert "succeeded\tsft\ttiny-base -> tiny-tuned\t40/40" in listed.output
    shown = json.loads(cli("train", "show", "1").stdout)
    assert shown["model"] == "tiny-tuned" and len(shown["losses"]) == 40
