"""Registered models: register, list with status, and get a loaded plugin through the ModelManager."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app
from sqlalchemy import Row, bindparam, select
from sqlalchemy.exc import IntegrityError

from promptyard.db import db
from promptyard.db.models import ModelConfig
from promptyard.errors import Conflict, NotFound, PromptyardError, Unavailable, Unprocessable
from promptyard.plugins.base import LLMPlugin, validate_params
from promptyard.plugins.manager import ModelManager
from promptyard.plugins.registry import get_registry

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
QUANTIZATIONS = ("4bit", "8bit")
PRICING_KEYS = ("input_per_1k", "output_per_1k", "gpu_hour")
TEST_PLUGIN_NAME = "function"


def get_manager() -> ModelManager:
    return current_app.extensions["promptyard.models"]


def register_model(
    name: str,
    plugin: str,
    source: str,
    *,
    quantization: str | None = None,
    params: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    revision: str | None = None,
    description: str = "",
    is_preset: bool = False,
    require_plugin: bool = True,
) -> ModelConfig:
    """Register a model under a unique name; the plugin must be installed (404), values valid (422).

    `require_plugin=False` registers the row even when its plugin is missing (presets, the test helper).
    """
    if require_plugin:
        get_registry().get(plugin)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise Unprocessable(
            f"Model name '{name}' is invalid: use letters, digits, '.', '_', ':' or '-' (at most 100).",
            code="invalid_model_name", details={"field": "name"},
        )
    if not isinstance(source, str) or not source.strip() or len(source) > 500:
        raise Unprocessable("A model needs a 'source' (hub id, local path or base URL) of at most 500 characters.",
                            code="invalid_model_source", details={"field": "source"})
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise Unprocessable(
            f"Unknown quantization '{quantization}'; use one of {', '.join(QUANTIZATIONS)} or leave it out.",
            code="invalid_quantization", details={"field": "quantization"},
        )
    if options is not None and not isinstance(options, dict):
        raise Unprocessable("'options' must be an object.", code="invalid_options", details={"field": "options"})
    if db.session.scalar(select(ModelConfig.id).where(ModelConfig.name == name)) is not None:
        raise Conflict(f"A model named '{name}' is already registered.", code="model_exists", details={"model": name})
    if require_plugin:
        _check_plugin_accepts(plugin, source, revision, quantization, options)
    row = ModelConfig(
        name=name, plugin=plugin, source=source, revision=revision, quantization=quantization,
        params=_check_params(params or {}), pricing=_check_pricing(pricing or {}), options=dict(options or {}),
        description=description or "", is_preset=is_preset,
    )
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError as exc:  # a concurrent registration of the same name won the race
        db.session.rollback()
        raise Conflict(f"A model named '{name}' is already registered.", code="model_exists") from exc
    return row


def _check_plugin_accepts(plugin: str, source: str, revision: str | None, quantization: str | None,
                          options: dict[str, Any] | None) -> None:
    """Build the plugin once (it checks its source and options; nothing loads): what it refuses is a 422 now rather
    than an `error` status later. A plugin that fails otherwise (a missing dependency) is still registered, with that
    error as its status."""
    try:
        get_registry().create(plugin, source, revision=revision, quantization=quantization,
                              options=dict(options or {}))
    except Unprocessable:
        raise
    except Exception:  # noqa: BLE001 - reported by the model's status instead
        return


_MODEL_BY_NAME = select(ModelConfig).where(ModelConfig.name == bindparam("model_name"))
# Built once: every execution reads these, with Core on the session's connection (the ORM's per-row work, with
# the statement's, was a tenth of a cache hit).
_SETTINGS_COLUMNS = ("name", "plugin", "source", "revision", "quantization", "params", "pricing", "options")
_MODEL_SETTINGS = (select(*(ModelConfig.__table__.c[column] for column in _SETTINGS_COLUMNS))
                   .where(ModelConfig.__table__.c.name == bindparam("model_name")))


def get_model(name: str) -> ModelConfig:
    row = db.session.scalar(_MODEL_BY_NAME, {"model_name": name})
    if row is None:
        raise _no_model(name)
    return row


def model_settings(name: str) -> Row:
    """What running a registered model needs (name, plugin, source, revision, quantization, params, pricing,
    options), read-only; a 404 when there is no such model."""
    row = db.session.connection().execute(_MODEL_SETTINGS, {"model_name": name}).first()
    if row is None:
        raise _no_model(name)
    return row


def _no_model(name: str) -> NotFound:
    return NotFound(f"No model named '{name}' is registered.", code="model_not_found", details={"model": name})


def list_models() -> list[dict[str, Any]]:
    """Every registered model (presets included) with its status."""
    rows = db.session.scalars(select(ModelConfig).order_by(ModelConfig.name))
    return [model_to_dict(row) for row in rows]


def get_plugin(name: str, spec: dict[str, Any] | None = None) -> LLMPlugin:
    """The loaded plugin for a registered model, created through the plugin registry and loaded once.

    `spec`: the model's `plugin_spec`, when the caller has already read its row.
    """
    spec = spec if spec is not None else plugin_spec(get_model(name))

    def build() -> LLMPlugin:
        return get_registry().create(spec["plugin"], spec["source"], revision=spec["revision"],
                                     quantization=spec["quantization"], options=spec["options"])

    try:
        return get_manager().get(name, build)
    except PromptyardError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend failing to load is the backend's problem, not a 500
        raise Unavailable(
            f"Model '{name}' could not be loaded: {exc.__class__.__name__}: {exc}",
            code="model_load_failed",
            details={"model": name},
        ) from exc


def load_model(name: str) -> ModelConfig:
    get_plugin(name)
    return get_model(name)


def unload_model(name: str) -> ModelConfig:
    row = get_model(name)
    get_manager().unload(name)
    return row


def model_status(row: ModelConfig) -> tuple[str, str | None]:
    """`loaded` when in the manager, else the plugin's own status; `error` with the reason if it cannot be built."""
    if get_manager().is_loaded(row.name):
        return "loaded", None
    try:
        plugin = get_registry().create(row.plugin, row.source, revision=row.revision,
                                       quantization=row.quantization, options=dict(row.options or {}))
        return plugin.status(), None
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported as the model's status
        message = exc.message if isinstance(exc, PromptyardError) else f"{exc.__class__.__name__}: {exc}"
        return "error", message


