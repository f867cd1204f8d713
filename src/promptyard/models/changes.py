"""Fixing and removing registered models: change their settings, delete them, or archive those still in use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.eval_models import EvalRun
from promptyard.db.models import Execution, ModelConfig
from promptyard.errors import Conflict, Unprocessable
from promptyard.models.service import (
    QUANTIZATIONS,
    check_params,
    check_plugin_settings,
    check_pricing,
    get_manager,
    get_model,
)

# What PATCH may change; `name` and `plugin` are the model's identity (register another one to change them).
EDITABLE = ("source", "revision", "quantization", "params", "pricing", "options", "description")


def update_model(name: str, changes: dict[str, Any]) -> ModelConfig:
    """Change some of a model's settings (only the keys given); the loaded copy is dropped so the next run uses them."""
    row = get_model(name)
    if row.archived:
        raise Conflict(f"Model '{name}' is archived; register it again to restore it before changing it.",
                       code="model_archived", details={"model": name})
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Unprocessable(f"Cannot change {', '.join(unknown)}; a model's {', '.join(EDITABLE)} can be changed.",
                            code="invalid_model_change", details={"field": unknown[0]})
    if not changes:
        raise Unprocessable(f"Nothing to change: give any of {', '.join(EDITABLE)}.", code="empty_change")
    checked = {key: _checked(key, value) for key, value in changes.items()}
    settings = {key: getattr(row, key) for key in ("plugin", "source", "revision", "quantization", "options")}
    check_plugin_settings({**settings, **{k: v for k, v in checked.items() if k in settings}})
    for key, value in checked.items():
        setattr(row, key, value)
    db.session.commit()
    get_manager().unload(name)  # built from the old settings
    return row


def _checked(key: str, value: Any) -> Any:
    if key == "source":
        if not isinstance(value, str) or not value.strip() or len(value) > 500:
            raise Unprocessable("'source' must be a hub id, local path or base URL of at most 500 characters.",
                                code="invalid_model_source", details={"field": "source"})
        return value.strip()
    if key == "quantization":
        if value is not None and value not in QUANTIZATIONS:
            raise Unprocessable(f"Unknown quantization '{value}'; use one of {', '.join(QUANTIZATIONS)} or null.",
                                code="invalid_quantization", details={"field": "quantization"})
        return value
    if key == "revision":
        if value is not None and (not isinstance(value, str) or len(value) > 100):
            raise Unprocessable("'revision' must be text of at most 100 characters, or null.",
                                code="invalid_revision", details={"field": "revision"})
        return value or None
    if key == "description":
        if not isinstance(value, str) or len(value) > 2000:
            raise Unprocessable("'description' must be text of at most 2000 characters.",
                                code="invalid_description", details={"field": "description"})
        return value
    if key == "options":
        if not isinstance(value, dict):
            raise Unprocessable("'options' must be an object.", code="invalid_options", details={"field": "options"})
        return dict(value)
    if key == "params":
        return check_params(value)
    return check_pricing(value)


def usage(name: str) -> int:
    """How many executions and evaluation runs name the model."""
    executions = db.session.scalar(select(func.count()).select_from(Execution).where(Execution.model_name == name))
    runs = db.session.scalar(select(func.count()).select_from(EvalRun).where(EvalRun.model_name == name))
    return int(executions or 0) + int(runs or 0)


def remove_model(name: str, *, archive: bool = False) -> dict[str, Any]:
    """Delete a model nothing refers to; one that executions name is refused (409) unless `archive`, which hides it
    and keeps its history. A preset is always archived, so that the next start does not register it again."""
    row = get_model(name)
    used = usage(name)
    if used and not archive and not row.archived:
        raise Conflict(
            f"Model '{name}' is named by {used} execution(s) or evaluation run(s); archive it instead "
            f"(DELETE /api/v1/models/{name}?archive=true, `promptyard models remove {name} --archive`) to hide it "
            "and keep its history.",
            code="model_in_use", details={"model": name, "references": used},
        )
    get_manager().unload(name)
    if used or row.is_preset or archive:
        row.archived = True
        db.session.commit()
        return {"name": name, "deleted": False, "archived": True}
    db.session.delete(row)
    db.session.commit()
    return {"name": name, "deleted": True, "archived": False}
