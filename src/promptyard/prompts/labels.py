"""Labels: movable pointers to versions, with every move kept for rollback and audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from promptyard.db import db, utcnow
from promptyard.db.models import PromptLabel, PromptLabelMove
from promptyard.errors import Conflict
from promptyard.prompts.library import check_name, get_label, get_prompt, get_version, require_active


def target_stack(label: PromptLabel) -> list[int]:
    """The version ids the label has pointed to, replayed from its moves: a set pushes, a rollback pops."""
    stack: list[int] = []
    for move in label.moves:
        if move.action == "rollback" and stack:
            stack.pop()
        else:
            stack.append(move.to_version_id)
    return stack


def set_label(name: str, label: str, version: int, *, actor: str | None = None) -> PromptLabel:
    """Point `label` at `version`, creating the label if needed; a move to where it already is changes nothing."""
    prompt = get_prompt(name)
    require_active(prompt)
    check_name(label, "label")
    target = get_version(prompt, version)
    row = db.session.scalar(select(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label))
    if row is not None and row.version_id == target.id:
        return row
    if row is None:
        row = PromptLabel(prompt_id=prompt.id, name=label, version_id=target.id)
        db.session.add(row)
        previous = None
    else:
        previous = row.version_id
        row.version_id = target.id
        row.updated_at = utcnow()
    row.moves.append(PromptLabelMove(from_version_id=previous, to_version_id=target.id, action="set", actor=actor))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            f"Label '{label}' of '{name}' was changed by someone else at the same time; try again.",
            code="label_conflict",
        ) from None
    return row


def rollback_label(name: str, label: str, *, actor: str | None = None) -> PromptLabel:
    """Move `label` back to the version it pointed to before its last move."""
    prompt = get_prompt(name)
    require_active(prompt)
    row = get_label(prompt, label)
    stack = target_stack(row)
    if len(stack) < 2:
        raise Conflict(
            f"Label '{label}' of '{name}' has no previous version to roll back to.",
            code="no_previous_target",
            details={"prompt": name, "label": label},
        )
    previous = stack[-2]
    row.moves.append(
        PromptLabelMove(from_version_id=row.version_id, to_version_id=previous, action="rollback", actor=actor)
    )
    row.version_id = previous
    row.updated_at = utcnow()
    db.session.commit()
    return row


def label_to_dict(row: PromptLabel) -> dict[str, Any]:
    return {
        "label": row.name,
        "version": row.version.number,
        "history": [
            {
                "from": move.from_version.number if move.from_version else None,
                "to": move.to_version.number,
                "action": move.action,
                "actor": move.actor,
                "at": move.created_at.isoformat(),
            }
            for move in row.moves
        ],
    }


def get_label_dict(name: str, label: str) -> dict[str, Any]:
    return label_to_dict(get_label(get_prompt(name), label))
