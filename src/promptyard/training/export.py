"""Export a registered transformers model to a folder: its LoRA adapter (or the adapter merged into the base
weights, or a plain model's weights), the tokenizer and a model card; optionally push the folder to the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import ModelConfig
from promptyard.db.training_models import Training
from promptyard.errors import Conflict, Unprocessable
from promptyard.models import service as models_service
from promptyard.training.card import build_card
from promptyard.training.hub import check_repo_id, push_folder

def _check_target(to: str) -> Path:
    if not isinstance(to, str) or not to.strip():
        raise Unprocessable("Name the folder to export to.", code="invalid_export_folder", details={"field": "to"})
    folder = Path(to).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise Conflict(f"'{folder}' exists and is not an empty folder; export into a new or empty one.",
                       code="export_folder_not_empty", details={"field": "to"})
    return folder


def _base_of(row: ModelConfig) -> ModelConfig | None:
    trained = (row.options or {}).get("trained") or {}
    name = trained.get("base_model")
    return db.session.scalar(select(ModelConfig).where(ModelConfig.name == name)) if name else None


def _training_of(row: ModelConfig) -> Training | None:
    training_id = ((row.options or {}).get("trained") or {}).get("training")
    return db.session.get(Training, training_id) if training_id else None


def export_model(name: str, to: str, *, merge: bool = False, push: str | None = None,
                 token: str | None = None) -> dict[str, Any]:
    """Write the model's files and card to `to` (a new or empty folder), then push them when `push` names a repo."""
    row = models_service.get_model(name)
    if row.plugin != "transformers":
        raise Unprocessable(f"Model '{name}' runs on '{row.plugin}'; only transformers models have weights to "
                            f"export.", code="model_not_exportable", details={"model": name})
    check_repo_id(push)
    folder = _check_target(to)
    options = dict(row.options or {})
    adapter = options.get("adapter")
    if merge and not adapter:
        raise Unprocessable(f"Model '{name}' has no adapter to merge.", code="nothing_to_merge",
                            details={"field": "merge"})
    plugin = models_service.get_registry().create(row.plugin, row.source, revision=row.revision, quantization=None,
                                                  options={k: v for k, v in options.items() if k != "adapter"})
    base_path = plugin._model_path()  # the base's local folder or cached snapshot (never the network)
    model, tokenizer = _load(base_path, adapter, merge, options)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    base = _base_of(row)
    if adapter and not merge:
        _point_adapter_at(folder, base.source if base is not None else row.source)
    card = build_card(row, _training_of(row), merged=bool(merge or not adapter), base=base)
    card.save(str(folder / "README.md"))
    result = {"model": name, "to": str(folder), "merged": bool(merge), "adapter": bool(adapter and not merge),
              "files": sorted(p.name for p in folder.iterdir()), "pushed": None}
    if push:
        result["pushed"] = push_folder(folder, push, token=token)
    return result


def _load(base_path: str, adapter: str | None, merge: bool, options: dict[str, Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = options.get("trust_remote_code") is True
    model = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True, trust_remote_code=trust)
    tokenizer = AutoTokenizer.from_pretrained(adapter or base_path, local_files_only=True, trust_remote_code=trust)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    return model, tokenizer


def _point_adapter_at(folder: Path, base_source: str) -> None:
    """The adapter names its base by where it was trained (a local folder); name the registered source instead."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_source
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
