"""Loaded models: an LRU of plugin instances bounded by a memory budget; concurrent first requests load once."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional, Union

from promptyard.monitoring import metrics
from promptyard.plugins.base import LLMPlugin

log = logging.getLogger(__name__)

# Shares of the machine that loaded models may hold when no budget is configured: most of a GPU (what is left holds
# activations and the KV cache), half the RAM (the server, tokenizers and evaluation sandboxes need the rest).
GPU_SHARE = 0.85
RAM_SHARE = 0.5
# A container's memory limit (cgroup v2, then v1); an unlimited one reads "max" or a huge number.
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")

# Bytes; None for no bound; or a function that works the budget out when it is first needed.
Budget = Union[int, None, Callable[[], Optional[int]]]


def default_memory_budget() -> int | None:
    """GPU_SHARE of the first CUDA GPU's memory when there is one, else RAM_SHARE of the RAM (the container's limit
    when lower); None when neither can be read."""
    gpu = _cuda_memory_bytes()
    if gpu:
        return int(gpu * GPU_SHARE)
    ram = _ram_bytes()
    return int(ram * RAM_SHARE) if ram else None


def _cuda_memory_bytes() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def _ram_bytes() -> int | None:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    limits = [physical]
    for name in CGROUP_LIMIT_FILES:
        try:
            limits.append(int(Path(name).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            continue
    return min(limits)


class ModelManager:
    """Keeps loaded plugins by key (the registered model's name), evicting the least recently used.

    `memory_budget_bytes`: see `Budget`. The function form lets the machine's default (which may import torch to
    ask CUDA) be worked out on the first load of a model that takes memory, not when the app starts.
    """

    def __init__(self, memory_budget_bytes: Budget = None) -> None:
        self._budget = memory_budget_bytes
        self._loaded: OrderedDict[str, LLMPlugin] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        # Models that take memory here load one at a time: two loading at once would each make room for itself
        # alone, and together overshoot the budget. Models served elsewhere never wait for them.
        self._memory_load_lock = threading.Lock()

    @property
    def memory_budget_bytes(self) -> int | None:
        if callable(self._budget):
            self._budget = self._budget()
        return self._budget

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
            # Without a bound (None: given as such, or no default could be worked out) nothing is sized.
            incoming = plugin.estimated_memory_bytes() if self._budget is not None else 0
            with self._memory_load_lock if incoming > 0 else contextlib.nullcontext():
                self._make_room(key, incoming)
                started = time.perf_counter()
                try:
                    plugin.load()  # a failure propagates and leaves nothing behind; the next call tries again
                except BaseException:
                    metrics.observe_model_load(key, time.perf_counter() - started, None, ok=False)
                    raise
                metrics.observe_model_load(key, time.perf_counter() - started, plugin.memory_bytes(), ok=True)
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
        metrics.observe_model_unload(key)
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

    def _make_room(self, key: str, incoming: int) -> None:
        """Before loading: unload least recently used models until the new one's estimated size (`incoming` bytes)
        fits beside the rest, so that memory peaks at the budget rather than at the old models plus the new one."""
        if incoming <= 0 or self.memory_budget_bytes is None:
            return
        with self._lock:
            evicted = self._pop_over_budget(keep=key, incoming=incoming)
        if evicted:
            log.info("making room for model %s (about %d bytes)", key, incoming)
        self._unload_all(evicted)

    def _pop_over_budget(self, keep: str, incoming: int = 0) -> list[tuple[str, LLMPlugin]]:
        """Remove least recently used plugins until they and `incoming` bytes fit; `keep` always stays, even alone
        over the budget (a model bigger than the budget still loads, by itself). Plugins holding no memory here
        (served elsewhere) are never removed: that would free nothing."""
        evicted: list[tuple[str, LLMPlugin]] = []
        while self._over_budget(incoming):
            oldest = next((k for k, p in self._loaded.items() if k != keep and p.memory_bytes() > 0), None)
            if oldest is None:
                break
            evicted.append((oldest, self._loaded.pop(oldest)))
        return evicted

    def _over_budget(self, incoming: int) -> bool:
        needed = self._used_bytes() + incoming
        # Nothing to count asks for no budget: models served elsewhere never make the default be worked out.
        return needed > 0 and self.memory_budget_bytes is not None and needed > self.memory_budget_bytes

    def _used_bytes(self) -> int:
        return sum(plugin.memory_bytes() for plugin in self._loaded.values())

    @staticmethod
    def _unload_all(plugins: list[tuple[str, LLMPlugin]]) -> None:
        # Unloading can take a while (freeing GPU memory), so it happens outside the lock.
        for key, plugin in plugins:
            log.info("unloading model %s", key)
            plugin.unload()
            metrics.observe_model_unload(key)
