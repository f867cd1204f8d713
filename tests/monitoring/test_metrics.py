"""/metrics: Prometheus text that prometheus_client parses, with counters that move by what was done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from promptyard import keys
from promptyard.db import db
from promptyard.db.eval_models import EvalRun
from promptyard.evals import runs
from promptyard.models import service
from promptyard.models.service import install_plugin
from promptyard.monitoring import events
from promptyard.plugins.function import FunctionPlugin, prompt_text
from tests.monitoring.promtext import samples, total, value


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


@pytest.fixture
def echo(app):
    # Reports token counts the way a real backend does, so the token counters have something to add up.
    plugin = FunctionPlugin(lambda prompt, params: "echo: " + prompt_text(prompt), source="fake/echo-metrics")
    install_plugin("echo-metrics", plugin)
    return plugin


def test_http_requests_are_counted_by_route_and_status(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/prompts/no-such-prompt").status_code == 404
    assert client.get("/no/such/endpoint").status_code == 404
    after = scrape(client)

    def moved(**labels):
        return value(after, "promptyard_http_requests_total", **labels) - \
            value(before, "promptyard_http_requests_total", **labels)

    assert moved(method="GET", route="/healthz", status="200") == 3
    # The rule, not the path: one series however many prompt names are asked for.
    assert moved(method="GET", route="/api/v1/prompts/<name>", status="404") == 1
    assert moved(method="GET", route="unmatched", status="404") == 1
    latency = "promptyard_http_request_duration_seconds_count"
    assert value(after, latency, method="GET", route="/healthz") - value(before, latency, method="GET",
                                                                          route="/healthz") == 3


def test_executions_tokens_cache_and_latency(client, echo):
    before = scrape(client)
    body = {"model": "echo-metrics", "input": "one two three"}
    first = client.post("/api/v1/executions", json=body).get_json()
    second = client.post("/api/v1/executions", json=body).get_json()
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    streamed = client.post("/api/v1/executions", json={**body, "input": "four five", "stream": True})
    assert streamed.status_code == 200 and streamed.get_data(as_text=True)
    after = scrape(client)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("promptyard_executions_total", model="echo-metrics", status="succeeded", cache_hit="false") == 2
    assert moved("promptyard_executions_total", model="echo-metrics", status="succeeded", cache_hit="true") == 1
    assert moved("promptyard_cache_lookups_total", result="hit") == 1
    assert moved("promptyard_cache_lookups_total", result="miss") == 2
    # Generation latency is observed for the two generations, not for the cache hit.
    assert moved("promptyard_generation_duration_seconds_count", model="echo-metrics") == 2
    assert moved("promptyard_time_to_first_token_seconds_count", model="echo-metrics") == 1
    history = client.get("/api/v1/executions?limit=10").get_json()["items"]
    assert moved("promptyard_tokens_total", model="echo-metrics", direction="out") == \
        sum(row["tokens_out"] for row in history)
    assert moved("promptyard_tokens_total", model="echo-metrics", direction="in") == \
        sum(row["tokens_in"] for row in history)
    # Read when scraped: the two distinct generations are cached.
    assert value(after, "promptyard_cache_entries") == 2


def test_queue_rejections_and_depth(client, app):
    gate, started = threading.Event(), threading.Event()

    def slow(prompt, params):
        started.set()
        gate.wait(10)
        return "done"

    install_plugin("slow-metrics", FunctionPlugin(slow, source="fake/slow-metrics"))
    app.extensions["promptyard.execution.queue"].size = 0
    before = scrape(client)
    worker = threading.Thread(target=lambda: app.test_client().post(
        "/api/v1/executions", json={"model": "slow-metrics", "input": "x", "cache": False}))
    worker.start()
    try:
        assert started.wait(10)
        during = scrape(client)
        assert value(during, "promptyard_queue_running", model="slow-metrics") == 1
        refused = client.post("/api/v1/executions", json={"model": "slow-metrics", "input": "y", "cache": False})
        assert refused.status_code == 429
    finally:
        gate.set()
        worker.join()
    after = scrape(client)
    assert value(after, "promptyard_queue_rejections_total", model="slow-metrics") - \
        value(before, "promptyard_queue_rejections_total", model="slow-metrics") == 1
    assert value(after, "promptyard_queue_running", model="slow-metrics") == 0
    assert value(after, "promptyard_queue_waiting", model="slow-metrics") == 0


def test_a_real_model_load_is_counted_with_its_duration_and_memory(client, app, tiny_gpt2_dir):
    before = scrape(client)
    service.register_model("tiny-metrics", "transformers", str(tiny_gpt2_dir))
    service.load_model("tiny-metrics")
    after = scrape(client)
    assert value(after, "promptyard_model_loads_total", model="tiny-metrics", outcome="loaded") - \
        value(before, "promptyard_model_loads_total", model="tiny-metrics", outcome="loaded") == 1
    assert value(after, "promptyard_model_load_duration_seconds_count", model="tiny-metrics") - \
        value(before, "promptyard_model_load_duration_seconds_count", model="tiny-metrics") == 1
    assert value(after, "promptyard_model_memory_bytes", model="tiny-metrics") > 0
    service.unload_model("tiny-metrics")
    assert value(scrape(client), "promptyard_model_memory_bytes", model="tiny-metrics") == 0


def solve_even(run, task, index):
    number = int(task.task_id.split("/")[1])
    return (task.canonical_solution if number % 2 == 0 else "    return None\n"), None


@pytest.mark.parametrize("app_config", [{"PROMPTYARD_EVAL_GENERATE": solve_even, "PROMPTYARD_EVAL_WORKERS": 2}])
def test_evaluation_samples_are_counted_by_verdict(client, app):
    before = scrape(client)
    run = runs.create_run("humaneval", "fake", n=1, limit=4)
    app.extensions["promptyard.jobs"].wait(run.job_id, timeout=120)
    db.session.expire_all()
    assert db.session.get(EvalRun, run.id).status == "succeeded"
    after = scrape(client)
    by_verdict = {verdict: total(after, "promptyard_eval_samples_total", verdict=verdict)
                  - total(before, "promptyard_eval_samples_total", verdict=verdict)
                  for verdict in ("passed", "failed")}
    assert by_verdict == {"passed": 2, "failed": 2}


def test_training_steps_counter_is_there_for_training_jobs(client):
    before = scrape(client)
    events.training_step("tiny-train", step=1, loss=2.5)
    events.training_step("tiny-train", step=3, steps=2)
    after = scrape(client)
    assert value(after, "promptyard_training_steps_total", model="tiny-train") - \
        value(before, "promptyard_training_steps_total", model="tiny-train") == 3


@pytest.mark.parametrize("app_config", [{"PROMPTYARD_BIND_HOST": "0.0.0.0"}])
def test_metrics_need_a_key_where_auth_is_on(client):
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "missing_api_key"
    _, secret = keys.create_key("viewer")
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert allowed.status_code == 200 and b"promptyard_http_requests_total" in allowed.data


WORKER_SCRIPT = """
import sys
from promptyard import create_app
from promptyard.db import db
app = create_app({"PROMPTYARD_HOME": sys.argv[1], "SQLALCHEMY_DATABASE_URI": sys.argv[2], "TESTING": True,
                  "PROMPTYARD_ADMIN_KEY": None})
