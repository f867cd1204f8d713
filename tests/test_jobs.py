"""Background jobs: the in-process pool runs `module:function` in an app context; Celery sends to the broker."""

from __future__ import annotations

import pytest
from flask import current_app

from promptyard import jobs


def where_am_i(tag: str) -> str:
    return f"{tag}:{current_app.name}"


def explode() -> None:
    raise RuntimeError("job failed on purpose")


def test_thread_jobs_run_in_an_app_context(app):
    job_id = jobs.submit("tests.test_jobs:where_am_i", "x")
    assert app.extensions[jobs.EXTENSION].wait(job_id, timeout=10) == f"x:{app.name}"


def test_thread_job_errors_surface_when_waited_for(app):
    job_id = jobs.submit("tests.test_jobs:explode")
    with pytest.raises(RuntimeError, match="on purpose"):
        app.extensions[jobs.EXTENSION].wait(job_id, timeout=10)


def test_bad_function_paths_fail_at_submit(app):
    for path in ("no_colon", "tests.test_jobs:missing", "no.such.module:fn"):
        with pytest.raises((ValueError, AttributeError, ImportError)):
            jobs.submit(path)


@pytest.mark.redis
def test_celery_jobs_send_to_the_broker(redis_url):
    import redis

    runner = jobs.CeleryJobs(redis_url)
    client = redis.Redis.from_url(redis_url)
    before = client.llen("celery")
    job_id = runner.submit("tests.test_jobs:where_am_i", "celery")
    assert job_id
    assert client.llen("celery") == before + 1
    client.delete("celery")
