"""ModelManager: LRU by a memory budget, and concurrent first requests loading a model once."""

from __future__ import annotations

import threading
import time

import pytest

from promptyard.plugins.base import Generation, LLMPlugin
from promptyard.plugins.manager import ModelManager


class SizedPlugin(LLMPlugin):
    """A plugin that reports a fixed memory size and counts loads and unloads."""

    name = "sized"
    description = "Test plugin with a memory size."

    def __init__(self, source: str, size: int = 0, load_seconds: float = 0.0) -> None:
        super().__init__(source)
        self.size, self.load_seconds = size, load_seconds
        self.loads = self.unloads = 0
        self.loaded = False

    def load(self) -> None:
        time.sleep(self.load_seconds)  # widens the window in which concurrent callers could double-load
        self.loads += 1
        self.loaded = True

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
