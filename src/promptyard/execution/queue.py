"""Per-model admission: at most `concurrency` generations at once and `size` waiting; beyond that, 429."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from promptyard.errors import TooManyRequests
from promptyard.monitoring import metrics


@dataclass
class _ModelSlots:
    semaphore: threading.Semaphore
    waiting: int = 0
    # A moving average of how long one generation holds a slot, to suggest a Retry-After.
    mean_hold_s: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Ticket:
    """A held slot: release() it exactly once when the generation ends (finished, failed or cancelled)."""

    def __init__(self, queue: ExecutionQueue, model: str, wait_ms: float) -> None:
        self._queue = queue
        self.model = model
        self.wait_ms = wait_ms
        self._acquired_at = time.monotonic()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._release(self.model, time.monotonic() - self._acquired_at)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ExecutionQueue:
    """Bounded concurrency per model and a bounded wait line per model; queue wait is measured."""

    def __init__(self, concurrency: int = 1, size: int = 16) -> None:
        if concurrency < 1 or size < 0:
            raise ValueError("concurrency must be at least 1 and size at least 0")
        self.concurrency = concurrency
        self.size = size
        self._models: dict[str, _ModelSlots] = {}
        self._lock = threading.Lock()

    def acquire(self, model: str, *, before_waiting: Callable[[], object] | None = None) -> Ticket:
        """Wait for a slot for `model`; raises TooManyRequests when `size` requests are already waiting.

        `before_waiting` runs only when a slot is not free at once, right before waiting (the pipeline ends its
        database transaction there, rather than on every request)."""
        slots = self._slots(model)
        started = time.monotonic()
        if not slots.semaphore.acquire(blocking=False):
            if before_waiting is not None:
                before_waiting()
            with slots.lock:
                if slots.waiting >= self.size:
                    metrics.QUEUE_REJECTIONS.labels(model).inc()
                    retry_after = max(1.0, slots.mean_hold_s * (slots.waiting + 1) / self.concurrency)
                    raise TooManyRequests(
                        f"Model '{model}' is busy: {self.concurrency} running and {slots.waiting} waiting; "
                        "try again shortly.",
                        retry_after=retry_after,
                        code="queue_full",
                        details={"model": model, "running": self.concurrency, "waiting": slots.waiting},
                    )
                slots.waiting += 1
            metrics.QUEUE_WAITING.labels(model).inc()
            try:
                slots.semaphore.acquire()
            finally:
                metrics.QUEUE_WAITING.labels(model).dec()
                with slots.lock:
                    slots.waiting -= 1
        metrics.QUEUE_RUNNING.labels(model).inc()
        return Ticket(self, model, (time.monotonic() - started) * 1000)

    def waiting(self, model: str) -> int:
        return self._slots(model).waiting

    def _release(self, model: str, held_s: float) -> None:
        slots = self._slots(model)
        with slots.lock:
            slots.mean_hold_s = 0.8 * slots.mean_hold_s + 0.2 * held_s
        metrics.QUEUE_RUNNING.labels(model).dec()
        slots.semaphore.release()

    def _slots(self, model: str) -> _ModelSlots:
        with self._lock:
            slots = self._models.get(model)
            if slots is None:
                slots = self._models[model] = _ModelSlots(threading.Semaphore(self.concurrency))
            return slots
