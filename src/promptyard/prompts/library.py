"""Prompts in the library: create, find, search, update metadata, archive; lookups other services use."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, or_, select

from promptyard.db import db, utcnow
from promptyard.db.models import Prompt, PromptLabel, PromptVersion
from promptyard.errors import Conflict, NotFound, Unprocessable

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# Names that would collide with the fixed routes under /api/v1/prompts/.
RESERVED_NAMES = {"export", "import"}
MAX_TAGS = 20


def check_name(name: Any, what: str = "prompt") -> str:
    """A valid prompt or label name, or a 422 saying what the pattern is."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise Unprocessable(
            f"'{name}' is not a valid {what} name: use 1-100 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit.",
            code=f"invalid_{what}_name",
            details={"name": str(name)[:200], "pattern": NAME_PATTERN.pattern},
        )
    if what == "prompt" and name in RESERVED_NAMES:
        raise Unprocessable(f"'{name}' is reserved; choose another prompt name.", code="invalid_prompt_name")
    return name


def check_tags(tags: Any) -> list[str]:
    """Tags as a list of short, distinct strings."""
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in tags):
        raise Unprocessable("'tags' must be a list of strings of 1-50 characters.", code="invalid_tags")
    if len(tags) > MAX_TAGS:
        raise Unprocessable(f"A prompt may have at most {MAX_TAGS} tags.", code="invalid_tags")
    return list(dict.fromkeys(tags))


def get_prompt(name: str) -> Prompt:
    """The prompt called `name` (archived ones too), or NotFound."""
    row = db.session.scalar(select(Prompt).where(Prompt.name == name))
    if row is None:
        raise NotFound(f"No prompt named '{name}'.", code="prompt_not_found", details={"prompt": name})
    return row


def latest_version(prompt: Prompt) -> PromptVersion | None:
    return db.session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt.id).order_by(PromptVersion.number.desc()).limit(1)
    )


def get_version(prompt: Prompt, number: int) -> PromptVersion:
    row = db.session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt.id, PromptVersion.number == number)
    )
    if row is None:
        raise NotFound(
            f"Prompt '{prompt.name}' has no version {number}.",
            code="version_not_found",
            details={"prompt": prompt.name, "version": number},
        )
    return row


def get_label(prompt: Prompt, label: str) -> PromptLabel:
    row = db.session.scalar(select(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label))
    if row is None:
        raise NotFound(
            f"Prompt '{prompt.name}' has no label '{label}'.",
            code="label_not_found",
            details={"prompt": prompt.name, "label": label},
        )
    return row


def resolve_version(name: str, version: int | None = None, label: str | None = None) -> PromptVersion:
    """The version asked for: by number, by label, or the latest when neither is given."""
    prompt = get_prompt(name)
    if version is not None and label is not None:
        raise Unprocessable("Give either a version or a label, not both.", code="version_and_label")
    if version is not None:
        return get_version(prompt, version)
    if label is not None:
        return get_label(prompt, label).version
    row = latest_version(prompt)
    if row is None:  # only possible mid-import; every saved prompt has version 1
        raise NotFound(f"Prompt '{name}' has no versions.", code="version_not_found")
    return row


def require_active(prompt: Prompt) -> None:
    if prompt.archived:
        raise Conflict(
            f"Prompt '{prompt.name}' is archived; create it again to restore it before changing it.",
            code="prompt_archived",
            details={"prompt": prompt.name},
        )


