"""Alembic migrations run through Flask-Migrate; the revisions live in versions/."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_migrate import Migrate

MIGRATIONS_DIR = str(Path(__file__).parent)

migrate = Migrate(directory=MIGRATIONS_DIR, render_as_batch=True, compare_type=True)


def init_app(app: Flask) -> None:
    from promptyard.db import db

    migrate.init_app(app, db)


def upgrade(revision: str = "head") -> None:
    """Upgrade the current app's database (needs an app context)."""
    from flask_migrate import upgrade as _upgrade

    _upgrade(directory=MIGRATIONS_DIR, revision=revision)


def downgrade(revision: str = "base") -> None:
    from flask_migrate import downgrade as _downgrade

    _downgrade(directory=MIGRATIONS_DIR, revision=revision)
