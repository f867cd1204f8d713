"""The pipeline end to end with function-backed models: resolve, render, params, context, record, stream."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import NotFound, PromptyardError, Unavailable, Unprocessable
from promptyard.execution import pipeline
from promptyard.execution.pipeline import ExecutionRequest, execute, execute_stream, execution_to_dict
from promptyard.execution.records import start_record
from promptyard.models.service import install_plugin
from promptyard.plugins.base import GenerationParams
from promptyard.plugins.function import FunctionPlugin


def count_executions():
    return db.session.scalar(select(func.count()).select_from(Execution))


def test_raw_input_is_generated_and_recorded(install):
    plugin = install("echo")
    row = execute(ExecutionRequest(model="echo", input="hello world"))
    assert row.status == "succeeded"
    assert row.output == "echo: hello world"
    assert (row.tokens_in, row.tokens_out) == (2, 3)
    assert row.rendered_input == "hello world"
    assert row.cache_hit is False and row.finished_at is not None and row.latency_ms >= 0
    assert plugin.calls[0][0] == "hello world"


def test_the_record_of_a_prompt_run_or_a_stream_is_what_the_database_holds(install, make_prompt, make_experiment):
    """Finished records are built from the values written, not read back: they must equal a fresh read."""
    install("echo", pricing={"input_per_1k": 1.0, "output_per_1k": 2.0})
    prompt = make_prompt("greet", ["Hello {{ name }}", "Hi {{ name }}"])
    make_experiment("ab", prompt, {1: 1, 2: 1})
    for request in (ExecutionRequest(model="echo", prompt="greet", variables={"name": "Ada"}, subject="u1"),
                    ExecutionRequest(model="echo", experiment="ab", subject="u2", variables={"name": "Bo"})):
        handed_back = execution_to_dict(execute(request))
        db.session.expunge_all()
        assert handed_back == execution_to_dict(db.session.get(Execution, handed_back["id"]))
    assert handed_back["experiment"] == "ab"
    streamed = execute_stream(ExecutionRequest(model="echo", input="streamed"))
    last = list(streamed)[-1]["execution"]
    db.session.expunge_all()
    assert last == execution_to_dict(db.session.get(Execution, last["id"]))


def test_chat_input_reaches_the_plugin_as_messages(install):
    plugin = install("echo")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    row = execute(ExecutionRequest(model="echo", input=messages))
    assert plugin.calls[0][0] == messages
    assert row.output == "echo: system: be brief\nuser: hi"


def test_params_pass_through_unchanged_with_precedence(install, make_prompt):
    plugin = install("echo", params={"max_new_tokens": 10, "temperature": 0.5, "top_p": 0.9})
    make_prompt("greet", ["Hello {{ name }}"], params=[{"temperature": 0.7, "seed": 3, "model": "elsewhere"}])
    execute(ExecutionRequest(model="echo", prompt="greet", variables={"name": "Ada"},
                             params={"seed": 11, "stop": ["\n"]}))
    prompt, params = plugin.calls[0]
    assert prompt == "Hello Ada"
    assert params == GenerationParams(max_new_tokens=10, temperature=0.7, top_p=0.9, seed=11, stop=["\n"])


def test_stored_defaults_saved_before_strict_checks_still_run(install):
    """A model row written before params were checked strictly may hold "64": runs convert it; requests may not."""
    from sqlalchemy import update

    from promptyard.db.models import ModelConfig

    plugin = install("echo")
    db.session.execute(update(ModelConfig).where(ModelConfig.name == "echo")
                       .values(params={"max_new_tokens": "64", "do_sample": "false"}))
    db.session.commit()
    execute(ExecutionRequest(model="echo", input="hi"))
    assert plugin.calls[0][1] == GenerationParams(max_new_tokens=64, do_sample=False)
    with pytest.raises(Unprocessable) as caught:
        execute(ExecutionRequest(model="echo", input="hi", params={"max_new_tokens": "64"}))
    assert caught.value.details["param"] == "max_new_tokens"


def test_prompt_by_version_label_and_latest(install, make_prompt):
    install("echo")
    make_prompt("greet", ["v1 {{ name }}", "v2 {{ name }}", "v3 {{ name }}"], labels={"production": 2})
    latest = execute(ExecutionRequest(model="echo", prompt="greet", variables={"name": "x"}))
    assert (latest.output, latest.version_number, latest.prompt_name) == ("echo: v3 x", 3, "greet")
    pinned = execute(ExecutionRequest(model="echo", prompt="greet", version=1, variables={"name": "x"}))
    assert pinned.output == "echo: v1 x"
    labelled = execute(ExecutionRequest(model="echo", prompt="greet", label="production", variables={"name": "x"}))
    assert (labelled.output, labelled.label, labelled.version_number) == ("echo: v2 x", "production", 2)
    assert labelled.variables == {"name": "x"}


def test_experiment_arm_is_sticky_per_subject(install, make_prompt, make_experiment):
    install("echo")
    prompt = make_prompt("greet", ["A {{ name }}", "B {{ name }}"])
    experiment = make_experiment("ab", prompt, {1: 1.0, 2: 1.0})
    seen = {}
    for subject in [f"user-{i}" for i in range(30)]:
        first = execute(ExecutionRequest(model="echo", experiment="ab", subject=subject, variables={"name": "x"},
                                         cache=False))
        again = execute(ExecutionRequest(model="echo", prompt="greet", experiment="ab", subject=subject,
                                         variables={"name": "x"}, cache=False))
        assert first.version_number == again.version_number
        assert first.experiment_id == experiment.id and first.subject == subject
        seen[subject] = first.version_number
    assert set(seen.values()) == {1, 2}  # 30 subjects at 50/50 land in both arms


@pytest.mark.parametrize(
    "request_kwargs, error, code",
    [
        ({"model": "ghost", "input": "x"}, NotFound, "model_not_found"),
        ({"model": "echo", "prompt": "nope", "variables": {"name": "x"}}, NotFound, "prompt_not_found"),
        ({"model": "echo", "prompt": "greet", "version": 9, "variables": {"name": "x"}}, NotFound,
         "version_not_found"),
        ({"model": "echo", "prompt": "greet", "label": "nope", "variables": {"name": "x"}}, NotFound,
         "label_not_found"),
        ({"model": "echo", "experiment": "nope", "subject": "s"}, NotFound, "experiment_not_found"),
        ({"model": "echo", "experiment": "ab", "variables": {"name": "x"}}, Unprocessable, "subject_required"),
        ({"model": "echo", "prompt": "greet", "version": 1, "label": "production"}, Unprocessable,
         "version_and_label"),
        ({"model": "echo", "experiment": "ab", "subject": "s", "version": 1}, Unprocessable, "ambiguous_version"),
        ({"model": "echo", "prompt": "other", "experiment": "ab", "subject": "s"}, Unprocessable,
         "experiment_prompt_mismatch"),
        ({"model": "echo", "prompt": "greet"}, PromptyardError, None),
        ({"model": "echo"}, Unprocessable, "prompt_or_input"),
        ({"model": "echo", "input": "x", "prompt": "greet"}, Unprocessable, "prompt_or_input"),
        ({"model": "echo", "input": ""}, Unprocessable, "empty_input"),
        ({"model": "echo", "input": [{"role": "wizard", "content": "x"}]}, Unprocessable, "invalid_input"),
        ({"model": "echo", "input": "x", "cache": "sometimes"}, Unprocessable, "invalid_cache"),
        ({"model": "echo", "input": "x", "variables": ["x"]}, Unprocessable, "invalid_variables"),
    ],
)
def test_bad_requests_raise_typed_errors_and_record_nothing(install, make_prompt, make_experiment,
                                                            request_kwargs, error, code):
    plugin = install("echo")
    prompt = make_prompt("greet", ["Hello {{ name }}", "Hi {{ name }}"], labels={"production": 1})
    make_experiment("ab", prompt, {1: 1.0, 2: 1.0})
    with pytest.raises(error) as raised:
        execute(ExecutionRequest(**request_kwargs))
    assert raised.value.status in (404, 422)
    if code:
        assert raised.value.code == code
    assert count_executions() == 0
    assert plugin.calls == []


@pytest.mark.parametrize(
    "params, name",
    [
        ({"temperature": "warm"}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": "not a list"}, "stop"),
        ({"num_beams": 4}, "num_beams"),
    ],
)
def test_bad_params_are_422_naming_the_param(install, params, name):
    install("echo")
    with pytest.raises(Unprocessable) as raised:
        execute(ExecutionRequest(model="echo", input="x", params=params))
    assert raised.value.details["param"] == name
    assert f"'{name}'" in raised.value.message
    assert count_executions() == 0


def test_input_filling_the_context_is_422_and_a_shorter_one_gets_the_room_left(install):
    plugin = install("echo")
    plugin.context_length = lambda: 10
    plugin.count_tokens = lambda prompt: len(prompt.split())
    with pytest.raises(Unprocessable) as raised:
        execute(ExecutionRequest(model="echo", input="w " * 10, params={"max_new_tokens": 1}))
    assert raised.value.code == "context_length_exceeded"
    assert raised.value.details == {"tokens_in": 10, "context_length": 10}
    assert count_executions() == 0
    row = execute(ExecutionRequest(model="echo", input="one two three four", params={"max_new_tokens": 7}))
    assert row.params["max_new_tokens"] == 6
    assert plugin.calls[-1][1].max_new_tokens == 6
    untouched = execute(ExecutionRequest(model="echo", input="one two", params={"max_new_tokens": 7}))
    assert untouched.params["max_new_tokens"] == 7 and plugin.calls[-1][1].max_new_tokens == 7


def test_a_seq2seq_context_bounds_only_the_input(install):
    plugin = install("echo")
    plugin.context_length = lambda: 10
    plugin.count_tokens = lambda prompt: len(prompt.split())
    plugin.output_shares_context = lambda: False
    assert execute(ExecutionRequest(model="echo", input="w " * 10, params={"max_new_tokens": 50})) \
        .params["max_new_tokens"] == 50
    with pytest.raises(Unprocessable) as raised:
        execute(ExecutionRequest(model="echo", input="w " * 11, params={"max_new_tokens": 1}))
    assert raised.value.details == {"tokens_in": 11, "context_length": 10}


def test_a_backend_that_is_unavailable_leaves_a_failed_record(install):
    def down(prompt, params):
        raise Unavailable("backend at http://x is down", code="backend_unavailable")

    install("down", down)
    with pytest.raises(Unavailable) as raised:
        execute(ExecutionRequest(model="down", input="x"))
    assert "is down" in raised.value.message
    row = db.session.scalar(select(Execution))
    assert (row.status, row.finish_reason) == ("failed", "error")
    assert "is down" in row.error and row.finished_at is not None


def test_a_backend_crash_becomes_503_with_the_reason(install):
    install("crash", lambda prompt, params: 1 / 0)
    with pytest.raises(Unavailable) as raised:
        execute(ExecutionRequest(model="crash", input="x"))
    assert raised.value.code == "generation_failed" and "ZeroDivisionError" in raised.value.message
    assert db.session.scalar(select(Execution.status)) == "failed"


def test_garbage_from_a_backend_is_503(install):
    plugin = install("garbage")
    plugin.generate = lambda prompt, params: {"text": "not a Generation"}
    with pytest.raises(Unavailable) as raised:
        execute(ExecutionRequest(model="garbage", input="x"))
    assert raised.value.code == "backend_garbage"
    assert db.session.scalar(select(Execution.status)) == "failed"


def test_stream_yields_deltas_then_the_record(install):
    install("echo")
    events = list(execute_stream(ExecutionRequest(model="echo", input="a b c")))
    deltas = [e["delta"] for e in events[:-1]]
    assert len(deltas) > 1
    record = events[-1]["execution"]
    assert "".join(deltas) == record["output"] == "echo: a b c"
    assert record["status"] == "succeeded" and record["stream"] is True
    assert db.session.get(Execution, record["id"]).output == "echo: a b c"


def test_closing_a_stream_early_records_cancelled_with_partial_output(install):
    install("long", lambda prompt, params: "one two three four five six")
    stream = execute_stream(ExecutionRequest(model="long", input="x"))
    first = next(stream)
    second = next(stream)
    stream.close()
    row = db.session.get(Execution, stream.execution_id)
    db.session.refresh(row)
    assert row.status == "cancelled" and row.finish_reason == "cancelled"
    assert row.output == first["delta"] + second["delta"] == "one two "


def test_a_stream_closed_before_it_starts_is_cancelled_and_frees_its_slot(install, app):
    install("echo")
    app.extensions["promptyard.execution.queue"].size = 0
    stream = execute_stream(ExecutionRequest(model="echo", input="x"))
    stream.close()
    row = db.session.get(Execution, stream.execution_id)
    assert row.status == "cancelled" and row.output == ""
    # The slot came back: with no queue room, a second request only works if the first released it.
    assert execute(ExecutionRequest(model="echo", input="y")).status == "succeeded"


def test_a_stream_that_fails_midway_ends_with_an_error_event(install):
    def fail_late(prompt, params):
        raise Unavailable("lost the GPU")

    plugin = install("flaky", fail_late)
    events = list(execute_stream(ExecutionRequest(model="flaky", input="x")))
    assert events[-1]["error"]["code"] == "backend_unavailable"
    assert events[-1]["execution"]["status"] == "failed"
    assert "lost the GPU" in events[-1]["execution"]["error"]
    assert plugin.calls



def watch_sql():
    """(statement verbs, commits) seen on the engine until the returned stop() is called."""
    from sqlalchemy import event

    verbs, commits = [], []

    def on_statement(conn, cursor, statement, parameters, context, executemany):
        verbs.append(statement.split()[0].upper())

    def on_commit(conn):
        commits.append(1)

    event.listen(db.engine, "before_cursor_execute", on_statement)
    event.listen(db.engine, "commit", on_commit)

    def stop():
        event.remove(db.engine, "before_cursor_execute", on_statement)
        event.remove(db.engine, "commit", on_commit)

    return verbs, commits, stop


def cache_hits():
    from promptyard.db.models import CacheEntry

    db.session.expire_all()
    return db.session.scalar(select(CacheEntry.hits))


def hit_records():
    return db.session.scalar(select(func.count()).select_from(Execution).where(Execution.cache_hit.is_(True)))


def test_a_cache_hit_commits_its_counter_and_its_record_in_one_transaction(install):
    install("m")
    execute(ExecutionRequest(model="m", input="x"))
    verbs, commits, stop = watch_sql()
    try:
        hit = execute(ExecutionRequest(model="m", input="x"))
    finally:
        stop()
    assert hit.cache_hit
    assert len(commits) == 1
    # The model row read once; the cache entry found and its hit counted in one UPDATE; no reload of the record.
    assert (verbs.count("SELECT"), verbs.count("UPDATE"), verbs.count("INSERT")) == (1, 1, 1)
    assert (cache_hits(), hit_records()) == (1, 1)


def test_a_cache_hit_needs_neither_the_model_loaded_nor_its_tokenizer(install):
    from promptyard.models.service import get_manager

    plugin = install("m")
    counted = []
    plugin.context_length = lambda: 4096
    plugin.count_tokens = lambda prompt: counted.append(prompt) or 1
    execute(ExecutionRequest(model="m", input="x"))
    assert counted == ["x"]  # the miss checked its context
    get_manager().unload("m")
    hit = execute(ExecutionRequest(model="m", input="x"))
    assert hit.cache_hit and hit.output == "echo: x"
    assert not get_manager().is_loaded("m") and counted == ["x"]


def test_a_hit_whose_record_fails_does_not_count_the_hit(install):
    from sqlalchemy import event

    install("m")
    execute(ExecutionRequest(model="m", input="x"))

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EXECUTION_HISTORY"):
            raise RuntimeError("disk full")

    event.listen(db.engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(RuntimeError):
            execute(ExecutionRequest(model="m", input="x"))
    finally:
        event.remove(db.engine, "before_cursor_execute", refuse)
    db.session.rollback()
    assert (cache_hits(), hit_records()) == (0, 0)
    assert execute(ExecutionRequest(model="m", input="x")).cache_hit
    assert (cache_hits(), hit_records()) == (1, 1)


@pytest.mark.parametrize("cache", [True, False])
def test_the_returned_record_matches_the_stored_one(install, cache):
    install("m")
    execute(ExecutionRequest(model="m", input="x"))
    row = execute(ExecutionRequest(model="m", input="x", cache=cache))
    returned = execution_to_dict(row)
    db.session.expire_all()
    stored = execution_to_dict(db.session.get(Execution, row.id))
    assert returned == stored
    assert returned["cache_hit"] is cache and returned["status"] == "succeeded"


def test_an_uncached_run_writes_its_record_without_rereading_it(install):
    install("m")
    verbs, commits, stop = watch_sql()
    try:
        row = execute(ExecutionRequest(model="m", input="x", cache=False))
    finally:
        stop()
    assert row.status == "succeeded" and row.output == "echo: x"
    # The model row read once; `running` inserted and committed before generation; the outcome in one UPDATE.
    assert (verbs.count("SELECT"), verbs.count("INSERT"), verbs.count("UPDATE")) == (1, 1, 1)


class OwnThreadPlugin(FunctionPlugin):
    """A backend that generates on a thread of its own (as the transformers one does): start_generation returns at
    once, and the generation waits for `release`."""

    def __init__(self, fn, **kwargs):
        super().__init__(fn, **kwargs)
        self.thread = ThreadPoolExecutor(1)
        self.release = threading.Event()
        self.running = threading.Event()
        self.finished = threading.Event()

    def start_generation(self, prompt, params):
        def run():
            self.running.set()
            self.release.wait(10)
            try:
                return FunctionPlugin.generate(self, prompt, params)
            finally:
                self.finished.set()

        return self.thread.submit(run)


def test_the_running_record_is_written_while_a_backend_with_its_own_thread_generates(app, monkeypatch):
    plugin = OwnThreadPlugin(lambda prompt, params: "done", source="fake/own-thread")
    install_plugin("own-thread", plugin)
    seen = []

    def start_record_while_generating(**values):
        seen.append((plugin.running.wait(5), plugin.finished.is_set()))
        running = start_record(**values)
        plugin.release.set()
        return running

    monkeypatch.setattr(pipeline, "start_record", start_record_while_generating)
    row = execute(ExecutionRequest(model="own-thread", input="x"))
    assert seen == [(True, False)]  # the generation had started and not finished when the record was written
    assert (row.status, row.output) == ("succeeded", "done") and row.latency_ms > 0


def test_a_record_that_cannot_be_written_waits_for_the_generation_and_records_nothing(app, monkeypatch):
    plugin = OwnThreadPlugin(lambda prompt, params: "done", source="fake/own-thread")
    install_plugin("own-thread", plugin)

    def failing_start_record(**values):
        plugin.release.set()
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(pipeline, "start_record", failing_start_record)
    with pytest.raises(OperationalError):
        execute(ExecutionRequest(model="own-thread", input="x"))
    assert plugin.finished.is_set()  # the model was free again before the error came back (and the queue slot)
    db.session.rollback()
    assert count_executions() == 0


def test_a_backend_that_fails_to_start_is_a_503_with_nothing_recorded(app):
    class Broken(FunctionPlugin):
        def start_generation(self, prompt, params):
            raise OSError("weights unreadable")

    install_plugin("broken", Broken(lambda prompt, params: "x", source="fake/broken"))
    with pytest.raises(Unavailable) as caught:
        execute(ExecutionRequest(model="broken", input="x"))
    assert "weights unreadable" in caught.value.message
    assert count_executions() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # only SQLite locks the whole database
def test_a_cache_miss_does_not_lock_the_database_while_the_model_gets_ready(app, database_url):
    """The miss's UPDATE began a write transaction; it must end before the context check (or a model load)."""
    path = database_url.removeprefix("sqlite:///")
    writable = []

    def another_writer_can_write() -> bool:
        other = sqlite3.connect(path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
            other.rollback()
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            other.close()

    class Probing(FunctionPlugin):
        def context_length(self):
            return 1000

        def count_tokens(self, prompt):
            writable.append(another_writer_can_write())
            return 1

    install_plugin("probing", Probing(lambda prompt, params: "done", source="fake/probing"))
    row = execute(ExecutionRequest(model="probing", input="x"))  # greedy by default: looked up in the cache
    assert row.output == "done" and writable == [True]