with app.app_context():
    db.create_all()
    client = app.test_client()
    for _ in range(int(sys.argv[3])):
        assert client.get("/healthz").status_code == 200
    if len(sys.argv) > 4:
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """Like gunicorn workers: each process writes its own files in PROMETHEUS_MULTIPROC_DIR; a scrape sums them."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    database = f"sqlite:///{tmp_path / 'multi.db'}"
    for count in (2, 3):
        subprocess.run([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "home"), database, str(count)],
                       env=env, check=True, timeout=120)
    scraped = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "home"), database, "4", "scrape"],
                             env=env, check=True, timeout=120, capture_output=True, text=True).stdout
    found = samples(scraped)
    assert value(found, "promptyard_http_requests_total", method="GET", route="/healthz", status="200") == 2 + 3 + 4
    assert len(list(directory.glob("*.db"))) >= 3


def test_the_grafana_dashboard_queries_only_metrics_we_export(client, echo):
    """Every metric the dashboard in deploy/ plots is one /metrics exports (after some traffic)."""
    import re

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" /
                            "promptyard-dashboard.json").read_text())
    client.post("/api/v1/executions", json={"model": "echo-metrics", "input": "x"})
    response = client.get("/metrics")
    assert response.status_code == 200
    exported = response.get_data(as_text=True)
    families = set(re.findall(r"^# TYPE (\w+) ", exported, flags=re.M))
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(promptyard_\w+)", target["expr"])}
    assert queried, "the dashboard plots nothing"
    suffixes = ("_bucket", "_sum", "_count", "_total")
    for name in queried:
        base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
        assert name in families or base in families, f"{name} is plotted but not exported"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
