"""Training runs: validate and record one (everything refused before anything is written), run it as a background
job, follow, cancel and resume it; a run that succeeds registers its adapter as a new model."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from promptyard.db import db, utcnow
from promptyard.db.models import ModelConfig
from promptyard.db.training_models import Training
from promptyard.errors import Conflict, NotFound, Unavailable, Unprocessable
from promptyard.models import service as models_service
from promptyard.training import data as training_data
from promptyard.training.params import METHODS, TrainingParams, parse_params

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")
TRAINABLE_PLUGIN = "transformers"


def training_home() -> Path:
    return Path(current_app.config["PROMPTYARD_HOME"]) / "trainings"


def check_dependencies() -> None:
    missing = [name for name in ("peft", "trl", "datasets") if importlib.util.find_spec(name) is None]
    if missing:
        raise Unavailable(f"Training needs the {', '.join(missing)} package(s): pip install 'promptyard[train]'.",
                          code="training_unavailable", details={"missing": missing})


def base_folder(base: ModelConfig, quantization: str | None) -> str:
    """The base model's folder, once it is known to be trainable here (422 naming why it is not)."""
    if base.plugin != TRAINABLE_PLUGIN:
        raise Unprocessable(
            f"Model '{base.name}' runs on the '{base.plugin}' plugin; only transformers models can be fine-tuned "
            f"(a GGUF model or an OpenAI-compatible server has no trainable weights here). Register the model's "
            f"Hugging Face weights with the transformers plugin and train that.",
            code="base_not_trainable", details={"field": "base_model", "plugin": base.plugin})
    if base.source.lower().endswith(".gguf"):
        raise Unprocessable(f"Model '{base.name}' is a GGUF file, which cannot be fine-tuned; train its Hugging Face "
                            f"weights instead.", code="base_not_trainable", details={"field": "base_model"})
    if (base.options or {}).get("adapter"):
        raise Unprocessable(f"Model '{base.name}' is itself a base with an adapter; train its base model instead.",
                            code="base_not_trainable", details={"field": "base_model"})
    plugin = models_service.get_registry().create(base.plugin, base.source, revision=base.revision,
                                                  quantization=None, options=dict(base.options or {}))
    folder = plugin._model_path()  # the local folder or cached snapshot; a clear error when the weights are missing
    if plugin._config().is_encoder_decoder:
        raise Unprocessable(f"Model '{base.name}' is an encoder-decoder model; LoRA training here takes causal "
                            f"language models.", code="base_not_trainable", details={"field": "base_model"})
    if quantization is not None:
        from promptyard.plugins.hf_loading import choose_device_and_dtype, quantization_config_for

        if quantization != "4bit":
            raise Unprocessable("QLoRA trains on a 4-bit base; an 8-bit base cannot be trained here.",
                                code="quantization_unavailable", details={"field": "params.quantization"})
        device, dtype = choose_device_and_dtype(dict(base.options or {}))
        quantization_config_for(quantization, device, dtype)  # refuses clearly without CUDA or bitsandbytes
    return folder


def create_training(base_model: str, name: str, method: str, data: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None, *, submit: bool = True) -> Training:
    """Check everything, then record a queued training with its data written beside it and start the job."""
    if method not in METHODS:
        raise Unprocessable(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.", code="invalid_method",
                            details={"field": "method"})
    hyper = parse_params(params)
    if not isinstance(name, str) or not models_service.NAME_PATTERN.match(name):
        raise Unprocessable(f"Model name '{name}' is invalid: use letters, digits, '.', '_', ':' or '-'.",
                            code="invalid_model_name", details={"field": "name"})
    if db.session.scalar(select(ModelConfig.id).where(ModelConfig.name == name)) is not None:
        raise Conflict(f"A model named '{name}' is already registered.", code="model_exists",
                       details={"field": "name"})
    if db.session.scalar(select(Training.id).where(Training.model_name == name, Training.status.in_(ACTIVE))):
        raise Conflict(f"A training that will register '{name}' is already under way.", code="training_exists",
                       details={"field": "name"})
    base = models_service.get_model(base_model)
    quantization = hyper.quantization or base.quantization
    base_folder(base, quantization)
    check_dependencies()
    spec = training_data.parse_spec(data)
    rows = training_data.build(method, spec, home=current_app.config.get("PROMPTYARD_HOME"))
    row = Training(base_model=base.name, model_name=name, method=method, data=spec.filters(),
                   data_summary=rows.summary(), params=hyper.model_dump(mode="json"))
    db.session.add(row)
    db.session.flush()
    folder = training_home() / str(row.id)
    try:
        if folder.exists():  # left by a training of a database since reset
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / "data.jsonl").write_text(rows.jsonl(), encoding="utf-8")
    except OSError as exc:
        db.session.rollback()
        raise Unavailable(f"Could not write the training data: {exc}", code="training_storage_failed") from exc
    row.output_dir = str(folder)
    db.session.commit()
    if submit:
        _submit(row)
    return row


