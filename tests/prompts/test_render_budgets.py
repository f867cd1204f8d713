"""Template renders are bounded in time and in memory (intermediate values, not only the output).

The budgets are lowered here so that a runaway render is stopped quickly; what is asserted is the outcome (a 422
naming the budget, the worker process gone), never how long anything took.
"""

from __future__ import annotations

import os

import pytest

from promptyard.errors import PromptyardError
from promptyard.prompts import render_pool
from promptyard.prompts.templates import TemplateError, render, validate_template

RUNAWAY_MACRO = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
# The same macro, but how deep it goes is up to a variable: only a render can know.
RUNAWAY_BY_VARIABLE = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(depth) }}"
# Doubling a string through a namespace: the output is a short number, the intermediate value is not.
DOUBLING = ("{% set ns = namespace(s='a') %}{% for i in range(times) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s|length }}")
WIDTH_BY_VARIABLE = "{{ 'a'|center(width)|length }}"
INT = [{"name": "depth", "type": "integer", "required": False, "default": 1, "description": ""}]


@pytest.fixture(autouse=True)
def quick_budgets(monkeypatch):
    monkeypatch.setattr(render_pool, "RENDER_TIME_BUDGET_S", 1.0)


def _var(name: str, default: int = 1) -> list[dict]:
    return [{"name": name, "type": "integer", "required": False, "default": default, "description": ""}]


def test_a_runaway_macro_is_stopped_by_the_time_budget():
    with pytest.raises(TemplateError) as caught:
        render(RUNAWAY_BY_VARIABLE, INT, {"depth": 40})
    assert caught.value.code == "render_time_budget"
    assert caught.value.details["budget"] == "time"
    assert "time budget" in caught.value.message


def test_the_worker_of_a_stopped_render_is_killed_not_left_running(monkeypatch):
    started = []
    original = render_pool._Worker.__init__

    def record(self, memory_bytes):
        original(self, memory_bytes)
        started.append(self)

    monkeypatch.setattr(render_pool._Worker, "__init__", record)
    pool = render_pool.RenderPool(size=1)
    with pytest.raises(render_pool.RenderBudgetExceeded):
        pool.render(RUNAWAY_MACRO, {}, time_budget_s=0.3)
    assert len(started) == 1
    assert started[0].process.returncode is not None
    assert not os.path.exists(f"/proc/{started[0].process.pid}/status") or _is_zombie(started[0].process.pid)
    # The pool goes on with a fresh worker.
    assert pool.render("{{ 1 + 1 }}", {})["text"] == "2"
    pool.close()


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("State:") and "Z" in line for line in status)


@pytest.mark.parametrize("template, values", [
    (DOUBLING, {"times": 40}),
    (WIDTH_BY_VARIABLE, {"width": 400_000_000}),
    ("{{ ('a' * 900000)|replace('a', 'aaaaaaaaaaaaaaaaaaaa' * 100)|length }}", {}),
    ("{{ '%0500000000d'|format(1)|length }}", {}),
    ("{{ range(100000)|map('string')|join('x' * 5000)|length }}", {}),
])
def test_intermediate_values_are_bounded_by_the_memory_budget(template, values, monkeypatch):
    monkeypatch.setattr(render_pool, "RENDER_TIME_BUDGET_S", 120)  # memory, not time, must be what stops these
    declared = [{"name": n, "type": "integer", "required": True, "default": None, "description": ""} for n in values]
    with pytest.raises(TemplateError) as caught:
        render(template, declared, values)
    assert caught.value.code in ("render_memory_budget", "render_too_large", "template_unsafe"), caught.value.message
    if caught.value.code == "render_memory_budget":
        assert caught.value.details == {"budget": "memory", "limit_bytes": render_pool.RENDER_MEMORY_BUDGET_BYTES}


def test_the_memory_budget_is_on_intermediate_values_not_only_the_output(monkeypatch):
    monkeypatch.setattr(render_pool, "RENDER_TIME_BUDGET_S", 120)
    with pytest.raises(TemplateError) as caught:
        render(DOUBLING, _var("times"), {"times": 40})
    assert caught.value.code == "render_memory_budget"


def test_renders_within_the_budgets_still_work():
    assert render(DOUBLING, _var("times"), {"times": 10}) == "1024"
    assert render(RUNAWAY_BY_VARIABLE, INT, {"depth": 3}) == ""
    assert render(WIDTH_BY_VARIABLE, _var("width"), {"width": 1000}) == "1000"


@pytest.mark.parametrize("template", [
    RUNAWAY_MACRO,
    "{{ 'a'|center(400000000) }}",
    "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ 1 }}",
])
def test_a_template_over_budget_whatever_its_variables_is_refused_when_saved(template):
    with pytest.raises(TemplateError) as caught:
        validate_template(template, None)
    assert caught.value.code in ("render_time_budget", "render_memory_budget")


def test_a_template_whose_cost_depends_on_its_variables_is_saved():
    assert validate_template(RUNAWAY_BY_VARIABLE, INT)[0]["name"] == "depth"
    assert validate_template(DOUBLING, _var("times", default=3))


def test_a_template_failing_on_empty_values_is_still_saved():
    # Only budgets are judged at save time: a division by an empty variable may be fine with real values.
    assert validate_template("{{ 10 / n }}", _var("n", default=0))


def test_over_budget_over_http_is_422_at_save_and_at_render(client):
    response = client.post("/api/v1/prompts", json={"name": "boom", "template": RUNAWAY_MACRO})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "render_time_budget"
    assert client.get("/api/v1/prompts/boom").status_code == 404

    response = client.post("/api/v1/prompts", json={"name": "deep", "template": RUNAWAY_BY_VARIABLE,
                                                    "variables": INT})
    assert response.status_code == 201
    response = client.post("/api/v1/prompts/deep/render", json={"variables": {"depth": 40}})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "render_time_budget" and error["details"]["budget"] == "time"
    response = client.post("/api/v1/prompts/deep/render", json={"variables": {"depth": 2}})
    assert response.status_code == 200


def test_busy_renderers_answer_429_rather_than_queueing_without_bound():
    pool = render_pool.RenderPool(size=1)
    pool._busy = 1  # the one renderer is taken
    with pytest.raises(PromptyardError) as caught:
        pool._borrow(render_pool.RENDER_MEMORY_BUDGET_BYTES, wait_s=0.05)
    assert caught.value.status == 429 and caught.value.code == "renderers_busy"
