"""Migrations: empty -> head -> base -> head on SQLite and PostgreSQL, and models and migrations agree."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from promptyard.db import db
from promptyard.migrations import downgrade, upgrade
from tests.conftest import PG_ADMIN_URL, make_app


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """A database with no tables at all (its own PostgreSQL database, not the shared test one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    request.getfixturevalue("postgres_url")  # fails or skips the test the documented way when PostgreSQL is down
    name = f"promptyard_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_app(empty_database_url, tmp_path):
    app = make_app(empty_database_url, tmp_path / "home")
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def model_tables() -> set[str]:
    return set(db.metadata.tables)


def database_tables() -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def schema_differences() -> list:
    """What autogenerate would put in a new revision: must be nothing."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def current_revision() -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_downgrade_upgrade(empty_app):
    assert database_tables() == set()
    upgrade()
    assert database_tables() == model_tables()
    assert current_revision() is not None
    assert schema_differences() == []

    downgrade("base")
    assert database_tables() == set()
    assert current_revision() is None

    upgrade()
    assert database_tables() == model_tables()
    assert schema_differences() == []


def test_autogenerate_sees_a_real_difference(empty_app):
    """The comparison is live: a table the migrations do not know about shows up."""
    upgrade()
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE feedback"))
    differences = schema_differences()
    assert any(diff[0] == "add_table" and diff[1].name == "feedback" for diff in differences)


def test_autogenerate_compares_column_types(empty_app):
    """Type comparison is on: a model whose column type differs from the database is reported."""
    from sqlalchemy import MetaData, String

    upgrade()
    changed = MetaData()
    for table in db.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["prompt_library"].c.name.type = String(300)
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, changed)
    flat = [diff for group in differences for diff in (group if isinstance(group, list) else [group])]
    assert any(diff[0] == "modify_type" and diff[3] == "name" for diff in flat)


def test_db_commands_through_the_cli(empty_app):
    from flask.cli import ScriptInfo

    from promptyard.cli import main

    runner = empty_app.test_cli_runner()

    def cli(*args):
        return runner.invoke(main, list(args), obj=ScriptInfo(create_app=lambda: empty_app))

    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert database_tables() == model_tables()
    result = cli("db", "downgrade", "base")
    assert result.exit_code == 0, result.output
    assert database_tables() == set()
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert current_revision() is not None
