"""The starter library: code prompts a team would really use, seeded on the first start."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import Prompt
from promptyard.prompts.library import create_prompt
from promptyard.prompts.labels import set_label

AUTHOR = "starter"


def starter_prompts() -> list[dict[str, Any]]:
    """Every starter prompt definition, read from the package's starter/*.yaml files, by name."""
    folder = resources.files("promptyard.prompts") / "starter"
    files = [entry for entry in folder.iterdir() if entry.name.endswith(".yaml")]
    docs = [yaml.safe_load(entry.read_text(encoding="utf-8")) for entry in files]
    return sorted(docs, key=lambda doc: doc["name"])


def seed_starter_library() -> str:
    """Create the starter prompts whose names the library has never held; never touches existing or archived ones."""
    known = set(db.session.scalars(select(Prompt.name)))
    created = []
    for doc in starter_prompts():
        if doc["name"] in known:
            continue
        create_prompt(
            doc["name"],
            doc["template"],
            description=doc.get("description", ""),
            tags=doc.get("tags", []),
            task_type=doc.get("task_type"),
            variables=doc.get("variables"),
            params=doc.get("params", {}),
            message=doc.get("message", "Starter prompt"),
            author=AUTHOR,
        )
        set_label(doc["name"], "production", 1, actor=AUTHOR)
        created.append(doc["name"])
    if not created:
        return "starter library already present, nothing created"
    return f"seeded {len(created)} starter prompts"
