"""The model card of an exported model: base model, training data, hyperparameters, and the model's promptyard
evaluation results as `model-index` metadata (pass@k per dataset)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from promptyard.db import db
from promptyard.db.eval_models import EvalRun
from promptyard.db.models import ModelConfig
from promptyard.db.training_models import Training
from promptyard.plugins.hf_files import looks_like_path

# The Hub's dataset ids for the built-in evaluation datasets.
HUB_DATASETS = {"humaneval": "openai_humaneval", "mbpp": "mbpp", "mbpp-full": "mbpp"}


def eval_results(model_name: str) -> list[dict[str, Any]]:
    """The model's latest finished evaluation run per dataset: {"dataset", "run", "pass_at_k"}."""
    runs = db.session.scalars(select(EvalRun).where(EvalRun.model_name == model_name, EvalRun.status == "succeeded")
                              .order_by(EvalRun.id)).all()
    latest = {run.dataset: run for run in runs}
    return [{"dataset": dataset, "run": run.id, "pass_at_k": dict(run.pass_at_k or {})}
            for dataset, run in sorted(latest.items())]


def build_card(model: ModelConfig, training: Training | None, *, merged: bool, base: ModelConfig | None):
    """A huggingface_hub.ModelCard for the exported folder."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = eval_results(model.name)
    metrics = [EvalResult(task_type="text-generation", dataset_type=HUB_DATASETS.get(r["dataset"], r["dataset"]),
                          dataset_name=r["dataset"], metric_type=k, metric_name=k, metric_value=float(value),
                          task_name="Code generation")
               for r in results for k, value in sorted(r["pass_at_k"].items())]
    base_source = base.source if base is not None else model.source
    tags = ["promptyard", "code"] + (["lora", "peft", training.method] if training is not None else [])
    data = ModelCardData(
        model_name=model.name,
        base_model=None if looks_like_path(base_source) else base_source,
        library_name="transformers" if merged or training is None else "peft",
        pipeline_tag="text-generation",
        tags=tags,
        eval_results=metrics or None,
        promptyard=_provenance(model, training, base, base_source, results),
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_text(model, training, merged, base, base_source, results)}")


def _provenance(model, training, base, base_source, results) -> dict[str, Any]:
    """Where the model came from, in the card's metadata (the Hub's base_model takes hub ids only)."""
    found: dict[str, Any] = {"model": model.name, "base_source": base_source, "evaluations": results}
    if training is not None:
        found.update(base_model=base.name if base is not None else training.base_model, training=training.id,
                     method=training.method, data=dict(training.data_summary or {}),
                     hyperparameters=dict(training.params or {}))
    return found


def _text(model, training, merged, base, base_source, results) -> str:
    lines = [f"# {model.name}", ""]
    if training is None:
        lines += [f"Exported from promptyard ({model.plugin} model from `{base_source}`).", ""]
    else:
        kind = "merged into the base weights" if merged else "a LoRA adapter (PEFT) to load on the base"
        summary = training.data_summary or {}
        counts = ", ".join(f"{source}: {n}" for source, n in (summary.get("counts") or {}).items())
        lines += [
            f"Fine-tuned with promptyard (training {training.id}, TRL {training.method.upper()} with LoRA) from "
            f"**{base.name if base is not None else training.base_model}** (`{base_source}`); this folder holds "
            f"{kind}.", "",
            "## Training data", "",
            f"{summary.get('rows', 0)} {summary.get('format', training.method)} rows ({counts}); "
            f"{summary.get('duplicates_dropped', 0)} duplicates dropped. Filters: `{training.data}`.", "",
            "## Hyperparameters", "",
            "| name | value |", "| --- | --- |",
            *(f"| {name} | {value} |" for name, value in sorted((training.params or {}).items())), "",
        ]
        if training.losses:
            first, last = training.losses[0], training.losses[-1]
            lines += [f"Training loss {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f} "
                      f"(step {last['step']}).", ""]
    lines += ["## Evaluation (promptyard, code executed in a sandbox)", ""]
    if results:
        lines += ["| dataset | run | pass@k |", "| --- | --- | --- |"]
        lines += [f"| {r['dataset']} | {r['run']} | "
                  f"{', '.join(f'{k} = {v:.3f}' for k, v in sorted(r['pass_at_k'].items()))} |" for r in results]
    else:
        lines.append("No finished evaluation run of this model yet.")
    return "\n".join(lines) + "\n"
