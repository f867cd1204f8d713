"""Immutable, gapless versions of a prompt, and unified diffs between them."""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from promptyard.db import db, utcnow
from promptyard.db.models import PromptVersion
from promptyard.errors import Conflict, Unprocessable
from promptyard.plugins.base import generation_fields, validate_params
from promptyard.prompts.library import get_prompt, get_version, latest_version, require_active
from promptyard.prompts.templates import validate_template

MAX_ATTEMPTS = 30


def check_params(params: Any) -> dict[str, Any]:
    """Default generation parameters: a JSON object; the generation params in it are checked as a run would.

    A version may keep other settings beside them (a default model, say), which are left as they are.
    """
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise Unprocessable("'params' must be an object of parameter: value.", code="invalid_params")
    try:
        json.dumps(params)
    except (TypeError, ValueError):
        raise Unprocessable("'params' must hold JSON values only.", code="invalid_params") from None
    validate_params(generation_fields(params))
    return params


def content_hash(template: str, variables: list[dict], params: dict) -> str:
    """A hash of what makes two versions the same: template, declared variables and params."""
    blob = json.dumps({"template": template, "variables": variables, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def build_version(
    number: int,
    template: str,
    variables: list[dict] | None,
    params: dict | None,
    message: str = "",
    author: str | None = None,
    created_at=None,
) -> PromptVersion:
    """A validated, unsaved version row."""
    declared = validate_template(template, variables)
    params = check_params(params)
    return PromptVersion(
        number=number,
        template=template,
        variables=declared,
        params=params,
        message=message or "",
        author=author,
        content_hash=content_hash(template, declared, params),
        created_at=created_at or utcnow(),
    )


def _is_retryable(exc: Exception) -> bool:
    # A lost race for the next number (unique constraint) or SQLite's single writer being busy.
    return isinstance(exc, IntegrityError) or "locked" in str(exc).lower() or "busy" in str(exc).lower()


def add_version(
    name: str,
    template: str,
    *,
    variables: list[dict] | None = None,
    params: dict | None = None,
    message: str = "",
    author: str | None = None,
) -> tuple[PromptVersion, bool]:
    """Add the next version; identical content to the latest returns that one with created=False."""
    prompt = get_prompt(name)
    require_active(prompt)
    candidate = build_version(0, template, variables, params, message, author)
    for attempt in range(MAX_ATTEMPTS):
        latest = latest_version(prompt)
        if latest is not None and latest.content_hash == candidate.content_hash:
            return latest, False
        highest = select(func.max(PromptVersion.number)).where(PromptVersion.prompt_id == prompt.id)
        number = (db.session.scalar(highest) or 0) + 1
        row = build_version(number, template, variables, params, message, author)
        row.prompt_id = prompt.id
        db.session.add(row)
        prompt.updated_at = utcnow()
        try:
            db.session.commit()
            return row, True
        except (IntegrityError, OperationalError) as exc:
            db.session.rollback()
            if not _is_retryable(exc):
                raise
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise Conflict(
        f"Could not save a new version of '{name}': too many concurrent writers; try again.",
        code="version_conflict",
    )


def list_versions(name: str, *, limit: int = 50, offset: int = 0) -> tuple[list[PromptVersion], int]:
    """Versions newest first, with the total."""
    prompt = get_prompt(name)
    base = select(PromptVersion).where(PromptVersion.prompt_id == prompt.id)
    total = db.session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.session.scalars(base.order_by(PromptVersion.number.desc()).limit(limit).offset(offset))
    return list(rows), total


def _lines(value: Any) -> list[str]:
    return [line + "\n" for line in json.dumps(value, indent=2, sort_keys=True).splitlines()]


def _template_lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def diff_versions(name: str, from_number: int | None = None, to_number: int | None = None) -> dict[str, Any]:
    """A unified diff of template, variables and params between two versions (default: latest and the one before)."""
    prompt = get_prompt(name)
    if to_number is None:
        latest = latest_version(prompt)
        to_number = latest.number if latest else 1
    if from_number is None:
        from_number = max(1, to_number - 1)
    old, new = get_version(prompt, from_number), get_version(prompt, to_number)
    parts = []
    for part, before, after in (
        ("template", _template_lines(old.template), _template_lines(new.template)),
        ("variables", _lines(old.variables or []), _lines(new.variables or [])),
        ("params", _lines(old.params or {}), _lines(new.params or {})),
    ):
        parts.extend(
            difflib.unified_diff(before, after, f"{name}@v{old.number}/{part}", f"{name}@v{new.number}/{part}")
        )
    return {"diff": "".join(parts), "from": old.number, "to": new.number}