def model_to_dict(row: ModelConfig) -> dict[str, Any]:
    status, error = model_status(row)
    return {
        "name": row.name,
        "plugin": row.plugin,
        "source": row.source,
        "revision": row.revision,
        "quantization": row.quantization,
        "params": dict(row.params or {}),
        "pricing": dict(row.pricing or {}),
        "options": dict(row.options or {}),
        "description": row.description,
        "is_preset": row.is_preset,
        "status": status,
        "error": error,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def install_plugin(
    name: str, plugin: LLMPlugin, *, pricing: dict[str, Any] | None = None, params: dict[str, Any] | None = None
) -> ModelConfig:
    """Test helper: register `name` (plugin "function") if missing and put the ready instance in the manager."""
    row = db.session.scalar(select(ModelConfig).where(ModelConfig.name == name))
    if row is None:
        row = register_model(name, TEST_PLUGIN_NAME, plugin.source, params=params, pricing=pricing,
                             require_plugin=False)
    else:
        if pricing is not None:
            row.pricing = _check_pricing(pricing)
        if params is not None:
            row.params = _check_params(params)
        db.session.commit()
    get_manager().put(name, plugin)
    return row


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Default generation params must be valid GenerationParams fields and values (422 naming the param)."""
    if not isinstance(params, dict):
        raise Unprocessable("'params' must be an object.", code="invalid_params", details={"field": "params"})
    validate_params(params)
    return dict(params)


def _check_pricing(pricing: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(pricing, dict):
        raise Unprocessable("'pricing' must be an object.", code="invalid_pricing", details={"field": "pricing"})
    for key, value in pricing.items():
        if key not in PRICING_KEYS:
            raise Unprocessable(
                f"Unknown pricing key '{key}'; use {', '.join(PRICING_KEYS)}.",
                code="invalid_pricing", details={"field": f"pricing.{key}"},
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise Unprocessable(f"Pricing '{key}' must be a number of at least 0.", code="invalid_pricing",
                                details={"field": f"pricing.{key}"})
    return dict(pricing)


def plugin_spec(row: ModelConfig | Row) -> dict[str, Any]:
    """What building the model's plugin needs, copied out of the row (usable after its session is gone)."""
    return {"plugin": row.plugin, "source": row.source, "revision": row.revision,
            "quantization": row.quantization, "options": dict(row.options or {})}


def register_presets() -> str:
    """Startup hook: register each built-in preset not registered yet; a user's edits are never overwritten."""
    from promptyard.plugins.presets import PRESETS

    specs = list(PRESETS.values()) if isinstance(PRESETS, dict) else list(PRESETS)
    existing = set(db.session.scalars(select(ModelConfig.name)))
    added = []
    for preset in specs:
        spec = preset.to_dict() if hasattr(preset, "to_dict") else dict(preset)
        name = spec.pop("name")
        if name in existing:
            continue
        register_model(name, spec.pop("plugin"), spec.pop("source"), is_preset=True, require_plugin=False, **{
            key: spec[key] for key in ("quantization", "params", "pricing", "options", "revision", "description")
            if key in spec
        })
        added.append(name)
    return f"{len(added)} preset(s) registered, {len(specs) - len(added)} already there"

