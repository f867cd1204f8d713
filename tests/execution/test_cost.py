"""Cost per execution: token prices for API backends, GPU-hours for self-hosted ones."""

from __future__ import annotations

import pytest

from promptyard.execution.cost import execution_cost
from promptyard.execution.pipeline import ExecutionRequest, execute
from promptyard.plugins.base import Generation
from promptyard.plugins.function import FunctionPlugin


def test_token_pricing():
    assert execution_cost({"input_per_1k": 0.5, "output_per_1k": 1.5}, 2000, 400, 999.0) == pytest.approx(1.6)


def test_gpu_hour_pricing():
    assert execution_cost({"gpu_hour": 3.6}, 10, 10, 1000.0) == pytest.approx(0.001)


def test_no_pricing_costs_nothing():
    assert execution_cost({}, 1000, 1000, 1000.0) == 0.0
    assert execution_cost(None, 1000, 1000, 1000.0) == 0.0


def test_token_cost_is_recorded(install):
    install("api", lambda prompt, params: "one two three four", pricing={"input_per_1k": 2.0, "output_per_1k": 4.0})
    row = execute(ExecutionRequest(model="api", input="a b"))
    assert row.cost == pytest.approx(2 / 1000 * 2.0 + 4 / 1000 * 4.0)


class TimedPlugin(FunctionPlugin):
    """Reports a generation time of half an hour, as a self-hosted backend measures it."""

    def generate(self, prompt, params):
        return Generation(text="ok", tokens_in=1, tokens_out=1, timings={"generate": 1_800_000.0})


def test_gpu_cost_uses_the_measured_generation_time(app):
    from promptyard.models.service import install_plugin

    install_plugin("local", TimedPlugin(lambda p, q: "ok", source="local/weights"), pricing={"gpu_hour": 2.0})
    row = execute(ExecutionRequest(model="local", input="x"))
    assert row.cost == pytest.approx(1.0)
    assert execute(ExecutionRequest(model="local", input="x")).cost == 0.0  # a cache hit uses no GPU
