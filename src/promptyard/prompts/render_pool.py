"""Template renders in worker processes, each under a time and a memory budget.

A template is code an editor writes. In-process, a recursive macro could burn a request thread (and the
interpreter lock every other thread needs) for minutes, and a filter such as `center(200000000)` could grow the
server by hundreds of MB before any output check sees it. Here each render runs in a small worker process
(render_worker): the worker's address space is capped, and a render that has not answered within its time budget
is ended by killing the worker, whether or not the client is still there. Workers are reused between renders and
replaced after a kill; at most RENDER_WORKERS render at once, process-wide.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from promptyard.errors import TooManyRequests

# The budgets of one render (documented in the README's "Template budgets").
RENDER_TIME_BUDGET_S = 2.0
RENDER_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024
RENDER_WORKERS = 4
# How long a new worker may take to start (import jinja2, set its limit) on a loaded machine.
WORKER_START_TIMEOUT_S = 60.0


class RenderBudgetExceeded(Exception):
    """A render went over a budget: `budget` is "time" or "memory"."""

    def __init__(self, budget: str) -> None:
        super().__init__(budget)
        self.budget = budget


class _Worker:
    def __init__(self, memory_bytes: int) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "promptyard.prompts.render_worker", str(memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        self.memory_bytes = memory_bytes
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        try:
            ready = self.replies.poll(WORKER_START_TIMEOUT_S) and json.loads(self.replies.recv_bytes()).get("ready")
        except (EOFError, OSError, ValueError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError("a template render worker did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        for conn in (self.requests, self.replies):
            conn.close()


class RenderPool:
    """Up to `size` worker processes; render() borrows one, or waits for one as long as the time budget allows."""

    def __init__(self, size: int = RENDER_WORKERS) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._pid = os.getpid()

    def render(self, template: str, context: dict[str, Any], *, time_budget_s: float | None = None,
               memory_bytes: int | None = None) -> dict[str, Any]:
        """The worker's reply: {"text"} or {"error": {code, message, details}}; raises RenderBudgetExceeded."""
        budget = RENDER_TIME_BUDGET_S if time_budget_s is None else time_budget_s
        memory = RENDER_MEMORY_BUDGET_BYTES if memory_bytes is None else memory_bytes
        worker = self._borrow(memory, wait_s=budget)
        healthy = False
        try:
            worker.requests.send_bytes(json.dumps({"template": template, "context": context}).encode())
            if not worker.replies.poll(budget):
                raise RenderBudgetExceeded("time")
            try:
                reply = json.loads(worker.replies.recv_bytes())
            except (EOFError, OSError):  # the worker died: the memory limit ends a process that cannot raise
                raise RenderBudgetExceeded("memory") from None
            if reply.get("error", {}).get("code") == "render_memory_budget":
                raise RenderBudgetExceeded("memory")
            healthy = True
            return reply
        finally:
            self._give_back(worker, healthy)

    def _borrow(self, memory_bytes: int, wait_s: float) -> _Worker:
        deadline = time.monotonic() + wait_s
        with self._cond:
            if self._pid != os.getpid():
                # A forked child (a job worker): the parent's workers are the parent's; start afresh.
                self._pid, self._idle, self._busy = os.getpid(), [], 0
            while not self._idle and self._busy >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TooManyRequests(
                        f"All {self.size} template renderers are busy; try again shortly.",
                        retry_after=wait_s, code="renderers_busy",
                    )
                self._cond.wait(left)
            self._busy += 1
            while self._idle:
                worker = self._idle.pop()
                if worker.alive() and worker.memory_bytes == memory_bytes:
                    return worker
                worker.kill()
        try:
            return _Worker(memory_bytes)
        except BaseException:
            with self._cond:
                self._busy -= 1
                self._cond.notify()
            raise

    def _give_back(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()  # over budget, dead or out of step with its replies: never reused
        with self._cond:
            self._busy -= 1
            if healthy:
                self._idle.append(worker)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


POOL = RenderPool()
atexit.register(POOL.close)
