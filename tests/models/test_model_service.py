"""The models service core: register, list with status, load through the ModelManager, install_plugin."""

from __future__ import annotations

import pytest

from promptyard.errors import Conflict, NotFound, Unavailable, Unprocessable
from promptyard.models import service
from promptyard.plugins.base import LLMPlugin
from promptyard.plugins.function import FunctionPlugin


class CountingPlugin(FunctionPlugin):
    """A function plugin that counts load() calls and can report its own status."""

    loads = 0

    def __init__(self, source, *, revision=None, quantization=None, options=None):
        super().__init__(lambda prompt, params: "ok", source=source)
        self.options = dict(options or {})

    def load(self):
        type(self).loads += 1
        if self.options.get("slow_load"):
            import time

            time.sleep(0.2)  # keep the other first requests arriving while this load is in progress
        if self.options.get("fail_load"):
            raise RuntimeError("weights are corrupt")

    def status(self):
        return self.options.get("status", "available")


class BrokenPlugin(LLMPlugin):
    name = "broken"
    description = "Cannot even be built."

    def __init__(self, source, **kwargs):
        raise RuntimeError("missing dependency")

    def generate(self, prompt, params):  # pragma: no cover - never built
        raise NotImplementedError

    def stream(self, prompt, params):  # pragma: no cover - never built
        raise NotImplementedError


@pytest.fixture
def registry(app):
    from promptyard.plugins.registry import get_registry

    registry = get_registry()
    CountingPlugin.loads = 0
    registry.register("counting", CountingPlugin)
    registry.register("broken", BrokenPlugin)
    return registry


def test_register_and_get(registry):
    row = service.register_model("m1", "counting", "some/source", params={"max_new_tokens": 8},
                                 pricing={"gpu_hour": 2.0}, revision="abc", description="first")
    assert row.id is not None
    got = service.get_model("m1")
    assert (got.plugin, got.source, got.revision, got.params, got.pricing) == (
        "counting", "some/source", "abc", {"max_new_tokens": 8}, {"gpu_hour": 2.0})


def test_unknown_plugin_is_404(registry):
    with pytest.raises(NotFound) as err:
        service.register_model("m1", "nope", "x")
    assert err.value.code == "plugin_not_found"


def test_duplicate_name_is_409(registry):
    service.register_model("m1", "counting", "x")
    with pytest.raises(Conflict):
        service.register_model("m1", "counting", "y")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"params": {"temperature": "hot"}}, "temperature"),
        ({"params": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"params": {"beams": 3}}, "beams"),
        ({"pricing": {"per_token": 1}}, "pricing.per_token"),
        ({"pricing": {"gpu_hour": -1}}, "pricing.gpu_hour"),
        ({"quantization": "2bit"}, "quantization"),
    ],
)
def test_bad_values_are_422_and_change_nothing(registry, kwargs, field):
    with pytest.raises(Unprocessable) as err:
        service.register_model("m1", "counting", "x", **kwargs)
    assert field in err.value.message or err.value.details.get("field") == field
    assert service.list_models() == []


def test_bad_name_and_source_are_422(registry):
    with pytest.raises(Unprocessable):
        service.register_model("has space", "counting", "x")
    with pytest.raises(Unprocessable):
        service.register_model("m1", "counting", "  ")


def test_get_unknown_model_is_404(app):
    with pytest.raises(NotFound) as err:
        service.get_model("ghost")
    assert err.value.code == "model_not_found"


def test_list_models_reports_each_status(registry):
    service.register_model("plain", "counting", "x")
    service.register_model("absent", "counting", "x", options={"status": "not_downloaded"})
    service.register_model("bad", "broken", "x")
    service.register_model("hot", "counting", "x")
    service.load_model("hot")
    statuses = {m["name"]: (m["status"], m["error"]) for m in service.list_models()}
    assert statuses["plain"] == ("available", None)
    assert statuses["absent"] == ("not_downloaded", None)
    assert statuses["hot"] == ("loaded", None)
    assert statuses["bad"][0] == "error" and "missing dependency" in statuses["bad"][1]


def test_get_plugin_loads_once_and_unload(registry):
    service.register_model("m1", "counting", "x")
    first = service.get_plugin("m1")
    assert service.get_plugin("m1") is first
    assert CountingPlugin.loads == 1
    assert service.model_to_dict(service.unload_model("m1"))["status"] == "available"
    assert service.get_plugin("m1") is not first
    assert CountingPlugin.loads == 2


def test_a_load_failure_is_503_not_500(registry):
    service.register_model("m1", "counting", "x", options={"fail_load": True})
    with pytest.raises(Unavailable) as err:
        service.load_model("m1")
    assert "weights are corrupt" in err.value.message


def test_install_plugin_puts_the_instance_in_the_manager(app):
    fake = FunctionPlugin(lambda prompt, params: prompt.upper())
    row = service.install_plugin("fake", fake, pricing={"input_per_1k": 0.5}, params={"max_new_tokens": 4})
    assert row.plugin == "function"
    assert service.get_plugin("fake") is fake
    assert service.model_to_dict(row)["status"] == "loaded"
    again = service.install_plugin("fake", fake, pricing={"output_per_1k": 1.0})
    assert again.id == row.id and again.pricing == {"output_per_1k": 1.0}


def test_memory_budget_comes_from_config(tmp_path):
    from promptyard import create_app

    app = create_app({"TESTING": True, "PROMPTYARD_HOME": str(tmp_path / "home"),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "PROMPTYARD_MODEL_MEMORY_BYTES": "1024"})
    assert app.extensions["promptyard.models"].memory_budget_bytes == 1024


def test_concurrent_first_requests_load_the_model_once(registry, app):
    import threading

    service.register_model("m1", "counting", "x", options={"slow_load": True})
    gate = threading.Barrier(4)
    plugins = []

    def first_request():
        with app.app_context():
            gate.wait(10)
            plugins.append(service.get_plugin("m1"))

    threads = [threading.Thread(target=first_request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(plugins) == 4 and all(p is plugins[0] for p in plugins)
    assert CountingPlugin.loads == 1
