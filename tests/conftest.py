"""Shared fixtures: an app on SQLite and on the real PostgreSQL, its client, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from promptyard import create_app
from promptyard.db import db

settings.register_profile(
    "promptyard", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("promptyard")

PG_ADMIN_URL = os.environ.get("PROMPTYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PROMPTYARD_TEST_REDIS", "redis://127.0.0.1:6379/15")


def service_missing(what: str) -> None:
    """Skip a test whose service is down, but fail it when CI says services are required."""
    if os.environ.get("PROMPTYARD_REQUIRE_SERVICES"):
        pytest.fail(f"{what} is required (PROMPTYARD_REQUIRE_SERVICES is set) but not reachable")
    pytest.skip(f"{what} is not reachable")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test run (one per xdist worker), dropped at the end."""
    name = f"promptyard_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A throwaway database need not wait for the WAL flush on every commit; behaviour is otherwise the same.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is not there
        admin.dispose()
        service_missing(f"PostgreSQL at {PG_ADMIN_URL} ({exc.__class__.__name__})")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def worker_redis_url(url: str) -> str:
    """One Redis database per xdist worker (15, 14, ... from the configured one down): each worker flushes its
    own at the start and end of its session, never one another worker's tests are using."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base, _, database = url.rpartition("/")
    if not database.isdigit():
        return url
    return f"{base}/{(int(database) - index) % 16}"


@pytest.fixture(scope="session")
def redis_url():
    import redis

    url = worker_redis_url(REDIS_URL)
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        service_missing(f"Redis at {url} ({exc.__class__.__name__})")
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A SQLite file with the schema, built once; each test gets a copy (much faster than create_all)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    app = make_app(f"sqlite:///{path}", path.parent / "home")
    with app.app_context():
        db.create_all()
        db.session.remove()
        db.engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_url")


def make_app(database_url: str, home, **config):
    return create_app(
        {
            "TESTING": True,
            "PROMPTYARD_HOME": str(home),
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PROMPTYARD_ADMIN_KEY": None,
            # Apps in one test run must not share rate-limit counters in Redis.
            "PROMPTYARD_RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex}",
            **config,
        }
    )


@pytest.fixture
def app_config():
    """Extra config for the `app` fixture; override in a test module to change it."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, app_config):
    """An app with a clean schema on each backend."""
    app = make_app(database_url, tmp_path / "home", **app_config)
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        if database_url.startswith("postgresql"):
            # Emptying the tables is much faster than dropping them between tests.
            names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli(app):
    """Invoke the real `promptyard` command group against the test app."""
    from flask.cli import ScriptInfo

    from promptyard.cli import main

    runner = app.test_cli_runner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), obj=ScriptInfo(create_app=lambda: app), input=input)

    return invoke


@pytest.fixture
def live_api(tmp_path):
    """The real API served by waitress on a free loopback port (fresh SQLite); yields (app, base_url)."""
    import threading

    import waitress

    app = make_app(f"sqlite:///{tmp_path / 'live.db'}", tmp_path / "live-home")
    with app.app_context():
        db.create_all()
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8, ident="promptyard-test")
    stopping = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except OSError:
            # Closing the sockets under the select() loop ends it with EBADF; anything else is real.
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.effective_port}"
    stopping.set()
    server.close()
    thread.join(timeout=5)
    with app.app_context():
        db.engine.dispose()


def single_torch_thread() -> None:
    """Tiny models gain nothing from intra-op threads; on 2 cores shared by xdist workers they only contend."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A tiny causal model (GPT-2, 2 layers) with a chat template, saved in a folder."""
    from tests.fixtures.tiny_models import build_tiny_gpt2

    single_torch_thread()
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory):
    """A tiny seq2seq model (T5, 2 layers) saved in a folder."""
    from tests.fixtures.tiny_models import build_tiny_t5

    single_torch_thread()
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    """A tiny Qwen2 GGUF file (random weights, BPE tokenizer and ChatML template in its metadata)."""
    from tests.fixtures.tiny_gguf import write_gguf

    single_torch_thread()
    return write_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny-qwen2.gguf")
