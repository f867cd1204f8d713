"""ModelManager: LRU by a memory budget, and concurrent first requests loading a model once."""

from __future__ import annotations

import threading
import time

import pytest

from promptyard.plugins.base import Generation, GenerationParams, LLMPlugin
from promptyard.plugins.manager import ModelManager
from promptyard.plugins.transformers_backend import TransformersPlugin


class SizedPlugin(LLMPlugin):
    """A plugin that reports a fixed memory size and counts loads and unloads."""

    name = "sized"
    description = "Test plugin with a memory size."

    def __init__(self, source: str, size: int = 0, load_seconds: float = 0.0, estimate: int = 0) -> None:
        super().__init__(source)
        self.size, self.load_seconds, self.estimate = size, load_seconds, estimate
        self.loads = self.unloads = 0
        self.loaded = False
        self.on_load = lambda: None

    def load(self) -> None:
        self.on_load()
        time.sleep(self.load_seconds)  # widens the window in which concurrent callers could double-load
        self.loads += 1
        self.loaded = True

    def estimated_memory_bytes(self) -> int:
        return self.estimate

    def unload(self) -> None:
        self.unloads += 1
        self.loaded = False

    def memory_bytes(self) -> int:
        return self.size if self.loaded else 0

    def generate(self, prompt, params):
        return Generation(text=self.source)

    def stream(self, prompt, params):
        yield self.source
        return Generation(text=self.source)


def test_concurrent_first_requests_load_once():
    manager = ModelManager()
    created = []
    lock = threading.Lock()

    def factory():
        with lock:
            created.append(SizedPlugin("m", load_seconds=0.2))
            return created[-1]

    barrier = threading.Barrier(8)
    results = []

    def request():
        barrier.wait()
        results.append(manager.get("m", factory))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 1
    assert created[0].loads == 1
    assert len(results) == 8 and all(plugin is created[0] for plugin in results)


def test_different_models_loading_at_once_stay_within_the_budget():
    """Each load alone would fit beside `old`; both at once would not. The second must see the first."""
    manager = ModelManager(memory_budget_bytes=100)
    old = manager.get("old", lambda: SizedPlugin("old", 40))
    peak, loading = [], []
    plugins = {name: SizedPlugin(name, 40, load_seconds=0.2, estimate=40) for name in ("a", "b")}

    def on_load(plugin):
        # What is resident while this one loads: the loaded models, this one and any other loading with it.
        loading.append(plugin)
        peak.append(manager.used_bytes() + sum(p.estimate for p in loading if not p.loaded))

    for plugin in plugins.values():
        plugin.on_load = lambda plugin=plugin: on_load(plugin)
    barrier = threading.Barrier(2)

    def request(name):
        barrier.wait()
        manager.get(name, lambda: plugins[name])

    threads = [threading.Thread(target=request, args=(name,)) for name in plugins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(peak) <= 100, peak
    assert old.unloads == 1 and sorted(manager.loaded()) == ["a", "b"]
    # Models served elsewhere never wait behind a load that takes memory.
    remote = SizedPlugin("remote", 0)
    assert manager.get("remote", lambda: remote) is remote


def test_least_recently_used_is_evicted_over_the_budget():
    manager = ModelManager(memory_budget_bytes=100)
    a = manager.get("a", lambda: SizedPlugin("a", 40))
    b = manager.get("b", lambda: SizedPlugin("b", 40))
    manager.get("a", lambda: pytest.fail("a is loaded already"))  # a is now the most recent
    c = manager.get("c", lambda: SizedPlugin("c", 40))
    assert manager.loaded() == ["a", "c"]
    assert (b.unloads, a.unloads, c.unloads) == (1, 0, 0)
    assert manager.used_bytes() == 80


def test_a_model_bigger_than_the_budget_still_loads_alone():
    manager = ModelManager(memory_budget_bytes=100)
    small = manager.get("small", lambda: SizedPlugin("small", 30))
    manager.get("huge", lambda: SizedPlugin("huge", 500))
    assert manager.loaded() == ["huge"]
    assert small.unloads == 1


def test_without_a_budget_nothing_is_evicted():
    manager = ModelManager()
    for name in "abcde":
        manager.get(name, lambda name=name: SizedPlugin(name, 10**12))
    assert manager.loaded() == list("abcde")


def test_a_failed_load_leaves_nothing_and_the_next_call_tries_again():
    manager = ModelManager()

    class Failing(SizedPlugin):
        def load(self):
            raise RuntimeError("weights are corrupt")

    with pytest.raises(RuntimeError):
        manager.get("m", lambda: Failing("m"))
    assert not manager.is_loaded("m")
    assert manager.get("m", lambda: SizedPlugin("m")).loads == 1


def test_put_replaces_and_unloads_the_previous_plugin():
    manager = ModelManager(memory_budget_bytes=50)
    first = SizedPlugin("first", 10)
    first.loaded = True
    manager.put("m", first)
    second = SizedPlugin("second", 10)
    manager.put("m", second)
    assert first.unloads == 1
    assert manager.get("m", lambda: pytest.fail("installed already")) is second


def test_unload_and_unload_all():
    manager = ModelManager()
    a = manager.get("a", lambda: SizedPlugin("a"))
    b = manager.get("b", lambda: SizedPlugin("b"))
    assert manager.unload("a") is True
    assert manager.unload("a") is False
    assert a.unloads == 1
    manager.unload_all()
    assert b.unloads == 1
    assert manager.loaded() == []


def test_models_are_evicted_before_loading_one_that_would_not_fit():
    manager = ModelManager(memory_budget_bytes=100)
    a = manager.get("a", lambda: SizedPlugin("a", 40, estimate=40))
    b = manager.get("b", lambda: SizedPlugin("b", 40, estimate=40))
    manager.get("a", lambda: pytest.fail("a is loaded already"))  # b is now the least recently used
    c = SizedPlugin("c", 40, estimate=40)
    seen_while_loading = []
    c.on_load = lambda: seen_while_loading.append((manager.loaded(), a.loaded, b.loaded))
    manager.get("c", lambda: c)
    # b was unloaded before c started loading: memory never held a, b and c at once.
    assert seen_while_loading == [(["a"], True, False)]
    assert manager.loaded() == ["a", "c"] and b.unloads == 1


def test_a_model_that_fits_beside_the_others_evicts_nothing():
    manager = ModelManager(memory_budget_bytes=100)
    a = manager.get("a", lambda: SizedPlugin("a", 40, estimate=40))
    manager.get("b", lambda: SizedPlugin("b", 60, estimate=60))
    assert manager.loaded() == ["a", "b"] and a.unloads == 0


def test_an_underestimated_model_still_evicts_once_loaded():
    manager = ModelManager(memory_budget_bytes=100)
    a = manager.get("a", lambda: SizedPlugin("a", 40, estimate=40))
    manager.get("b", lambda: SizedPlugin("b", 90, estimate=10))
    assert manager.loaded() == ["b"] and a.unloads == 1


def test_a_budget_function_is_worked_out_only_when_a_model_takes_memory():
    calls = []

    def budget():
        calls.append(1)
        return 100

    manager = ModelManager(memory_budget_bytes=budget)
    manager.get("served", lambda: SizedPlugin("served"))  # holds nothing here (an openai-compatible model)
    assert calls == []
    manager.get("a", lambda: SizedPlugin("a", 60, estimate=60))
    manager.get("b", lambda: SizedPlugin("b", 60, estimate=60))
    assert manager.memory_budget_bytes == 100 and calls == [1]
    assert manager.loaded() == ["served", "b"]


def test_the_default_budget_is_half_the_ram_on_a_machine_without_cuda(monkeypatch):
    import os

    from promptyard.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "_cuda_memory_bytes", lambda: None)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = manager_module.default_memory_budget()
    assert 0 < budget <= physical * manager_module.RAM_SHARE
    monkeypatch.setattr(manager_module, "CGROUP_LIMIT_FILES", ())
    assert manager_module.default_memory_budget() == int(physical * manager_module.RAM_SHARE)


