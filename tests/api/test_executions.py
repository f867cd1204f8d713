"""The executions API: run (JSON and server-sent events), history, export, analytics, feedback, cache."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import Unavailable
from promptyard.models.service import install_plugin
from promptyard.plugins.base import Generation
from promptyard.plugins.function import FunctionPlugin, prompt_text


@pytest.fixture
def echo(app):
    plugin = FunctionPlugin(lambda prompt, params: "echo: " + prompt_text(prompt), source="fake/echo")
    install_plugin("echo", plugin)
    return plugin


def run(client, **body):
    return client.post("/api/v1/executions", json=body)


def executions():
    return db.session.scalar(select(func.count()).select_from(Execution))


def sse_events(text):
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


def test_run_raw_input(client, echo):
    response = run(client, model="echo", input="hello")
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "succeeded" and body["output"] == "echo: hello"
    for field in ("id", "cache_hit", "latency_ms", "tokens_in", "tokens_out", "cost", "prompt", "version"):
        assert field in body
    assert client.get(f"/api/v1/executions/{body['id']}").get_json() == {**body, "feedback": []}


def test_run_chat_input(client, echo):
    response = run(client, model="echo", input=[{"role": "user", "content": "hi"}])
    assert response.status_code == 201
    assert response.get_json()["output"] == "echo: user: hi"


def test_second_identical_request_is_a_cache_hit(client, echo):
    first = run(client, model="echo", input="x").get_json()
    second = run(client, model="echo", input="x").get_json()
    assert (first["cache_hit"], second["cache_hit"], second["output"]) == (False, True, first["output"])
    assert client.get("/api/v1/cache/stats").get_json() == {"entries": 1, "hits": 1, "misses": 1, "hit_rate": 0.5}
    assert not run(client, model="echo", input="x", cache=False).get_json()["cache_hit"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"model": "ghost", "input": "x"}, 404, "model_not_found"),
        ({"model": "echo", "prompt": "ghost"}, 404, "prompt_not_found"),
        ({"model": "echo", "input": "x", "params": {"temperature": "hot"}}, 422, "invalid_params"),
        ({"model": "echo", "input": "x", "params": {"max_new_tokens": 100000}}, 422, "invalid_params"),
        ({"model": "echo", "input": "x", "params": {"beams": 2}}, 422, "invalid_params"),
        ({"model": "echo", "input": "x", "colour": "red"}, 422, "validation_error"),
        ({"model": "echo", "input": "x", "cache": "sometimes"}, 422, "validation_error"),
        ({"model": "echo", "input": 42}, 422, "validation_error"),
        ({"model": "echo", "input": [{"role": "wizard", "content": "x"}]}, 422, "validation_error"),
        ({"model": "echo"}, 422, "prompt_or_input"),
        ({"input": "x"}, 422, "validation_error"),
        ({"model": "echo", "input": "x", "stream": True, "params": {"top_p": 0}}, 422, "invalid_params"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_records_nothing(client, echo, body, status, code):
    response = run(client, **body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert executions() == 0


def test_bad_param_is_named(client, echo):
    error = run(client, model="echo", input="x", params={"temperature": "hot"}).get_json()["error"]
    assert error["details"]["param"] == "temperature" and "'temperature'" in error["message"]


# Each param with a value of every JSON type but its own: refused, never converted ("64" is not 64, true is not 1).
WRONG_TYPES = [
    ("max_new_tokens", ["64", True, 64.0, 64.5, None, [64], {"n": 64}]),
    ("temperature", ["0.5", True, None, [0.5], {"t": 0.5}]),
    ("top_p", ["0.9", False, None, [0.9]]),
    ("do_sample", ["yes", "true", 1, 0, 1.0, None, [True]]),
    ("seed", [True, "7", 7.0, 7.5, [7], {"s": 7}]),
    ("stop", ["\n", [1], [True], [None], {"a": "b"}, None]),
]


@pytest.mark.parametrize("param, value", [(param, value) for param, values in WRONG_TYPES for value in values])
def test_a_param_of_the_wrong_type_is_refused_not_converted(client, echo, param, value):
    for stream in (False, True):
        response = run(client, model="echo", input="x", params={param: value}, stream=stream)
        assert response.status_code == 422, (param, value, stream)
        error = response.get_json()["error"]
        named = error["details"]["param"]  # "stop.0" for the first stop sequence
        assert error["code"] == "invalid_params" and named.split(".")[0] == param
        assert f"'{named}'" in error["message"]
    assert executions() == 0
    assert client.get("/api/v1/cache/stats").get_json()["entries"] == 0


def test_whole_numbers_are_fine_for_float_params(client, echo):
    response = run(client, model="echo", input="x", params={"temperature": 0, "top_p": 1, "max_new_tokens": 3})
    assert response.status_code == 201
    assert response.get_json()["params"]["temperature"] == 0.0 and response.get_json()["params"]["top_p"] == 1.0


@pytest.mark.parametrize("body", [
    {"model": "echo", "input": "x", "stream": "yes"},
    {"model": "echo", "input": "x", "stream": 1},
    {"model": "echo", "input": "x", "cache": "true"},
    {"model": "echo", "input": "x", "cache": 0},
    {"model": "echo", "prompt": "greet", "version": "1"},
    {"model": "echo", "prompt": "greet", "version": True},
    {"model": "echo", "prompt": "greet", "version": 1.0},
])
def test_body_fields_of_the_wrong_type_are_refused(client, echo, body):
    response = run(client, **body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert executions() == 0


def test_garbage_bodies_are_400(client, echo):
    response = client.post("/api/v1/executions", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert client.post("/api/v1/executions", json=[1, 2]).status_code in (400, 422)
    assert executions() == 0


def test_input_longer_than_the_context_is_422(client, echo):
    echo.context_length = lambda: 8
    echo.count_tokens = lambda prompt: len(prompt_text(prompt).split())
    response = run(client, model="echo", input="a b c d e f g h", params={"max_new_tokens": 4})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "context_length_exceeded"
    assert executions() == 0


def test_unavailable_backend_is_503_with_a_failed_record(client, app):
    def down(prompt, params):
        raise Unavailable("connection refused by http://gpu:8000")

    install_plugin("down", FunctionPlugin(down, source="fake/down"))
    response = run(client, model="down", input="x")
    assert response.status_code == 503
    assert "connection refused" in response.get_json()["error"]["message"]
    [row] = client.get("/api/v1/executions").get_json()["items"]
    assert row["status"] == "failed" and "connection refused" in row["error"]


def test_queue_full_is_429_with_retry_after(client, app):
    gate, started = threading.Event(), threading.Event()

    def slow(prompt, params):
        started.set()
        gate.wait(10)
        return "done"

    install_plugin("slow", FunctionPlugin(slow, source="fake/slow"))
    app.extensions["promptyard.execution.queue"].size = 0
    worker = threading.Thread(target=lambda: app.test_client().post(
        "/api/v1/executions", json={"model": "slow", "input": "x", "cache": False}))
    worker.start()
    try:
        assert started.wait(10)
        response = run(client, model="slow", input="y", cache=False)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.get_json()["error"]["code"] == "queue_full"
    finally:
        gate.set()
        worker.join()


def test_stream_through_the_test_client(client, echo):
    response = run(client, model="echo", input="a b c", stream=True)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    record = events[-1]["execution"]
    assert "".join(e["delta"] for e in events[:-1]) == record["output"] == "echo: a b c"
    assert int(response.headers["X-Execution-Id"]) == record["id"]


def test_a_stream_dropped_before_its_first_read_is_cancelled_and_frees_its_slot(app, client, echo, monkeypatch):
    from werkzeug.test import EnvironBuilder

    from promptyard.api import executions as executions_api

    # Hold the execution stream, as anything keeping the dropped response alive would (a traceback, a reference
    # cycle): its cleanup must not wait for the garbage collector.
    kept = []
    monkeypatch.setattr(executions_api, "execute_stream",
                        lambda request, real=executions_api.execute_stream: kept.append(real(request)) or kept[-1])
    app.extensions["promptyard.execution.queue"].size = 0
    request = {"model": "echo", "input": "a b c", "stream": True, "cache": False}
    statuses = []
    # Straight through WSGI: the test client would read the first chunk, and this response is never read.
    body_iterator = app(EnvironBuilder(path="/api/v1/executions", method="POST", json=request).get_environ(),
                        lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"]
    body_iterator.close()
    row = db.session.scalar(select(Execution))
    assert row.status == "cancelled" and row.output == ""
    assert run(client, **{**request, "stream": False}).status_code == 201  # the only slot came back


def test_history_filters_and_paging(client, echo):
    install_plugin("other", FunctionPlugin(lambda p, q: "other", source="fake/other"))
    ids = [run(client, model=m, input=i).get_json()["id"] for m, i in [("echo", "a"), ("other", "b"), ("echo", "c")]]
    listing = client.get("/api/v1/executions").get_json()
    assert [item["id"] for item in listing["items"]] == ids[::-1] and listing["total"] == 3
    assert [i["id"] for i in client.get("/api/v1/executions?model=echo").get_json()["items"]] == [ids[2], ids[0]]
    page = client.get("/api/v1/executions?limit=1&offset=1").get_json()
    assert [i["id"] for i in page["items"]] == [ids[1]] and page["total"] == 3
    assert client.get("/api/v1/executions?status=succeeded&cache_hit=false").get_json()["total"] == 3
    assert client.get("/api/v1/executions?since=2999-01-01T00:00:00Z").get_json()["total"] == 0
    for bad in ("limit=0", "limit=501", "status=exploded", "since=yesterday", "offset=-1"):
        assert client.get(f"/api/v1/executions?{bad}").status_code == 422, bad


def test_get_missing_execution_is_404(client, app):
    response = client.get("/api/v1/executions/12345")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "execution_not_found"


def test_feedback(client, echo):
    execution_id = run(client, model="echo", input="x").get_json()["id"]
    response = client.post(f"/api/v1/executions/{execution_id}/feedback", json={"rating": 5, "comment": "great"})
    assert response.status_code == 201
    assert response.get_json()["rating"] == 5
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "five"}, {}, {"rating": 3, "extra": 1},
                {"rating": True}, {"rating": "3"}, {"rating": 3.0}, {"rating": 3.5}, {"rating": None},
                {"rating": [3]}, {"rating": {"value": 3}}, {"rating": 3, "comment": 5}):
        response = client.post(f"/api/v1/executions/{execution_id}/feedback", json=bad)
        assert response.status_code == 422, bad
        assert response.get_json()["error"]["details"]["errors"][0]["field"] in ("rating", "extra", "comment")
    assert client.post("/api/v1/executions/999/feedback", json={"rating": 3}).status_code == 404
    feedback = client.get(f"/api/v1/executions/{execution_id}").get_json()["feedback"]
    assert [(entry["rating"], entry["comment"]) for entry in feedback] == [(5, "great")]
    analytics = client.get("/api/v1/analytics?group_by=model").get_json()
    assert analytics["items"][0]["mean_rating"] == 5.0


def test_export_csv_and_jsonl(client, echo):
    run(client, model="echo", input="a")
    run(client, model="echo", input="b")
    jsonl = client.get("/api/v1/executions/export?format=jsonl")
    assert jsonl.status_code == 200 and jsonl.mimetype == "application/x-ndjson"
    assert [json.loads(line)["rendered_input"] for line in jsonl.get_data(as_text=True).splitlines()] == ["a", "b"]
    csv_response = client.get("/api/v1/executions/export?format=csv&model=echo")
    assert csv_response.mimetype == "text/csv"
    assert csv_response.get_data(as_text=True).count("\n") == 3
    assert client.get("/api/v1/executions/export?format=xml").status_code == 422


def test_analytics(client, echo):
    run(client, model="echo", input="a")
    run(client, model="echo", input="a")
    body = client.get("/api/v1/analytics?group_by=model").get_json()
    [item] = body["items"]
    assert (body["group_by"], item["model"], item["count"], item["cache_hit_rate"]) == ("model", "echo", 2, 0.5)
    assert client.get("/api/v1/analytics?group_by=colour").status_code == 422


def test_clearing_the_cache_needs_admin(client, echo):
    from promptyard.keys import create_key

    run(client, model="echo", input="a")
    _, editor = create_key("editor")
    _, admin = create_key("admin")
    forbidden = client.delete("/api/v1/cache", headers={"Authorization": f"Bearer {editor}"})
    assert forbidden.status_code == 403
    cleared = client.delete("/api/v1/cache", headers={"Authorization": f"Bearer {admin}"})
    assert cleared.status_code == 200 and cleared.get_json() == {"deleted": 1}
    stats = client.get("/api/v1/cache/stats", headers={"Authorization": f"Bearer {editor}"}).get_json()
    assert stats["entries"] == 0


# --- through the real WSGI server --------------------------------------------------------------------------


class GatedPlugin(FunctionPlugin):
    """Streams one word, then waits until the client says it has seen it, then finishes."""

    def __init__(self):
        super().__init__(lambda prompt, params: "first second third", source="fake/gated")
        self.client_saw_first = threading.Event()
        self.released_by_client = False

    def stream(self, prompt, params):
        yield "first "
        self.released_by_client = self.client_saw_first.wait(10)
        yield "second "
        yield "third"
        return Generation(text="first second third", tokens_in=1, tokens_out=3)


@pytest.fixture
def server(app):
    from waitress.server import create_server

    wsgi = create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()

    def serve():
        # waitress has no stop(); loop in short turns so the socket is closed only after the loop has ended.
        while not stop.is_set():
            wsgi.asyncore.loop(timeout=0.05, map=wsgi._map, count=1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{wsgi.effective_port}"
    stop.set()
    thread.join(5)
    wsgi.task_dispatcher.shutdown()
    wsgi.close()


def test_deltas_reach_the_client_while_generation_runs(server, app):
    plugin = GatedPlugin()
    install_plugin("gated", plugin)
    received = []
    with httpx.stream("POST", f"{server}/api/v1/executions", timeout=30,
                      json={"model": "gated", "input": "x", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            received.append(event)
            if event.get("delta") == "first ":
                plugin.client_saw_first.set()
    # The plugin was only let go by the client, so the first delta crossed the server before generation ended.
    assert plugin.released_by_client
    assert "".join(e["delta"] for e in received[:-1]) == received[-1]["execution"]["output"]
    assert received[-1]["execution"]["status"] == "succeeded"


def test_a_client_that_disconnects_mid_stream_leaves_a_cancelled_record(server, app):
    words = " ".join(f"w{i}" for i in range(400))
    install_plugin("long", FunctionPlugin(lambda prompt, params: words, delay=0.02, source="fake/long"))
    port = int(server.rsplit(":", 1)[1])
    body = json.dumps({"model": "long", "input": "x", "stream": True, "cache": False}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /api/v1/executions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b"data: {\"delta\"" not in seen:
        seen += sock.recv(4096)
    sock.close()
    row = wait_for_final_status()
    assert row.status == "cancelled"
    assert row.output and words.startswith(row.output) and len(row.output) < len(words)


def wait_for_final_status(timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        row = db.session.scalar(select(Execution))
        if row is not None and row.status != "running":
            return row
        time.sleep(0.05)
    raise AssertionError("the execution stayed running after the client disconnected")


def test_a_temperature_above_zero_samples_and_is_not_served_from_the_cache(client, app):
    """`temperature` alone decides sampling, as on /v1: 0.8 samples (a fresh generation each time), 0 is greedy."""
    seen = []

    def record(prompt, params):
        seen.append(params.do_sample)
        return f"sample {len(seen)}"

    install_plugin("sampler", FunctionPlugin(record, source="fake/sampler"))
    first = run(client, model="sampler", input="x", params={"temperature": 0.8}).get_json()
    second = run(client, model="sampler", input="x", params={"temperature": 0.8}).get_json()
    assert first["params"]["do_sample"] is True and seen == [True, True]
    assert not second["cache_hit"] and first["output"] != second["output"]
    greedy = [run(client, model="sampler", input="y", params={"temperature": 0}).get_json() for _ in range(2)]
    assert greedy[0]["params"]["do_sample"] is False and greedy[1]["cache_hit"] and seen[-1] is False
    explicit = run(client, model="sampler", input="z", params={"temperature": 0.8, "do_sample": False}).get_json()
    assert explicit["params"]["do_sample"] is False  # an explicit do_sample still wins
