"""Per-model queue: bounded concurrency, bounded waiting line, 429 with a Retry-After, queue wait measured."""

from __future__ import annotations

import threading

import pytest

from promptyard.errors import TooManyRequests
from promptyard.execution.pipeline import ExecutionRequest, execute
from promptyard.execution.queue import ExecutionQueue


def test_a_full_queue_refuses_with_retry_after():
    queue = ExecutionQueue(concurrency=1, size=0)
    held = queue.acquire("m")
    with pytest.raises(TooManyRequests) as raised:
        queue.acquire("m")
    assert raised.value.retry_after >= 1 and raised.value.code == "queue_full"
    other = queue.acquire("other")  # the bound is per model
    other.release()
    held.release()
    queue.acquire("m").release()


def test_waiters_are_admitted_in_turn_and_their_wait_is_measured():
    queue = ExecutionQueue(concurrency=1, size=1)
    held = queue.acquire("m")
    tickets = []
    waiter = threading.Thread(target=lambda: tickets.append(queue.acquire("m")))
    waiter.start()
    while queue.waiting("m") == 0:
        threading.Event().wait(0.001)
    with pytest.raises(TooManyRequests):  # one running, one waiting: the line is full
        queue.acquire("m")
    held.release()
    waiter.join()
    assert tickets[0].wait_ms > 0 and held.wait_ms < tickets[0].wait_ms
    tickets[0].release()
    tickets[0].release()  # releasing twice is harmless
    assert queue.acquire("m").wait_ms >= 0


def test_before_waiting_runs_only_for_a_request_that_must_wait():
    queue = ExecutionQueue(concurrency=1, size=1)
    calls = []
    held = queue.acquire("m", before_waiting=lambda: calls.append("first"))
    assert calls == []  # a free slot: nothing to prepare for
    tickets = []
    waiter = threading.Thread(target=lambda: tickets.append(queue.acquire("m", before_waiting=lambda: calls.append("second"))))
    waiter.start()
    while queue.waiting("m") == 0:
        threading.Event().wait(0.001)
    assert calls == ["second"]
    held.release()
    waiter.join()
    tickets[0].release()


def test_the_pipeline_refuses_when_the_model_is_busy_and_records_nothing(install, app):
    release = threading.Event()
    started = threading.Event()

    def slow(prompt, params):
        started.set()
        release.wait(10)
        return "done"

    install("slow", slow)
    app.extensions["promptyard.execution.queue"].size = 0
    results = []

    def run_in_thread():
        with app.app_context():
            results.append(execute(ExecutionRequest(model="slow", input="x", cache=False)).status)

    worker = threading.Thread(target=run_in_thread)
    worker.start()
    assert started.wait(10)
    with pytest.raises(TooManyRequests):
        execute(ExecutionRequest(model="slow", input="y", cache=False))
    release.set()
    worker.join()
    assert results == ["succeeded"]
    from promptyard.db import db
    from promptyard.db.models import Execution
    from sqlalchemy import select

    assert list(db.session.scalars(select(Execution.rendered_input))) == ["x"]


def test_a_request_that_waited_records_its_queue_wait(install, app):
    from promptyard.db import db
    from promptyard.db.models import Execution
    from sqlalchemy import select

    release, started = threading.Event(), threading.Event()

    def slow_first(prompt, params):
        if prompt == "first":
            started.set()
            release.wait(10)
        return "done"

    install("slow", slow_first)

    def run(text):
        with app.app_context():
            execute(ExecutionRequest(model="slow", input=text, cache=False))

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    queue = app.extensions["promptyard.execution.queue"]
    while queue.waiting("slow") == 0:
        threading.Event().wait(0.001)
    release.set()
    first.join()
    second.join()
    db.session.rollback()
    waits = dict(db.session.execute(select(Execution.rendered_input, Execution.queue_wait_ms)).all())
    assert waits["second"] > 0 and waits["second"] > waits["first"]
