"""Export the whole library and import it back, all or nothing.

Importing into a library that already holds some of the prompts: versions are matched by
number; a version whose content is identical is skipped, one that differs is a conflict (409,
nothing imported); versions past the library's latest are appended with their numbers. An
existing prompt keeps its description and tags; labels are moved to the file's targets.
Label move history is not exported: labels come back pointing at their current target.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from promptyard.errors import BadRequest, Conflict, PromptyardError, Unprocessable
from promptyard.prompts.library import check_name, check_tags, label_targets, version_to_dict
from promptyard.prompts.versions import build_version

FORMAT = "promptyard-library"
FORMAT_VERSION = 1


class VersionDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    template: str
    variables: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    message: str = ""
    author: str | None = None
    created_at: datetime | None = None


class PromptDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    task_type: str | None = None
    archived: bool = False
    versions: list[VersionDoc] = Field(min_length=1)
    labels: dict[str, int] = Field(default_factory=dict)


def export_library() -> dict[str, Any]:
    """Every prompt (archived ones too) with all its versions and current label targets."""
    prompts = db.session.scalars(select(Prompt).order_by(Prompt.name))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "prompts": [
            {
                "name": p.name,
                "description": p.description or "",
                "tags": p.tags or [],
                "task_type": p.task_type,
                "archived": bool(p.archived),
                "versions": [version_to_dict(v) for v in p.versions],
                "labels": label_targets(p),
            }
            for p in prompts
        ],
    }


def dump(document: dict[str, Any], fmt: str) -> str:
    """The export as YAML or JSON text."""
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)
    return json.dumps(document, indent=2, ensure_ascii=False)


def _parse_prompts(document: Any) -> list[PromptDoc]:
    if not isinstance(document, dict) or not isinstance(document.get("prompts"), list):
        raise Unprocessable(
            "An import must be an object with a 'prompts' list (as written by export).", code="invalid_import"
        )
    unknown = set(document) - {"format", "format_version", "prompts"}
    if unknown or document.get("format", FORMAT) != FORMAT:
        raise Unprocessable(
            "This is not a promptyard library export "
            f"(unexpected: {', '.join(sorted(unknown)) or document.get('format')}).",
            code="invalid_import",
        )
    docs, seen = [], set()
    for index, item in enumerate(document["prompts"]):
        label = item.get("name") if isinstance(item, dict) else None
        where = f"prompt {index + 1}" + (f" ('{label}')" if isinstance(label, str) else "")
        try:
            doc = PromptDoc.model_validate(item)
            check_name(doc.name)
            check_tags(doc.tags)
            for label_name in doc.labels:
                check_name(label_name, "label")
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in err["loc"]) or "(prompt)", "problem": err["msg"]}
                for err in exc.errors(include_url=False, include_input=False)
            ]
            sentence = "; ".join(f"'{p['field']}' {p['problem']}" for p in problems[:5])
            raise Unprocessable(
                f"Import refused, nothing was imported: {where} is invalid: {sentence}.",
                code="invalid_import",
                details={"index": index, "prompt": label, "errors": problems},
            ) from None
        except PromptyardError as exc:
            raise Unprocessable(
                f"Import refused, nothing was imported: {where}: {exc.message}",
                code="invalid_import",
                details={"index": index, "prompt": label, **exc.details},
            ) from None
        if doc.name in seen:
            raise Unprocessable(
                f"Import refused: prompt '{doc.name}' appears twice.",
                code="invalid_import",
                details={"prompt": doc.name},
            )
        seen.add(doc.name)
        numbers = [v.version for v in doc.versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise Unprocessable(
                f"Import refused, nothing was imported: prompt '{doc.name}' must list versions 1, 2, ... "
                "in order without gaps.",
                code="invalid_import",
                details={"index": index, "prompt": doc.name},
            )
        missing = {k: v for k, v in doc.labels.items() if v not in numbers}
        if missing:
            raise Unprocessable(
                f"Import refused, nothing was imported: prompt '{doc.name}' has labels pointing at "
                f"unknown versions: {missing}.",
                code="invalid_import",
                details={"index": index, "prompt": doc.name},
            )
        docs.append(doc)
    return docs


def _version_rows(doc: PromptDoc, index: int) -> list[PromptVersion]:
    rows = []
    for v in doc.versions:
        try:
            rows.append(build_version(v.version, v.template, v.variables, v.params, v.message, v.author, v.created_at))
        except PromptyardError as exc:
            raise Unprocessable(
                f"Import refused, nothing was imported: prompt '{doc.name}' version {v.version}: {exc.message}",
                code="invalid_import",
                details={"index": index, "prompt": doc.name, "version": v.version, **exc.details},
            ) from None
    return rows


def import_library(document: Any, *, actor: str | None = None) -> dict[str, int]:
    """Import an export document in one transaction; any bad prompt refuses the whole import."""
    docs = _parse_prompts(document)
    counts = {"prompts_created": 0, "versions_created": 0, "versions_skipped": 0, "labels_set": 0}
    try:
        for index, doc in enumerate(docs):
            rows = _version_rows(doc, index)
            prompt = db.session.scalar(select(Prompt).where(Prompt.name == doc.name))
            if prompt is None:
                prompt = Prompt(
                    name=doc.name,
                    description=doc.description,
                    tags=doc.tags,
                    task_type=doc.task_type,
                    archived=doc.archived,
                )
                db.session.add(prompt)
                counts["prompts_created"] += 1
            existing = {v.number: v for v in prompt.versions}
            for row in rows:
                have = existing.get(row.number)
                if have is None:
                    prompt.versions.append(row)
                    existing[row.number] = row
                    counts["versions_created"] += 1
                elif have.content_hash == row.content_hash:
                    counts["versions_skipped"] += 1
                else:
                    raise Conflict(
                        f"Import refused, nothing was imported: prompt '{doc.name}' version {row.number} differs "
                        "from the one already in the library.",
                        code="import_conflict",
                        details={"index": index, "prompt": doc.name, "version": row.number},
                    )
            db.session.flush()
            counts["labels_set"] += _apply_labels(prompt, doc.labels, existing, actor)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return counts


def _apply_labels(prompt: Prompt, labels: dict[str, int], versions: dict[int, PromptVersion], actor: str | None) -> int:
    moved = 0
    rows = db.session.scalars(select(PromptLabel).where(PromptLabel.prompt_id == prompt.id))
    current = {row.name: row for row in rows}
    for name, number in labels.items():
        target = versions[number]
        row = current.get(name)
        if row is not None and row.version_id == target.id:
            continue
        if row is None:
            row = PromptLabel(prompt_id=prompt.id, name=name, version_id=target.id)
            db.session.add(row)
            previous = None
        else:
            previous, row.version_id = row.version_id, target.id
        row.moves.append(PromptLabelMove(from_version_id=previous, to_version_id=target.id, action="set", actor=actor))
        moved += 1
    return moved


def load(text: str | bytes, fmt: str) -> Any:
    """Parse an export document written as YAML or JSON; malformed text is a 400."""
    try:
        if fmt == "yaml":
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise BadRequest(
            f"The import is not valid {fmt.upper()}: {first_line}",
            code="malformed_request",
        ) from None
