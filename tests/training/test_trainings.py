"""LoRA trainings: refused bad input with nothing written, SFT/KTO/DPO runs, progress, cancel and resume, and the
adapter registered as a model the pipeline serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.models import ModelConfig
from promptyard.db.training_models import Training
from promptyard.execution.pipeline import ExecutionRequest, execute
from promptyard.models.service import register_model
from promptyard.training import runs
from tests.training.conftest import TASKS

# Memorizing four short functions: a high learning rate, no dropout, a few dozen steps.
FAST = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "learning_rate": 1e-2, "max_steps": 40,
        "per_device_train_batch_size": 4, "lr_scheduler_type": "constant", "max_length": 64, "save_steps": 20}


@pytest.fixture
def base(app, trainable_gpt2_dir):
    register_model("tiny-base", "transformers", str(trainable_gpt2_dir))
    return "tiny-base"


def wait(app, body: dict) -> dict:
    db.session.expire_all()
    row = db.session.get(Training, body["id"])
    app.extensions["promptyard.jobs"].wait(row.job_id, timeout=300)
    db.session.expire_all()
    return runs.training_to_dict(db.session.get(Training, body["id"]))


def greedy(model: str, prompt: str) -> str:
    return execute(ExecutionRequest(model=model, input=prompt, cache=False,
                                    params={"max_new_tokens": 24})).output


def nothing_written(app) -> None:
    assert db.session.scalar(select(func.count()).select_from(Training)) == 0
    assert not (Path(app.config["PROMPTYARD_HOME"]) / "trainings").exists()


def test_sft_over_the_api_registers_a_model_that_writes_the_solutions(app, client, base, tiny_dataset):
    response = client.post("/api/v1/trainings", json={
        "base_model": base, "name": "tiny-tuned", "method": "sft",
        "data": {"source": "dataset", "dataset": tiny_dataset}, "params": FAST})
    assert response.status_code == 202, response.get_json()
    started = response.get_json()
    assert started["status"] in ("queued", "running") and started["model"] == "tiny-tuned"  # the job may be quick
    assert started["data_summary"]["counts"] == {"dataset": len(TASKS)}
    done = wait(app, started)
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == {"step": 40, "total": 40}
    assert [item["step"] for item in done["losses"]] == list(range(1, 41))
    assert done["losses"][-1]["loss"] < done["losses"][0]["loss"] / 4
    assert client.get(f"/api/v1/trainings/{started['id']}").get_json()["status"] == "succeeded"
    assert client.get("/api/v1/trainings").get_json()["total"] == 1

    model = client.get("/api/v1/models/tiny-tuned").get_json()
    assert model["plugin"] == "transformers" and model["source"] == db.session.get(ModelConfig, 1).source
    assert model["options"]["trained"] == {"training": started["id"], "base_model": base, "method": "sft",
                                           "data": started["data_summary"]}
    assert (Path(model["options"]["adapter"]) / "adapter_config.json").is_file()
    for _, prompt, solution, _ in TASKS:
        assert greedy("tiny-tuned", prompt) == solution
        assert greedy(base, prompt) != solution

    # Served like any other model: /v1, and with the adapter merged into the weights.
    completion = client.post("/v1/completions", json={"model": "tiny-tuned", "prompt": TASKS[0][1],
                                                      "max_tokens": 24, "temperature": 0})
    assert completion.status_code == 200 and completion.get_json()["choices"][0]["text"] == TASKS[0][2]
    register_model("tiny-merged", "transformers", model["source"],
                   options={"adapter": model["options"]["adapter"], "merge_adapter": True})
    assert [greedy("tiny-merged", p) for _, p, _, _ in TASKS] == [s for _, _, s, _ in TASKS]
    register_model("tiny-lost", "transformers", model["source"], options={"adapter": "/nowhere/adapter"})
    lost = client.post("/api/v1/executions", json={"model": "tiny-lost", "input": "def f():\n"})
    assert lost.status_code == 422 and lost.get_json()["error"]["code"] == "adapter_not_found"

    resumed = client.post(f"/api/v1/trainings/{started['id']}/resume")
    assert resumed.status_code == 409 and resumed.get_json()["error"]["code"] == "training_not_resumable"


def test_cancel_saves_a_checkpoint_and_resume_continues_from_it(app, base, tiny_dataset):
    import threading

    row = runs.create_training(base, "tiny-resumed", "sft", {"source": "dataset", "dataset": tiny_dataset},
                               {**FAST, "max_steps": 60, "save_steps": 1000}, submit=False)
    training_id = row.id

    def cancel_once_running() -> None:
        with app.app_context():
            while True:
                db.session.expire_all()
                current = db.session.get(Training, training_id)
                if current.step >= 3:
                    runs.cancel_training(training_id)
                    return
                db.session.commit()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    first = runs.execute_training(training_id)
    canceller.join(timeout=60)
    assert first["status"] == "cancelled"
    stopped_at = first["progress"]["step"]
    assert 3 <= stopped_at < 60
    checkpoints = Path(row.output_dir) / "checkpoints"
    assert (checkpoints / f"checkpoint-{stopped_at}").is_dir()
    assert db.session.scalar(select(ModelConfig).where(ModelConfig.name == "tiny-resumed")) is None

    runs.resume_training(training_id, submit=False)
    done = runs.execute_training(training_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["resumed_from_step"] == stopped_at
    assert [item["step"] for item in done["losses"]] == list(range(1, 61))
    assert db.session.scalar(select(ModelConfig).where(ModelConfig.name == "tiny-resumed")) is not None


@pytest.mark.parametrize("method, rows", [
    ("kto", [{"prompt": p, "completion": s, "label": True} for _, p, s, _ in TASKS]
     + [{"prompt": p, "completion": "    return None\n", "label": False} for _, p, _, _ in TASKS]),
    ("dpo", [{"prompt": p, "chosen": s, "rejected": "    return None\n"} for _, p, s, _ in TASKS]),
])
def test_kto_and_dpo_lower_their_loss(app, base, method, rows):
    import json

    jsonl = "".join(json.dumps(row) + "\n" for row in rows)
    row = runs.create_training(base, f"tiny-{method}", method, {"source": "jsonl", "jsonl": jsonl},
                               {**FAST, "max_steps": 15, "learning_rate": 5e-3, "beta": 0.1}, submit=False)
    done = runs.execute_training(row.id)
    assert done["status"] == "succeeded", done["error"]
    losses = [item["loss"] for item in done["losses"]]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert db.session.scalar(select(ModelConfig.options).where(ModelConfig.name == f"tiny-{method}"))["trained"][
        "method"] == method


def test_cancel_of_a_queued_training_and_of_a_finished_one(app, client, base, tiny_dataset):
    row = runs.create_training(base, "tiny-queued", "sft", {"source": "dataset", "dataset": tiny_dataset}, FAST,
                               submit=False)
    response = client.post(f"/api/v1/trainings/{row.id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    again = client.post(f"/api/v1/trainings/{row.id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "training_finished"
    assert client.post("/api/v1/trainings/999/cancel").status_code == 404
    assert client.get("/api/v1/trainings/999").status_code == 404


@pytest.mark.parametrize("body, status, code", [
    ({"base_model": "nobody"}, 404, "model_not_found"),
    ({"base_model": "gguf-model"}, 422, "base_not_trainable"),
    ({"base_model": "remote"}, 422, "base_not_trainable"),
    ({"base_model": "t5"}, 422, "base_not_trainable"),
    ({"data": {"source": "history"}}, 422, "no_training_data"),
    ({"data": {"source": "dataset"}}, 422, "invalid_training_data"),
    ({"params": {"rank": 8}}, 422, "invalid_training_params"),
    ({"params": {"learning_rate": -1}}, 422, "invalid_training_params"),
    ({"params": {"quantization": "4bit"}}, 422, "quantization_unavailable"),
    ({"method": "ppo"}, 422, None),
    ({"name": "tiny-base"}, 409, "model_exists"),
    ({"name": "bad name!"}, 422, None),
    ({"extra": 1}, 422, None),
])
def test_bad_input_is_refused_before_anything_is_written(app, client, base, tiny_dataset, tiny_t5_dir, body,
                                                         status, code):
    register_model("gguf-model", "transformers", "/models/qwen.Q4_K_M.gguf")
    register_model("remote", "openai-compatible", "http://127.0.0.1:9/v1", options={"model": "served"})
    register_model("t5", "transformers", str(tiny_t5_dir))
    models_before = db.session.scalar(select(func.count()).select_from(ModelConfig))
    request = {"base_model": base, "name": "tiny-new", "method": "sft",
               "data": {"source": "dataset", "dataset": tiny_dataset}, "params": FAST, **body}
    response = client.post("/api/v1/trainings", json=request)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code:
        assert error["code"] == code
    nothing_written(app)
    assert db.session.scalar(select(func.count()).select_from(ModelConfig)) == models_before


def test_cli_cancel_and_resume(app, cli, base, tiny_dataset):
    start = ("train", "start", base, "--name", "tiny-cli", "--source", "dataset", "--dataset", tiny_dataset,
             "--param", "max_steps=2", "--param", "per_device_train_batch_size=4")
    no_workers = cli(*start, "--background")
    assert no_workers.exit_code == 2 and "needs Celery workers" in no_workers.output
    nothing_written(app)
    assert cli(*start).exit_code == 0
    assert cli("train", "cancel", "1").exit_code == 2  # finished: refused
    row = runs.create_training(base, "tiny-cli-2", "sft", {"source": "dataset", "dataset": tiny_dataset},
                               {"max_steps": 2, "per_device_train_batch_size": 4}, submit=False)
    cancelled = cli("train", "cancel", str(row.id))
    assert cancelled.exit_code == 0 and f"Training {row.id}: cancelled" in cancelled.output
    resumed = cli("train", "resume", str(row.id))
    assert resumed.exit_code == 0, resumed.output
    assert "model 'tiny-cli-2' is registered" in resumed.output
    assert cli("train", "show", "999").exit_code == 2


def test_startup_resumes_trainings_a_restart_left_behind(app, base, tiny_dataset):
    from promptyard.startup import STARTUP_HOOKS

    assert "promptyard.training.runs:resume_interrupted_trainings" in dict(STARTUP_HOOKS)
    row = runs.create_training(base, "tiny-restarted", "sft", {"source": "dataset", "dataset": tiny_dataset},
                               {"max_steps": 2, "per_device_train_batch_size": 4}, submit=False)
    row.status = "running"  # as a crash mid-training leaves it
    db.session.commit()
    assert runs.resume_interrupted_trainings() == "resumed 1 training(s)"
    done = wait(app, {"id": row.id})
    assert done["status"] == "succeeded", done["error"]
    assert runs.resume_interrupted_trainings() == "resumed 0 training(s)"


def test_trainings_queued_together_run_one_after_the_other(app, client, base, tiny_dataset):
    bodies = [client.post("/api/v1/trainings", json={
        "base_model": base, "name": f"tiny-{index}", "data": {"source": "dataset", "dataset": tiny_dataset},
        "params": {**FAST, "max_steps": 5}}).get_json() for index in range(2)]
    done = [wait(app, body) for body in bodies]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], [d["error"] for d in done]
    first, second = sorted(done, key=lambda d: d["started_at"])
    assert first["finished_at"] <= second["started_at"]


@pytest.mark.redis
def test_with_a_broker_the_training_goes_to_the_celery_workers(app, client, base, tiny_dataset, redis_url):
    import json

    import redis

    from promptyard.jobs import CeleryJobs

    app.extensions["promptyard.jobs"] = CeleryJobs(redis_url)
    broker = redis.Redis.from_url(redis_url)
    broker.delete("celery")
    response = client.post("/api/v1/trainings", json={
        "base_model": base, "name": "tiny-remote", "data": {"source": "dataset", "dataset": tiny_dataset},
        "params": FAST})
    assert response.status_code == 202
    message = json.loads(broker.lpop("celery"))
    assert message["headers"]["task"] == "promptyard.jobs.run"
    assert "promptyard.training.runs:execute_training" in message["headers"]["argsrepr"]
    assert response.get_json()["status"] == "queued"  # no worker here: it waits for one
    db.session.expire_all()
    assert db.session.get(Training, response.get_json()["id"]).job_id == message["headers"]["id"]
