"""Loaded models: an LRU of plugin instances bounded by a memory budget; concurrent first requests load once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from promptyard.plugins.base import LLMPlugin


class ModelManager:
    """Keeps loaded plugins by key (the registered model's name), evicting the least recently used."""

    def __init__(self, memory_budget_bytes: int | None = None) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        self._loaded: OrderedDict[str, LLMPlugin] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str, factory: Callable[[], LLMPlugin]) -> LLMPlugin:
        """The loaded plugin for `key`, creating and loading it with `factory` once."""
        with self._lock:
            plugin = self._loaded.get(key)
            if plugin is not None:
                self._loaded.move_to_end(key)
                return plugin
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # only one thread loads a given model; the others wait and reuse it
            with self._lock:
                plugin = self._loaded.get(key)
                if plugin is not None:
                    return plugin
            plugin = factory()
            plugin.load()
            with self._lock:
                self._loaded[key] = plugin
                self._evict_over_budget(keep=key)
            return plugin

    def put(self, key: str, plugin: LLMPlugin) -> None:
        """Install an already-built plugin (e.g. a function-backed fake in tests)."""
        with self._lock:
            self._loaded[key] = plugin

    def unload(self, key: str) -> bool:
        with self._lock:
            plugin = self._loaded.pop(key, None)
        if plugin is None:
            return False
        plugin.unload()
        return True

    def is_loaded(self, key: str) -> bool:
        with self._lock:
            return key in self._loaded

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def _evict_over_budget(self, keep: str) -> None:
        if self.memory_budget_bytes is None:
            return
        while self._used_bytes() > self.memory_budget_bytes and len(self._loaded) > 1:
            oldest = next(k for k in self._loaded if k != keep)
            self._loaded.pop(oldest).unload()

    def _used_bytes(self) -> int:
        return sum(getattr(p, "memory_bytes", lambda: 0)() for p in self._loaded.values())
