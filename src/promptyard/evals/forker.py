"""The worker's forker: a process forked from the warm worker once, that does nothing but fork each sample's solution
process, wait for it and say how it ended.

Why a process of its own: after a fork every page of the forking process is shared copy-on-write with the child, so
each page the forking process writes afterwards costs a page fault (a copy while the child lives). The worker runs
Python for every sample (its pipes, the judge, the verdict): forking from the worker itself cost it ~230 such faults
a sample, a quarter of the sandbox's CPU. The forker writes almost nothing between two forks: it reads the job,
forks, and sleeps in waitpid while the solution runs.

The forker holds, as its fds 1 to 4, exactly what a solution process gets: 1 and 2 the worker's output pipes, 3
and 4 the judge's bridge (0 is /dev/null). A solution process closes the forker's own pipes (5 and up) and keeps
the rest where they are. Those open files are the same for every sample, so the forker clears their status flags
(O_NONBLOCK, O_APPEND, O_ASYNC) before each fork: a sample cannot leave them changed for the next one.

Pipes with the worker: jobs (worker -> forker: one length-prefixed marshal frame a job), started (the solution's pid,
4 bytes, written right after the fork) and ended (pid and wait status, 8 bytes, written once it is reaped).
"""

from __future__ import annotations

import ctypes
import fcntl
import marshal
import os
import select
import signal

if __package__:
    from promptyard.evals import bridge, harness, isolation, typehints
else:
    import bridge  # type: ignore[no-redef]
    import harness  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]
    import typehints  # type: ignore[no-redef]

MAX_FD = 1 << 16
# A small solution is compiled by the worker, which sends the code (marshal) to the forker: compiling in the child
# cost ~1.5 ms a sample (the compiler's work writes pages shared with the forker); loading the code is cheaper.
# Compiling runs no code, and what it raises is left for the child to raise again as the sample's verdict. Bigger
# sources are compiled in the child, so that one huge program cannot grow the forker's heap.
SOLUTION_COMPILE_MAX = 16 * 1024
# Compiled code by source, in the worker (samples of one task often share their solution, and come one after
# another). Kept small: a forker started anew (after a timeout) is a copy of the worker, cache included, and every
# fork copies and tears down what the forker holds.
CODE_CACHE_SIZE = 64
_COMPILE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)
# How long the worker waits for the forker to report a solution it killed (the kernel reaps a killed process in
# microseconds; past this the forker is taken for stuck and replaced).
REAP_WAIT = 5.0
# The forker's fds: 5 jobs, 6 started, 7 ended (1 to 4 are the solution's, see the module's docstring).
_JOBS, _STARTED, _ENDED = 5, 6, 7
# The C library's fork, called with the interpreter's lock held (PyDLL). os.fork() also runs CPython's after-fork
# bookkeeping (reinitialized locks, at-fork callbacks, the thread state's ids), which in the child wrote ~18 pages
# shared with the forker, a copy-on-write fault each, ~0.05 ms a sample. The forker is single-threaded, imports
# nothing that registers at-fork callbacks (threading, random, logging) and holds no lock across a fork, so that
# bookkeeping has nothing to repair in its children (glibc's own fork still updates the C library's state).
_FORK = ctypes.PyDLL(None, use_errno=True).fork
_FORK.restype = ctypes.c_int
_FORK.argtypes = ()
# The wait status a solution gets when the forker could not fork it (exit status 71: the sandbox could not be set up
# for this sample).
NOT_FORKED = 71 << 8
# Run through the harness in the forker before its first fork (see _warm_up): our own code, no sample's.
WARM_UP_SOLUTION = ("def f(x, y=None):\n    if y:\n        raise ValueError(x)\n"
                    "    return [x, str(x), (x, 1.5), {'k': x}, None, True]\n")
WARM_UP_ROUNDS = 12


class ForkerLost(Exception):
    """The forker died or stopped answering: the sample has no solution status, the worker starts a new forker."""


