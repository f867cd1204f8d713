"""SQLite WAL checkpoints run on a background thread, not inside a request's commit."""

from __future__ import annotations

import sqlite3
import time

from sqlalchemy import create_engine, text

from promptyard.db import checkpoints, db


def wal_frames(path) -> tuple[int, int]:
    """(frames in the WAL, frames of them copied into the database) after a PASSIVE checkpoint of our own, which
    copies nothing when everything was copied already (retried while the background thread holds the lock)."""
    connection = sqlite3.connect(path)
    try:
        for _ in range(100):
            busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if not busy:
                return frames, copied
            time.sleep(0.01)
        raise AssertionError("the WAL stayed locked by another checkpoint")
    finally:
        connection.close()


def test_an_app_on_sqlite_is_watched_and_commits_no_longer_checkpoint_by_themselves(tmp_path):
    from tests.conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'app.db'}", tmp_path / "home")
    with app.app_context():
        assert db.engine in checkpoints._watched
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == checkpoints.SAFETY_NET_PAGES
        db.engine.dispose()


def test_a_pass_checkpoints_databases_with_new_commits(tmp_path):
    path = tmp_path / "w.db"
    engine = create_engine(f"sqlite:///{path}")
    assert checkpoints.watch(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x TEXT)"))
    # ~1200 WAL frames (3 a row): past SQLite's own threshold (1000), below the safety net.
    for index in range(400):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 4000 + str(index)})
    watched = checkpoints._watched[engine]
    assert watched.commits >= 401
    checkpoints.checkpoint_pending()  # or the background thread did it first: either way, nothing is left
    assert watched.checkpointed == watched.commits
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES ('y')"))
    # After a complete checkpoint the next write starts the WAL over: it holds that write's frames alone.
    frames, _ = wal_frames(path)
    assert frames < 10
    engine.dispose()


def test_only_sqlite_files_are_watched(tmp_path, postgres_url):
    assert not checkpoints.watch(create_engine("sqlite://"))
    assert not checkpoints.watch(create_engine("sqlite:///:memory:"))
    assert not checkpoints.watch(create_engine(postgres_url))


def test_a_deleted_database_is_not_recreated(tmp_path):
    path = tmp_path / "gone.db"
    engine = create_engine(f"sqlite:///{path}")
    checkpoints.watch(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    path.unlink()
    checkpoints._watched[engine].checkpointed = -1  # pending whatever the background thread did
    checkpoints.checkpoint_pending()  # (other tests' databases may be checkpointed in the same pass)
    assert not path.exists()
