"""Configuration precedence: defaults < instance config.py < environment < create_app(config)."""

from __future__ import annotations

import pytest

from promptyard import create_app
from promptyard.config import Settings, defaults


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(Settings.__dataclass_fields__) + ["DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)


def write_instance_config(home, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.py").write_text(text)


def test_defaults_apply_when_nothing_is_set(tmp_path):
    app = create_app({"PROMPTYARD_HOME": str(tmp_path)})
    assert app.config["PROMPTYARD_RATE_LIMIT"] == defaults()["PROMPTYARD_RATE_LIMIT"]
    assert app.config["MAX_CONTENT_LENGTH"] == defaults()["PROMPTYARD_MAX_BODY_BYTES"]
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path.resolve() / 'promptyard.db'}"


def test_instance_config_overrides_defaults(tmp_path):
    write_instance_config(tmp_path, "PROMPTYARD_RATE_LIMIT = '7 per minute'\nPROMPTYARD_MAX_BODY_BYTES = 4096\n")
    app = create_app({"PROMPTYARD_HOME": str(tmp_path)})
    assert app.config["PROMPTYARD_RATE_LIMIT"] == "7 per minute"
    assert app.config["MAX_CONTENT_LENGTH"] == 4096


def test_environment_overrides_instance_config(tmp_path, monkeypatch):
    write_instance_config(tmp_path, "PROMPTYARD_RATE_LIMIT = '7 per minute'\nPROMPTYARD_MAX_BODY_BYTES = 4096\n")
    monkeypatch.setenv("PROMPTYARD_RATE_LIMIT", "8 per minute")
    monkeypatch.setenv("PROMPTYARD_MAX_BODY_BYTES", "5000")
    app = create_app({"PROMPTYARD_HOME": str(tmp_path)})
    assert app.config["PROMPTYARD_RATE_LIMIT"] == "8 per minute"
    assert app.config["MAX_CONTENT_LENGTH"] == 5000


def test_create_app_config_overrides_the_environment(tmp_path, monkeypatch):
    write_instance_config(tmp_path, "PROMPTYARD_RATE_LIMIT = '7 per minute'\n")
    monkeypatch.setenv("PROMPTYARD_RATE_LIMIT", "8 per minute")
    app = create_app({"PROMPTYARD_HOME": str(tmp_path), "PROMPTYARD_RATE_LIMIT": "9 per minute"})
    assert app.config["PROMPTYARD_RATE_LIMIT"] == "9 per minute"


def test_home_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTYARD_HOME", str(tmp_path / "from-env"))
    app = create_app()
    assert app.instance_path == str((tmp_path / "from-env").resolve())
    assert (tmp_path / "from-env").is_dir()


def test_database_url_is_respected(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    app = create_app({"PROMPTYARD_HOME": str(tmp_path / "home")})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url
    from promptyard.db import db

    with app.app_context():
        db.create_all()
        assert str(db.engine.url) == url
    assert (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / "home" / "promptyard.db").exists()


@pytest.mark.postgres
def test_database_url_for_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    app = create_app({"PROMPTYARD_HOME": str(tmp_path)})
    from promptyard.db import db

    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        db.engine.dispose()


def test_a_non_number_for_a_number_setting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTYARD_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValueError, match="PROMPTYARD_MAX_BODY_BYTES must be a whole number"):
        create_app({"PROMPTYARD_HOME": str(tmp_path)})