def create_prompt(
    name: str,
    template: str,
    *,
    description: str = "",
    tags: list[str] | None = None,
    task_type: str | None = None,
    variables: list[dict] | None = None,
    params: dict | None = None,
    message: str = "",
    author: str | None = None,
) -> tuple[Prompt, bool]:
    """Create a prompt with version 1; returns (prompt, created).

    A name that belongs to an archived prompt restores it: history kept, the template added as
    its next version (or the identical latest reused), description and tags replaced when given.
    """
    from promptyard.prompts.templates import validate_template
    from promptyard.prompts.versions import add_version, build_version, check_params

    check_name(name)
    tags = check_tags(tags or [])
    existing = db.session.scalar(select(Prompt).where(Prompt.name == name))
    if existing is not None and not existing.archived:
        raise Conflict(f"A prompt named '{name}' already exists.", code="prompt_exists", details={"prompt": name})
    if existing is not None:
        validate_template(template, variables)
        check_params(params)
        existing.archived = False
        if description:
            existing.description = description
        if tags:
            existing.tags = tags
        if task_type:
            existing.task_type = task_type
        db.session.commit()
        add_version(name, template, variables=variables, params=params, message=message, author=author)
        return existing, True
    prompt = Prompt(name=name, description=description, tags=tags, task_type=task_type, archived=False)
    prompt.versions.append(build_version(1, template, variables, params, message, author))
    db.session.add(prompt)
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        if db.session.scalar(select(Prompt.id).where(Prompt.name == name)) is not None:
            raise Conflict(
                f"A prompt named '{name}' already exists.", code="prompt_exists", details={"prompt": name}
            ) from None
        raise
    return prompt, True


def list_prompts(
    q: str | None = None, tag: str | None = None, *, include_archived: bool = False, limit: int = 50, offset: int = 0
) -> tuple[list[Prompt], int]:
    """Prompts by name, matching `q` (name, description, latest template) and `tag`; with the total."""
    stmt = select(Prompt).order_by(Prompt.name)
    if not include_archived:
        stmt = stmt.where(Prompt.archived.is_(False))
    if q:
        needle = q.lower()
        latest = (
            select(PromptVersion.prompt_id, func.max(PromptVersion.number).label("number"))
            .group_by(PromptVersion.prompt_id)
            .subquery()
        )
        template_match = (
            select(PromptVersion.prompt_id)
            .join(latest, (latest.c.prompt_id == PromptVersion.prompt_id) & (latest.c.number == PromptVersion.number))
            .where(func.lower(PromptVersion.template).contains(needle, autoescape=True))
        )
        stmt = stmt.where(
            or_(
                func.lower(Prompt.name).contains(needle, autoescape=True),
                func.lower(Prompt.description).contains(needle, autoescape=True),
                Prompt.id.in_(template_match),
            )
        )
    rows = list(db.session.scalars(stmt))
    if tag:
        # Tags are a JSON list; filtering here keeps one query that works on SQLite and PostgreSQL.
        rows = [row for row in rows if tag in (row.tags or [])]
    return rows[offset : offset + limit], len(rows)


def update_prompt(
    name: str, *, description: str | None = None, tags: list[str] | None = None, task_type: str | None = None
) -> Prompt:
    """Change a prompt's metadata (its versions never change)."""
    prompt = get_prompt(name)
    require_active(prompt)
    if tags is not None:
        tags = check_tags(tags)
    if description is not None:
        prompt.description = description
    if tags is not None:
        prompt.tags = tags
    if task_type is not None:
        prompt.task_type = task_type
    prompt.updated_at = utcnow()
    db.session.commit()
    return prompt


def archive_prompt(name: str) -> Prompt:
    """Archive a prompt: hidden from lists, history and labels kept, still resolvable by name."""
    prompt = get_prompt(name)
    if not prompt.archived:
        prompt.archived = True
        prompt.updated_at = utcnow()
        db.session.commit()
    return prompt


def label_targets(prompt: Prompt) -> dict[str, int]:
    rows = db.session.execute(
        select(PromptLabel.name, PromptVersion.number)
        .join(PromptVersion, PromptVersion.id == PromptLabel.version_id)
        .where(PromptLabel.prompt_id == prompt.id)
        .order_by(PromptLabel.name)
    )
    return {name: number for name, number in rows}


def version_to_dict(row: PromptVersion) -> dict[str, Any]:
    return {
        "version": row.number,
        "template": row.template,
        "variables": row.variables or [],
        "params": row.params or {},
        "message": row.message or "",
        "author": row.author,
        "created_at": row.created_at.isoformat(),
    }


def prompt_to_dict(row: Prompt) -> dict[str, Any]:
    latest = latest_version(row)
    return {
        "name": row.name,
        "description": row.description or "",
        "tags": row.tags or [],
        "task_type": row.task_type,
        "archived": bool(row.archived),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "latest_version": version_to_dict(latest) if latest else None,
        "labels": label_targets(row),
    }
