"""One owner per job: a row in job_leases that its owner renews with heartbeats.

A second owner is refused while the lease is alive (its holder keeps renewing it); once the holder dies, the lease
lapses after its TTL and the next owner takes over. This is what stops a restarted `promptyard up` (or a
redelivered Celery task) from resuming an evaluation run that another process is still working on.

The owner's clock decides expiry: hosts sharing a database are assumed to keep roughly the same time (NTP).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from promptyard.db import utcnow
from promptyard.db.lease_models import JobLease

log = logging.getLogger(__name__)
DEFAULT_TTL_S = 30.0
_TABLE = JobLease.__table__


class LeaseHeld(Exception):
    """Another owner holds the lease and keeps it alive."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(f"{name} is held by {owner}")
        self.name, self.owner = name, owner


class LeaseLost(BaseException):
    """This owner's lease lapsed or was taken over: stop working at once (a BaseException, so that a job's
    `except Exception` does not record the run as failed: its new owner carries on)."""


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def try_acquire(engine: Engine, name: str, owner: str, ttl_s: float, now: datetime | None = None) -> str | None:
    """Take the lease if it is free, lapsed or already ours; None when taken, else the current holder."""
    now = now or utcnow()
    values = dict(owner=owner, acquired_at=now, heartbeat_at=now, expires_at=now + timedelta(seconds=ttl_s))
    with engine.begin() as conn:
        # Under concurrent takeovers PostgreSQL re-checks the WHERE after the first commit, so only one wins.
        taken = conn.execute(update(_TABLE).where(_TABLE.c.name == name, or_(
            _TABLE.c.expires_at <= now, _TABLE.c.owner == owner)).values(**values)).rowcount
    if taken:
        return None
    try:
        with engine.begin() as conn:
            conn.execute(insert(_TABLE).values(name=name, **values))
        return None
    except IntegrityError:
        with engine.connect() as conn:
            holder = conn.execute(select(_TABLE.c.owner).where(_TABLE.c.name == name)).scalar()
        return holder or "another owner"


class Lease:
    """A held lease; a daemon thread renews it every ttl/3 until release()."""

    def __init__(self, engine: Engine, name: str, owner: str, ttl_s: float) -> None:
        self.engine, self.name, self.owner, self.ttl_s = engine, name, owner, ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._expires = time.monotonic() + ttl_s
        self._thread = threading.Thread(target=self._beat, name=f"lease-{name}", daemon=True)
        self._thread.start()

    def renew(self) -> bool:
        """Push the expiry one TTL ahead; False when the lease is no longer ours."""
        now = utcnow()
        with self.engine.begin() as conn:
            renewed = conn.execute(update(_TABLE).where(_TABLE.c.name == self.name, _TABLE.c.owner == self.owner)
                                   .values(heartbeat_at=now, expires_at=now + timedelta(seconds=self.ttl_s))).rowcount
        if renewed:
            self._expires = time.monotonic() + self.ttl_s
        return bool(renewed)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    log.warning("lease %s was taken over: %s stops", self.name, self.owner)
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a database blip: try again, until the lease would have lapsed
                log.warning("could not renew lease %s", self.name, exc_info=True)
                if time.monotonic() >= self._expires:
                    self.lost.set()
                    return

    def check(self) -> None:
        """Raise LeaseLost when this owner must stop."""
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.name} lost by {self.owner}")

    def guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        """`callback` that first checks the lease (wraps a job's progress callback, called after each step)."""

        def guarded(*args, **kwargs) -> None:
            self.check()
            callback(*args, **kwargs)

        return guarded

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(_TABLE).where(_TABLE.c.name == self.name, _TABLE.c.owner == self.owner))
        except Exception:  # noqa: BLE001 - it lapses by itself after its TTL
            log.warning("could not release lease %s", self.name, exc_info=True)


def acquire(engine: Engine, name: str, *, ttl_s: float = DEFAULT_TTL_S, wait_s: float = 0.0,
            owner: str | None = None) -> Lease:
    """The lease on `name`, waiting up to wait_s for a lapsed holder's TTL to run out; LeaseHeld after that."""
    owner = owner or new_owner_id()
    deadline = time.monotonic() + wait_s
    while True:
        holder = try_acquire(engine, name, owner, ttl_s)
        if holder is None:
            return Lease(engine, name, owner, ttl_s)
        if time.monotonic() >= deadline:
            raise LeaseHeld(name, holder)
        time.sleep(min(max(ttl_s / 4, 0.05), max(0.0, deadline - time.monotonic())) or 0.05)