class Forker:
    """The worker's handle on its forker (see the module's docstring)."""

    def __init__(self, solution_fds: list[int], uid: int | None, budget, pid_namespace: bool) -> None:
        jobs, started, ended, out, err = (os.pipe() for _ in range(5))
        self.pid = os.fork()
        if self.pid == 0:
            try:
                _become_forker({1: out[1], 2: err[1], 3: solution_fds[0], 4: solution_fds[1], _JOBS: jobs[0],
                                _STARTED: started[1], _ENDED: ended[1]}, budget, pid_namespace)
                _serve(uid, bool(budget), pid_namespace)
            finally:
                os._exit(70)
        for fd in (jobs[0], started[1], ended[1], out[1], err[1]):
            os.close(fd)
        self.jobs, self.started, self.ended, self.out, self.err = jobs[1], started[0], ended[0], out[0], err[0]
        for fd in (self.out, self.err):
            os.set_blocking(fd, False)  # drained to empty after each sample: no writer is left then
        self.pidfd = os.pidfd_open(self.pid)
        self.solution: int | None = None
        self._waits = {}
        for fd in (self.started, self.ended):
            self._waits[fd] = poller = select.poll()
            poller.register(fd, select.POLLIN)
        self.code: dict[str, tuple[bytes | str, tuple[str, ...]]] = {}

    def submit(self, workdir: str, home: str | None, job: dict, names) -> None:
        """Fork the job's solution process (in `workdir`, under the solution's uid, with the job's limits); `home`:
        the folder for HOME and TMPDIR when it is not the worker's usual one (already in the environment)."""
        code, typing_used = self._code(job["solution"])
        frame = marshal.dumps((workdir, home, isolation.rlimits(job["limits"], int(job["timeout"]) + 1), code,
                               names, typing_used))
        data = memoryview(len(frame).to_bytes(4, "little") + frame)
        self.solution = None
        while data:
            data = data[os.write(self.jobs, data):]

    def _code(self, source: str) -> tuple[bytes | str, tuple[str, ...]]:
        """The solution as marshalled code (or its source when it is big or does not compile), and the typing
        annotations it looks like it evaluates (see typehints.py)."""
        entry = self.code.get(source)
        if entry is None:
            code: bytes | str = source
            if len(source) <= SOLUTION_COMPILE_MAX:
                try:
                    code = marshal.dumps(compile(source, "<solution>", "exec", dont_inherit=True))
                except _COMPILE_ERRORS:
                    pass
            if len(self.code) >= CODE_CACHE_SIZE:
                self.code.clear()
            entry = self.code[source] = (code, typehints.find(source) if len(source) <= SOLUTION_COMPILE_MAX else ())
        return entry

    def solution_pid(self) -> int:
        """The pid of the sample's solution process (blocks until the forker has forked it)."""
        if self.solution is None:
            data = self._read_exactly(self.started, 4)
            self.solution = int.from_bytes(data, "little")
        return self.solution

    def wait_status(self) -> int:
        """The solution's wait status, once the forker reaped it (call when `ended` is readable, or to wait)."""
        pid = self.solution_pid()
        data = self._read_exactly(self.ended, 8)
        if int.from_bytes(data[:4], "little") != pid:
            raise ForkerLost("the forker reported another process")
        return int.from_bytes(data[4:], "little", signed=True)

    def stop(self, pid: int) -> int:
        """Kill the solution process and return its wait status."""
        if pid > 0:  # 0: it was never forked (and kill(0) would be our own process group)
            _kill(pid)
        return self.wait_status()

    def _read_exactly(self, fd: int, size: int) -> bytes:
        """`size` bytes from the forker, waiting at most REAP_WAIT; ForkerLost when it died or hangs."""
        data = b""
        while len(data) < size:
            if not self._waits[fd].poll(int(REAP_WAIT * 1000)):
                raise ForkerLost("the forker did not answer")
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise ForkerLost("the forker exited")
            data += chunk
        return data

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        for fd in (self.jobs, self.started, self.ended, self.out, self.err, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _kill(pid: int) -> None:
    # Outside a PID namespace the solution leads its own process group; whatever left it is killed by the worker.
    for action in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            action()
        except (ProcessLookupError, PermissionError):
            pass


def _become_forker(fds: dict[int, int], budget, pid_namespace: bool) -> None:
    """In the new forker: into the sample's cgroup (its children are born there), fds in place, the rest closed."""
    if budget:
        budget.join()
    isolation.place_fds(fds)
    isolation.not_dumpable()  # no ptrace and no /proc/PID/mem for a same-uid sample (where samples run as root)
    if not pid_namespace:
        isolation.die_with_parent()  # inside a PID namespace the kernel kills us with the worker, its init
    _warm_up()


def _warm_up() -> None:
    """Run the harness here on a solution of ours, a few times, before the first fork.

    CPython 3.11 rewrites a function's bytecode in place while it warms up (counters, then specialized
    instructions): code first run in a forked child writes to pages it shares with us, a copy-on-write fault each.
    Run here first, the harness's code is already specialized when every solution process starts.
    """
    code = compile(WARM_UP_SOLUTION, "<warm-up>", "exec", dont_inherit=True)
    calls = [(b"c", marshal.dumps((0, None, (3,), {}))), (b"m", marshal.dumps((0, None, ([1, 2],), {}))),
             (b"c", marshal.dumps((0, None, ("a", 1), {}))), (b"g", marshal.dumps((0, "__name__")))]
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        for _ in range(WARM_UP_ROUNDS):
            requests, writer = os.pipe()
            for kind, body in calls * 3:
                bridge.send(writer, kind, body)
            os.close(writer)
            harness.run_solution(code, ("f", "missing"), requests, sink)
            os.close(requests)
    finally:
        os.close(sink)
    import gc

    gc.freeze()  # what the warm-up left is never collected in a child (its pages stay shared)


def _serve(uid: int | None, budget: bool, pid_namespace: bool) -> None:
    """Fork one solution process a job until the worker closes the jobs pipe."""
    read, write, fork, waitpid, setfl = os.read, os.write, _FORK, os.waitpid, fcntl.fcntl
    made: set[str] = set()  # the typing annotations made here so far
    while True:
        header = read(_JOBS, 4)
        if len(header) < 4:
            os._exit(0)
        size = int.from_bytes(header, "little")
        frame = b""
        while len(frame) < size:
            chunk = read(_JOBS, size - len(frame))
            if not chunk:
                os._exit(0)
            frame += chunk
        workdir, home, limits, solution, names, typing_used = marshal.loads(frame)
        del frame
        if typing_used:
            typehints.warm(typing_used, made)
        for fd in (1, 2, 3, 4):
            setfl(fd, fcntl.F_SETFL, 0)
        if type(solution) is bytes:
            solution = marshal.loads(solution)
        pid = fork()
        if pid == 0:
            try:
                _solution_process(workdir, home, uid, limits, solution, names, budget, pid_namespace)
            finally:
                os._exit(70)
        if pid < 0:  # refused (the process or memory budget): the sample cannot run
            write(_STARTED, b"\0\0\0\0")
            pid, status = 0, NOT_FORKED
        else:
            write(_STARTED, pid.to_bytes(4, "little"))
            status = waitpid(pid, 0)[1]
        write(_ENDED, pid.to_bytes(4, "little") + status.to_bytes(4, "little", signed=True))
        del solution, names


def _solution_process(workdir, home, uid, limits, solution, names, budget, pid_namespace) -> None:
    """In a sample's solution process: the forker's pipes closed, its folder, budget, limits (isolation.rlimits)
    and uid; then the solution (fds 1 stdout, 2 stderr, 3 from the judge, 4 to the judge, inherited in place)."""
    try:
        os.closerange(_JOBS, MAX_FD)
        if not pid_namespace:
            # Its own process group, so a timeout can kill its descendants too; inside the worker's PID namespace
            # every process but the worker's own is killed after each sample anyway.
            os.setsid()
        os.chdir(workdir)
        if home:
            os.environ["HOME"] = os.environ["TMPDIR"] = home
        if budget:
            # The OOM killer's first pick in the sample's cgroup, before the forker (written while still root: the
            # file is the process owner's, and raising the value needs no privilege).
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        isolation.set_rlimits(limits)
        if uid:
            isolation.drop_privileges(uid)
        if not pid_namespace:
            isolation.die_with_parent()
    except BaseException:  # noqa: BLE001 - a child must never fall back into the forker's loop
        os._exit(71)
    harness.run_solution(solution, names, 3, 4)
    os._exit(0)
