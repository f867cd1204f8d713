"""Background jobs: `submit("module:function", *args)` on an in-process thread pool, or Celery with a broker."""

from __future__ import annotations

import importlib
import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from flask import Flask, current_app

log = logging.getLogger(__name__)
EXTENSION = "promptyard.jobs"


def resolve(fn_path: str):
    module_name, _, func_name = fn_path.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"job function must be 'module:function', got {fn_path!r}")
    return getattr(importlib.import_module(module_name), func_name)


class ThreadJobs:
    """The embedded default: a small thread pool in this process; each job runs inside an app context."""

    def __init__(self, app: Flask, workers: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promptyard-job")
        self.futures: dict[str, Future] = {}

    def submit(self, fn_path: str, *args) -> str:
        fn = resolve(fn_path)
        job_id = uuid.uuid4().hex
        self.futures[job_id] = self.pool.submit(self._run, fn_path, fn, args)
        return job_id

    def _run(self, fn_path: str, fn, args: tuple):
        with self.app.app_context():
            try:
                return fn(*args)
            except Exception:
                log.exception("job %s%r failed", fn_path, args)
                raise

    def wait(self, job_id: str, timeout: float | None = None):
        """Block until a job ends (tests and the CLI); re-raises its exception."""
        return self.futures[job_id].result(timeout)


class CeleryJobs:
    """Celery with the broker in PROMPTYARD_BROKER_URL; workers run `celery -A promptyard.jobs:celery_app worker`."""

    def __init__(self, broker_url: str) -> None:
        self.celery = make_celery(broker_url)

    def submit(self, fn_path: str, *args) -> str:
        resolve(fn_path)  # fail here, not on a worker, for a mistyped path
        return self.celery.send_task("promptyard.jobs.run", args=[fn_path, list(args)]).id


def make_celery(broker_url: str):
    from celery import Celery

    celery = Celery("promptyard", broker=broker_url)
    # One job at a time per worker slot: a long evaluation run must not hold others back in its prefetch.
    celery.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)

    @celery.task(name="promptyard.jobs.run")
    def run(fn_path: str, args: list):
        from promptyard import create_app

        with create_app().app_context():
            return resolve(fn_path)(*args)

    from celery.signals import worker_ready

    worker_ready.connect(_resume_on_worker_start, weak=False)
    return celery


def _resume_on_worker_start(**_: object) -> None:
    """A worker that starts (maybe replacing one that died mid-run) puts interrupted runs back on the queue; the
    runs' leases keep a run that another worker is still executing from being run twice."""
    from promptyard import create_app
    from promptyard.evals.runs import resume_interrupted_runs

    with create_app().app_context():
        log.info("worker ready: %s", resume_interrupted_runs())


def _celery_app():
    import os

    url = os.environ.get("PROMPTYARD_BROKER_URL")
    return make_celery(url) if url else None


def __getattr__(name: str):
    # `celery -A promptyard.jobs:celery_app worker` finds the app lazily, only where a broker is configured.
    if name == "celery_app":
        return _celery_app()
    raise AttributeError(name)


def init_app(app: Flask) -> None:
    broker = app.config.get("PROMPTYARD_BROKER_URL")
    if broker:
        app.extensions[EXTENSION] = CeleryJobs(broker)
    else:
        app.extensions[EXTENSION] = ThreadJobs(app, int(app.config.get("PROMPTYARD_JOB_WORKERS", 2)))


def runner():
    return current_app.extensions[EXTENSION]


def submit(fn_path: str, *args) -> str:
    """Run `module:function(*args)` in the background inside an app context; returns the job id."""
    return runner().submit(fn_path, *args)
