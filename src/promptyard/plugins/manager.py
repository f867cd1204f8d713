"""Loaded models: an LRU of plugin instances bounded by a memory budget; concurrent first requests load once."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable

from promptyard.plugins.base import LLMPlugin

log = logging.getLogger(__name__)


class ModelManager:
    """Keeps loaded plugins by key (the registered model's name), evicting the least recently used."""

    def __init__(self, memory_budget_bytes: int | None = None) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        self._loaded: OrderedDict[str, LLMPlugin] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str, factory: Callable[[], LLMPlugin]) -> LLMPlugin:
        """The loaded plugin for `key`, creating and loading it with `factory` once."""
        plugin = self._touch(key)
        if plugin is not None:
            return plugin
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # only one thread loads a given model; the others wait and reuse it
            plugin = self._touch(key)
            if plugin is not None:
                return plugin
            plugin = factory()
            plugin.load()  # a failure propagates and leaves nothing behind; the next call tries again
            with self._lock:
                self._loaded[key] = plugin
                evicted = self._pop_over_budget(keep=key)
        self._unload_all(evicted)
        return plugin

    def put(self, key: str, plugin: LLMPlugin) -> None:
        """Install an already-built plugin (e.g. a function-backed fake in tests)."""
        with self._lock:
            previous = self._loaded.pop(key, None)
            self._loaded[key] = plugin
            evicted = self._pop_over_budget(keep=key)
        if previous is not None and previous is not plugin:
            evicted.append((key, previous))
        self._unload_all(evicted)

    def unload(self, key: str) -> bool:
        """Unload one model; False when it was not loaded."""
        with self._lock:
            plugin = self._loaded.pop(key, None)
        if plugin is None:
            return False
        plugin.unload()
        return True

    def unload_all(self) -> None:
        """Unload everything (shutdown)."""
        with self._lock:
            everything = list(self._loaded.items())
            self._loaded.clear()
        self._unload_all(everything)

    def is_loaded(self, key: str) -> bool:
        with self._lock:
            return key in self._loaded

    def loaded(self) -> list[str]:
        """Loaded keys, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def used_bytes(self) -> int:
        """Memory the loaded plugins report together."""
        with self._lock:
            return self._used_bytes()

    def _touch(self, key: str) -> LLMPlugin | None:
        with self._lock:
            plugin = self._loaded.get(key)
            if plugin is not None:
                self._loaded.move_to_end(key)
            return plugin

    def _pop_over_budget(self, keep: str) -> list[tuple[str, LLMPlugin]]:
        """Remove least recently used plugins until the rest fit; the one just loaded always stays."""
        evicted: list[tuple[str, LLMPlugin]] = []
        if self.memory_budget_bytes is None:
            return evicted
        while self._used_bytes() > self.memory_budget_bytes and len(self._loaded) > 1:
            oldest = next(k for k in self._loaded if k != keep)
            evicted.append((oldest, self._loaded.pop(oldest)))
        return evicted

    def _used_bytes(self) -> int:
        return sum(plugin.memory_bytes() for plugin in self._loaded.values())

    @staticmethod
    def _unload_all(plugins: list[tuple[str, LLMPlugin]]) -> None:
        # Unloading can take a while (freeing GPU memory), so it happens outside the lock.
        for key, plugin in plugins:
            log.info("unloading model %s", key)
            plugin.unload()
