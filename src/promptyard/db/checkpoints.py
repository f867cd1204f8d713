"""SQLite WAL checkpoints on a background thread instead of inside a request's commit.

Left to itself, SQLite checkpoints when a commit pushes the WAL past 1000 pages: that commit copies the pages
into the database file and syncs both files, ~3 ms that land on one request every ~150 cached executions and
made up most of the cached p99 (bench/README.md). Here one daemon thread checkpoints every watched database that
had commits since its last pass (PASSIVE: it never waits for, nor blocks, readers and writers), and the per-commit
threshold is raised to a safety net that only matters if the thread cannot keep up (a long read pinning the WAL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
# ~40 MB of 4 KiB pages: only past this does a commit checkpoint by itself.
SAFETY_NET_PAGES = 10_000


@dataclass
class _Watched:
    path: str
    commits: int = 0
    checkpointed: int = 0


_watched: weakref.WeakKeyDictionary[Engine, _Watched] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(engine: Engine) -> bool:
    """Checkpoint `engine`'s database in the background from now on; False (nothing done) unless it is an SQLite
    database in a file. Call it before the engine's first connection, so every connection gets the pragma."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return False
    with _lock:
        if engine not in _watched:
            _watched[engine] = _Watched(str(Path(database).resolve()))
            event.listen(engine, "connect", _raise_autocheckpoint)
            event.listen(engine, "commit", _count_commit)
        _start_thread()
    return True


def checkpoint_pending() -> int:
    """One pass: checkpoint every watched database with commits since the last pass; how many were done."""
    with _lock:
        pending = [(watched, watched.commits) for watched in _watched.values()
                   if watched.commits != watched.checkpointed]
    done = 0
    for watched, commits in pending:
        watched.checkpointed = commits
        try:
            # A connection of its own, not one from the engine's pool: the engine may be disposed (a test's), and
            # mode=rw never creates a database file that was deleted meanwhile.
            connection = sqlite3.connect(f"file:{watched.path}?mode=rw", uri=True, check_same_thread=False)
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                connection.close()
            done += 1
        except sqlite3.Error:
            log.debug("WAL checkpoint of %s failed", watched.path, exc_info=True)
    return done


def _raise_autocheckpoint(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
    cursor.close()


def _count_commit(connection) -> None:
    watched = _watched.get(connection.engine)
    if watched is not None:
        # Unlocked: an increment lost between two threads' commits at worst holds a checkpoint until the next commit.
        watched.commits += 1


def _start_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_run, name="promptyard-wal-checkpoints", daemon=True)
        _thread.start()


def _run() -> None:
    while True:
        time.sleep(INTERVAL_S)
        checkpoint_pending()
