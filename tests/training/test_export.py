"""Export of a trained model: the adapter reloads with PEFT to the same greedy output, the merged weights equal
base + adapter, the model card's metadata reads back, and a push reaches a local stand-in for the Hub."""

from __future__ import annotations


import pytest
import torch

from promptyard.evals.runs import create_run, execute_run
from promptyard.models.service import register_model
from promptyard.training import runs
from tests.fixtures.hub_server import serve_hub
from tests.training.conftest import TASKS
from tests.training.test_trainings import FAST, greedy


@pytest.fixture
def database_url(tmp_path, sqlite_template):
    """SQLite only: exporting reads a few rows and writes files; training and its records are tested on both."""
    import shutil

    path = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app_config():
    return {"PROMPTYARD_EVAL_WORKERS": 2}


@pytest.fixture
def tuned(app, trainable_gpt2_dir, tiny_dataset):
    """`tiny-tuned`: SFT of `tiny-base` on the dataset's solutions, evaluated once on it."""
    register_model("tiny-base", "transformers", str(trainable_gpt2_dir), params={"max_new_tokens": 24})
    row = runs.create_training("tiny-base", "tiny-tuned", "sft", {"source": "dataset", "dataset": tiny_dataset},
                               FAST, submit=False)
    assert runs.execute_training(row.id)["status"] == "succeeded"
    run = create_run(tiny_dataset, "tiny-tuned", submit=False)
    assert execute_run(run.id)["pass_at_k"] == {"pass@1": 1.0}
    return "tiny-tuned"


@pytest.fixture
def hub(monkeypatch):
    found, stop = serve_hub()
    monkeypatch.setenv("HF_ENDPOINT", found.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield found
    stop()


def generate(model, tokenizer, prompt: str) -> str:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_adapter_and_merged_exports_reload_to_the_same_output(cli, client, tuned, trainable_gpt2_dir, tmp_path):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    result = cli("models", "export", tuned, "--to", str(adapter_dir))
    assert result.exit_code == 0, result.output
    assert "Exported tiny-tuned (adapter)" in result.output
    assert (adapter_dir / "adapter_config.json").is_file() and not (adapter_dir / "model.safetensors").exists()
    response = client.post(f"/api/v1/models/{tuned}/export", json={"to": str(merged_dir), "merge": True})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["merged"] is True and (merged_dir / "model.safetensors").is_file()

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(trainable_gpt2_dir), adapter_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    for _, prompt, solution, _ in TASKS:
        served = greedy(tuned, prompt)
        assert served == solution
        assert generate(with_adapter.eval(), tokenizer, prompt) == served
        assert generate(merged.eval(), tokenizer, prompt) == served
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            assert torch.allclose(with_adapter(ids).logits, merged(ids).logits, atol=1e-4)

    card = ModelCard.load(adapter_dir / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "peft" and "lora" in meta["tags"]
    assert meta["promptyard"]["base_model"] == "tiny-base" and meta["promptyard"]["method"] == "sft"
    assert meta["promptyard"]["data"]["counts"] == {"dataset": len(TASKS)}
    assert meta["promptyard"]["hyperparameters"]["r"] == FAST["r"]
    [result] = card.data.eval_results
    assert (result.dataset_name, result.metric_type, result.metric_value) == ("tiny-code", "pass@1", 1.0)
    assert "## Training data" in card.text and "| learning_rate | 0.01 |" in card.text
    assert ModelCard.load(merged_dir / "README.md").data.library_name == "transformers"


def test_push_uploads_the_export_through_the_hub_api(cli, tuned, hub, tmp_path):
    folder = tmp_path / "out"
    result = cli("models", "export", tuned, "--to", str(folder), "--push", "acme/tiny-tuned")
    assert result.exit_code == 0, result.output
    assert f"{hub.url}/acme/tiny-tuned/commit/" in result.output
    pushed = hub.repos["acme/tiny-tuned"]
    assert set(pushed) == {p.name for p in folder.iterdir()}
    assert all(pushed[name] == (folder / name).read_bytes() for name in pushed)
    assert hub.commits == [{"repo": "acme/tiny-tuned", "summary": "Upload from promptyard", "kind": "models"}]
    assert hub.tokens == ["Bearer hf_test_token"]
    assert hub.validated[0]["promptyard"]["base_model"] == "tiny-base"  # the card's metadata, as the Hub saw it


def test_bad_exports_are_refused_and_write_nothing(client, tuned, trainable_gpt2_dir, tmp_path):
    register_model("plain", "transformers", str(trainable_gpt2_dir))
    register_model("remote", "openai-compatible", "http://127.0.0.1:9/v1", options={"model": "served"})
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    cases = [
        ("nobody", {"to": str(tmp_path / "a")}, 404, "model_not_found"),
        ("remote", {"to": str(tmp_path / "a")}, 422, "model_not_exportable"),
        (tuned, {"to": str(taken)}, 409, "export_folder_not_empty"),
        (tuned, {"to": str(tmp_path / "a"), "push": "no-org"}, 422, "invalid_repo_id"),
        ("plain", {"to": str(tmp_path / "a"), "merge": True}, 422, "nothing_to_merge"),
        (tuned, {"to": str(tmp_path / "a"), "merge": "yes"}, 422, None),
        (tuned, {"to": ""}, 422, None),
    ]
    for name, body, status, code in cases:
        response = client.post(f"/api/v1/models/{name}/export", json=body)
        assert response.status_code == status, (name, body, response.get_json())
        if code:
            assert response.get_json()["error"]["code"] == code
    assert not (tmp_path / "a").exists()
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    plain = client.post("/api/v1/models/plain/export", json={"to": str(tmp_path / "plain")})
    assert plain.status_code == 200 and plain.get_json()["adapter"] is False
    assert (tmp_path / "plain" / "model.safetensors").is_file()
    assert "No finished evaluation run of this model yet." in (tmp_path / "plain" / "README.md").read_text()


def test_a_push_to_an_unreachable_hub_is_a_clear_error(client, tuned, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    response = client.post(f"/api/v1/models/{tuned}/export", json={"to": str(tmp_path / "x"), "push": "acme/x"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "hub_push_failed"
    assert (tmp_path / "x" / "adapter_config.json").is_file()  # the export itself is kept for a later push