def _submit(row: Training) -> None:
    from promptyard import jobs

    row.job_id = jobs.submit("promptyard.training.runs:execute_training", row.id)
    db.session.commit()


def get_training(training_id: int) -> Training:
    row = db.session.get(Training, training_id)
    if row is None:
        raise NotFound(f"Training {training_id} does not exist.", code="training_not_found")
    return row


def list_trainings(limit: int = 50, offset: int = 0) -> tuple[list[Training], int]:
    total = db.session.scalar(select(func.count()).select_from(Training))
    rows = db.session.scalars(select(Training).order_by(Training.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def cancel_training(training_id: int) -> Training:
    """A queued training is cancelled at once; a running one at its next step, after saving a checkpoint."""
    row = get_training(training_id)
    if row.status not in ACTIVE:
        raise Conflict(f"Training {training_id} is {row.status}; only a queued or running training can be "
                       f"cancelled.", code="training_finished", details={"status": row.status})
    row.cancel_requested = True
    if row.status == "queued":
        row.status, row.finished_at = "cancelled", utcnow()
    db.session.commit()
    return row


def resume_training(training_id: int, *, submit: bool = True) -> Training:
    """A cancelled or failed training goes back to the queue and continues from its last checkpoint."""
    row = get_training(training_id)
    if row.status not in ("cancelled", "failed"):
        raise Conflict(f"Training {training_id} is {row.status}; only a cancelled or failed training can be "
                       f"resumed.", code="training_not_resumable", details={"status": row.status})
    row.status, row.cancel_requested, row.error, row.finished_at = "queued", False, None, None
    db.session.commit()
    if submit:
        _submit(row)
    return row


def execute_training(training_id: int) -> dict:
    """The job: train (resuming from a checkpoint if there is one), then register the adapter as a model."""
    from promptyard.training import trainer

    # One training at a time in a process: transformers and accelerate keep process-wide training state that two
    # trainers on two job threads would reset under each other. A training waiting here stays `queued`.
    with trainer.ONE_AT_A_TIME:
        db.session.expire_all()
        return _execute(training_id)


def _execute(training_id: int) -> dict:
    from promptyard.training import trainer

    row = get_training(training_id)
    if row.status not in ACTIVE:
        return training_to_dict(row)
    if row.cancel_requested:
        trainer.finished(row, "cancelled")
        return training_to_dict(row)
    row.status, row.started_at = "running", row.started_at or utcnow()
    db.session.commit()
    try:
        base = models_service.get_model(row.base_model)
        quantization = row.params.get("quantization") or base.quantization
        folder = base_folder(base, quantization)
        completed = trainer.train(row, folder, dict(base.options or {}), quantization)
        row = get_training(training_id)
        if not completed:
            trainer.finished(row, "cancelled")
            return training_to_dict(row)
        register_result(row, base)
        trainer.finished(row, "succeeded")
    except Exception as exc:  # noqa: BLE001 - a failed training records why instead of vanishing
        db.session.rollback()
        log.exception("training %s failed", training_id)
        row = get_training(training_id)
        message = getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"
        trainer.finished(row, "failed", message)
    return training_to_dict(row)


def register_result(row: Training, base: ModelConfig) -> ModelConfig:
    """The adapter as a new transformers model: the base's source and settings plus the adapter (and provenance)."""
    params = TrainingParams.model_validate(row.params)
    adapter = str(Path(row.output_dir) / "adapter")
    options = {**dict(base.options or {}), "adapter": adapter, "merge_adapter": params.merge,
               "trained": {"training": row.id, "base_model": base.name, "method": row.method,
                           "data": dict(row.data_summary or {})}}
    summary = row.data_summary or {}
    description = (f"LoRA ({row.method}) of {base.name} from training {row.id} on {summary.get('rows', 0)} rows "
                   f"({', '.join(f'{k}: {v}' for k, v in (summary.get('counts') or {}).items())}).")
    return models_service.register_model(
        row.model_name, base.plugin, base.source, revision=base.revision, quantization=base.quantization,
        params=dict(base.params or {}), pricing=dict(base.pricing or {}), options=options, description=description,
    )


def resume_interrupted_trainings() -> str:
    """Startup hook: trainings left queued or running by a crash or restart go back to the job queue."""
    rows = db.session.scalars(select(Training).where(Training.status.in_(ACTIVE))).all()
    for row in rows:
        _submit(row)
    return f"resumed {len(rows)} training(s)"


def training_to_dict(row: Training) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "base_model": row.base_model,
        "model": row.model_name,
        "method": row.method,
        "data": row.data or {},
        "data_summary": row.data_summary or {},
        "params": row.params or {},
        "progress": {"step": row.step, "total": row.total_steps},
        "resumed_from_step": row.resumed_from_step,
        "losses": list(row.losses or []),
        "error": row.error,
        "cancel_requested": row.cancel_requested,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