def test_a_container_limit_below_the_ram_bounds_the_default(monkeypatch, tmp_path):
    from promptyard.plugins import manager as manager_module

    limit, unlimited = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    limit.write_text("1073741824\n")
    unlimited.write_text("max\n")
    monkeypatch.setattr(manager_module, "_cuda_memory_bytes", lambda: None)
    monkeypatch.setattr(manager_module, "CGROUP_LIMIT_FILES", (str(unlimited), str(limit)))
    assert manager_module.default_memory_budget() == int(2**30 * manager_module.RAM_SHARE)


def test_with_cuda_the_default_budget_is_a_share_of_the_gpu(monkeypatch):
    from promptyard.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "_cuda_memory_bytes", lambda: 80 * 2**30)
    assert manager_module.default_memory_budget() == int(80 * 2**30 * manager_module.GPU_SHARE)


class ObservedTransformersPlugin(TransformersPlugin):
    """The real transformers plugin, noting which other plugins still held a model when its load began."""

    def __init__(self, source, others):
        super().__init__(source)
        self.others = others
        self.others_loaded_at_load = None

    def load(self):
        self.others_loaded_at_load = [other.model is not None for other in self.others]
        super().load()


def test_tiny_models_make_room_for_each_other_within_a_small_budget(tiny_gpt2_dir, tiny_t5_dir):
    gpt2 = TransformersPlugin(str(tiny_gpt2_dir))
    t5 = ObservedTransformersPlugin(str(tiny_t5_dir), others=[gpt2])
    sizes = gpt2.estimated_memory_bytes(), t5.estimated_memory_bytes()
    manager = ModelManager(memory_budget_bytes=int(max(sizes) * 1.5))  # room for one of them, not both
    manager.get("gpt2", lambda: gpt2)
    assert gpt2.model is not None
    manager.get("t5", lambda: t5)
    assert t5.others_loaded_at_load == [False]
    assert manager.loaded() == ["t5"] and 0 < manager.used_bytes() <= manager.memory_budget_bytes
    assert t5.generate("def add", GenerationParams(max_new_tokens=3)).tokens_out > 0


def test_app_without_a_configured_budget_uses_the_default(tmp_path):
    from promptyard import create_app
    from promptyard.plugins.manager import default_memory_budget

    app = create_app({"TESTING": True, "PROMPTYARD_HOME": str(tmp_path / "home"),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})
    budget = app.extensions["promptyard.models"].memory_budget_bytes
    assert budget is not None and budget == default_memory_budget()
