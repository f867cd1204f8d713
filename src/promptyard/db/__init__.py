"""Database: Flask-SQLAlchemy on SQLAlchemy 2 typed models; SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    # WAL lets readers run beside a writer; foreign keys are off in SQLite unless asked for. synchronous=NORMAL
    # is SQLite's recommended pairing with WAL: no corruption risk, one fsync per checkpoint instead of per commit
    # (a power cut may lose the last few commits), which takes most of the time of a cached request.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def init_app(app: Flask) -> None:
    from promptyard.db import eval_models, lease_models, models, training_models  # noqa: F401  (registers the tables)

    db.init_app(app)
    from promptyard.db import checkpoints

    with app.app_context():
        for engine in db.engines.values():
            checkpoints.watch(engine)
