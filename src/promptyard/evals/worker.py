"""A pre-started sandbox worker: reads jobs as marshal frames, forks an isolated child per job, reports verdicts.

Started as a bare script with `python -I -S` (see sandbox._Worker) and kept lean on purpose: every sample is a
fork of this process, and on virtual machines a fork costs in proportion to the memory mapped here.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import struct
import sys
import time

if __package__:
    from promptyard.evals import harness, isolation
else:
    import harness  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]

# Imported once here so a forked child finds them loaded (HumanEval prompts import typing, which is slow to
# import); heavier modules (decimal, hashlib...) would make every fork dearer than importing them when used.
PRELOADED = ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string")

# Worker-wide facts, set once in main().
STATE = {"network_namespace": False, "ipc_namespace": False, "pid_namespace": False, "no_uid_drop": None,
         "namespaces": True, "scratch": None, "isolation": None, "isolation_report": None, "workdir": None, "temporary": {}}

_SIGNAL_VERDICTS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "crashed"}
_REPORTED_VERDICTS = ("failed", "error", "memory")
# The exception's text is cut to this in `detail` (the `message` field keeps it whole).
DETAIL_MAX = 500


# Compiled test code per test text (tests come from the dataset, never from the model): compiled once here,
# every sample of a task execs the same code object instead of compiling it again in its child.
_TESTS: dict[str, object] = {}
_TESTS_KEPT = 512


_COMPILE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)

# The solution is compiled here too, before the fork, when it is small: compiling in the child wrote ~60 pages
# still shared with the worker (a copy each); here they are the worker's own. Compiling runs no code, and what
# it raises is left for the child to raise again as the sample's verdict. Bigger sources are compiled in the
# child, so one huge program cannot grow the worker's heap (which every later fork would have to copy).
SOLUTION_COMPILE_MAX = 16 * 1024


def _compiled(source: str, filename: str):
    """The code object, or the source itself when the compiler refuses it: the child compiles it again and
    reports the error as the sample's verdict."""
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except _COMPILE_ERRORS:
        return source


def _compiled_tests(tests: str):
    code = _TESTS.get(tests)
    if code is None:
        code = _compiled(tests, "<tests>")
        if code is tests:
            return tests
        if len(_TESTS) >= _TESTS_KEPT:
            _TESTS.clear()
        _TESTS[tests] = code
    return code


def _compiled_solution(solution: str):
    return solution if len(solution) > SOLUTION_COMPILE_MAX else _compiled(solution, "<solution>")


def _sample(job: dict, nonce: bytearray, workdir: str, fds: dict, info: isolation.Isolation, solution,
            tests) -> None:
    """The sample's process (in the worker's PID namespace when available): lock down, then run the program."""
    try:
        # Signal dispositions stay the interpreter's own (SIGPIPE and SIGXFSZ ignored, as in any Python program):
        # the worker installs no handlers of its own.
        if not info.pid_namespace:
            # Its own process group, so a timeout can kill its descendants too; inside the worker's PID namespace
            # every process but the worker is killed after each sample anyway. No controlling terminal either
            # way: the worker starts in a session of its own.
            os.setsid()
        os.chdir(workdir)
        # The worker's environment is already the scrubbed SAFE_ENV (see setup), with HOME and TMPDIR on the
        # samples' folder when that path is the same for every sample.
        if workdir != STATE["workdir"]:
            os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        # stdin is the worker's: /dev/null (see main).
        os.dup2(fds["stdout"], 1)
        os.dup2(fds["stderr"], 2)
        result_fd = 3
        os.dup2(fds["result"], result_fd)
        os.closerange(4, 1 << 16)
        isolation.apply_limits(job["limits"], cpu_seconds=int(job["timeout"]) + 1)
        if info.uid:
            isolation.drop_privileges(info.uid)
        if not info.pid_namespace:
            # Inside the worker's PID namespace the kernel kills every sample when the worker (its init) dies.
            isolation.die_with_parent()
    except BaseException:  # noqa: BLE001 - a child must never fall back into the worker's loop
        os._exit(71)
    harness.run_program(solution, tests, job["tests"], result_fd, nonce)
    os._exit(0)


def _isolation() -> isolation.Isolation:
    """What every sample of this worker gets (decided once, in setup)."""
    info = isolation.Isolation(net_namespace=STATE["network_namespace"], pid_namespace=STATE["pid_namespace"],
                               ipc_namespace=STATE["ipc_namespace"])
    if os.geteuid() == 0 and STATE["no_uid_drop"] is None:
        info.uid = isolation.claim_uid()
    elif STATE["no_uid_drop"]:
        info.notes.append(STATE["no_uid_drop"])
    if os.geteuid() == 0 and not info.uid:
        info.notes.append("samples run as root: no limit on their number of processes, no protection for files "
                          "outside their folder")
    if not STATE["namespaces"]:
        info.notes.append("namespaces disabled by configuration")
    elif not STATE["pid_namespace"]:
        info.notes.append("no PID namespace (unshare refused); strays are killed by the worker, their subreaper")
    if STATE["namespaces"] and not STATE["ipc_namespace"]:
        info.notes.append("no IPC namespace (unshare refused): shared memory or queues a sample creates outlive it")
    info.private_tmp = bool(STATE["temporary"])
    if not info.private_tmp:
        info.notes.append("no private /tmp: files a sample leaves in /tmp, /var/tmp or /dev/shm outlive it")
    return info


def _fresh_folder(unique: str) -> str:
    """An empty folder for one sample: the worker's fixed one when it could be cleared, else a new name."""
    for _ in range(2):
        try:
            os.mkdir(STATE["workdir"], 0o700)
            return STATE["workdir"]
        except FileExistsError:
            _remove_tree(STATE["workdir"])  # the last sample's folder survived its cleanup: one more try
    workdir = f"{STATE['scratch']}/promptyard-sample-{os.getpid()}-{unique[:12]}"
    os.mkdir(workdir, 0o700)
    return workdir


def run_job(job: dict) -> dict:
    """Run one job to a verdict; nothing it started outlives this call."""
    started = time.monotonic()
    nonce_text = os.urandom(16).hex()
    nonce = bytearray(nonce_text.encode())
    workdir = _fresh_folder(nonce_text)
    info = STATE["isolation"]
    if info.uid:
        os.chown(workdir, info.uid, info.uid)
    tests = _compiled_tests(job["tests"])
    solution = _compiled_solution(job["solution"])
    pipes = {name: os.pipe() for name in ("stdout", "stderr", "result")}
    pid = os.fork()
    if pid == 0:
        try:
            for read_end, _ in pipes.values():
                os.close(read_end)
            _sample(job, nonce, workdir, {name: w for name, (_, w) in pipes.items()}, info, solution, tests)
        finally:
            os._exit(70)
    nonce[:] = b"\0" * len(nonce)
    for _, write_end in pipes.values():
        os.close(write_end)
    try:
        status, captured, truncated, timed_out = _supervise(pid, pipes, job, started)
    finally:
        try:
            _cleanup(pid, info)
        finally:
            _remove_tree(workdir)
            _empty_temporary()
    result = _interpret(status, captured["result"].decode(errors="replace"), nonce_text, timed_out)
    result.update(
        stdout=captured["stdout"].decode(errors="replace"),
        stderr=captured["stderr"].decode(errors="replace"),
        truncated=sorted(truncated),
        duration=round(time.monotonic() - started, 4),
        isolation=STATE["isolation_report"],
    )
    return result


def _supervise(pid: int, pipes: dict, job: dict, started: float):
    """Drain the pipes (capped) until the sample exits or its time is up; returns its wait status."""
    readers = {r: name for name, (r, _) in pipes.items()}
    captured = {name: bytearray() for name in pipes}
    cap = int(job.get("limits", {}).get("output_bytes", 64 * 1024))
    # The report carries the exception's text (up to harness.MESSAGE_MAX characters, escaped).
    caps = {"stdout": cap, "stderr": cap, "result": 1 << 20}
    truncated: set[str] = set()
    deadline = started + float(job["timeout"])
    timed_out = exited = False
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in [*readers, pidfd]:
        poller.register(fd, select.POLLIN)
    try:
        while readers:
            now = time.monotonic()
            # Once the sample is gone, whatever still holds a pipe is a stray (killed in cleanup): drain briefly.
            wait = min(0.2, deadline + 1 - now) if exited else deadline - now
            ready = poller.poll(max(0, int(wait * 1000)))
            if not ready:
                if exited:
                    break
                timed_out = exited = True
                _kill(pid)
                poller.unregister(pidfd)
                continue
            for fd, _ in ready:
                if fd == pidfd:
                    exited = True
                    poller.unregister(pidfd)
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    os.close(fd)
                    del readers[fd]
                    continue
                name = readers[fd]
                room = caps[name] - len(captured[name])
                if room > 0:
                    captured[name] += chunk[:room]
                if len(chunk) > room:
                    truncated.add(name)
    finally:
        os.close(pidfd)
        for fd in readers:
            os.close(fd)
    _kill(pid)
    _, status = os.waitpid(pid, 0)
    return status, captured, truncated, timed_out


def _kill(pid: int) -> None:
    # Outside a PID namespace the sample leads its own process group; whatever left it is killed in _cleanup.
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _cleanup(pid: int, info: isolation.Isolation) -> None:
    """After the sample is reaped: no process it started may outlive it."""
    if info.pid_namespace:
        # We are PID 1 of this namespace: kill(-1) reaches every other process in it (and nothing outside), and
        # every orphan in it is re-parented to us, so waiting until there is no child left proves they are gone.
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    _kill_descendants()


def _kill_descendants() -> None:
    """Kill whatever the sample left running, however detached (setsid, double fork, another uid).

    We are its subreaper (see setup): an orphan in our subtree is re-parented to us, never to init. So: kill our
    children, reap them (their children are ours from then on), and repeat until we have none left.
    """
    # Children of this thread, the worker's only one (a kernel with CONFIG_PROC_CHILDREN, as distributions build).
    listing = f"/proc/self/task/{os.getpid()}/children"
    while True:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # the usual case: the sample left nothing
        with open(listing, "rb") as handle:
            children = [int(pid) for pid in handle.read().split()]
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in children:
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass


def _empty_temporary() -> None:
    """Remove what the sample left in the worker's own /tmp, /var/tmp and /dev/shm (see isolation.cover_temporary).

    On tmpfs a folder's size counts its entries, so one stat per folder tells whether there is anything to do.
    """
    for folder, (size, kept) in STATE["temporary"].items():
        if os.stat(folder).st_size != size:
            for name in os.listdir(folder):
                if name not in kept:
                    _remove(f"{folder}/{name}")


def _remove(path: str) -> None:
    """Delete a file, link or folder the sample left (symlinks are removed, never followed)."""
    try:
        os.unlink(path)
    except IsADirectoryError:
        _remove_tree(path)
    except OSError:
        pass


def _remove_tree(path: str) -> None:
    """Delete the sample's folder (symlinks are removed, never followed)."""
    try:
        os.rmdir(path)  # the usual case: the sample left its folder empty
        return
    except OSError:
        pass
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _unescape(text: str) -> str:
    try:
        return text.encode("ascii").decode("unicode_escape")
    except (UnicodeError, ValueError):
        return text


def _interpret(status: int, result_text: str, nonce: str, timed_out: bool) -> dict:
    """Turn the child's exit status and its nonce-signed report (see harness) into a verdict."""
    outcome = None
    for line in result_text.splitlines():
        fields = line.split("\t")
        # A pass is exactly `nonce  passed`; every other verdict comes with the exception's type and text.
        if fields[0] == nonce and (len(fields) == 2 and fields[1] == "passed"
                                   or len(fields) == 4 and fields[1] in _REPORTED_VERDICTS):
            outcome = fields
    if timed_out:
        return {"verdict": "timeout", "detail": "timed out"}
    if outcome is not None:
        if outcome[1] == "passed":
            return {"verdict": "passed", "detail": "passed", "exception": None}
        kind, message = (_unescape(field) for field in outcome[2:])
        return {"verdict": outcome[1], "detail": f"{kind}: {message[:DETAIL_MAX]}", "exception": kind,
                "message": message}
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        return {"verdict": _SIGNAL_VERDICTS.get(sig, "crashed"), "detail": f"killed by {sig.name}"}
    code = os.WEXITSTATUS(status)
    if code == 71:
        return {"verdict": "crashed", "detail": "the sandbox could not be set up for this sample"}
    # Exit status 0 without the nonce is an early exit (os._exit(0), a killed parent): not a pass.
    return {"verdict": "crashed", "detail": f"exited with status {code} before the tests finished"}


def _interpreter_paths() -> list[str]:
    return [sys.base_prefix, sys.prefix, *[p for p in sys.path if p]]


def _expose_interpreter() -> None:
    """Make the interpreter importable for the unprivileged sample uid; without that, stay root (and say so)."""
    try:
        isolation.expose_python(_interpreter_paths())
    except OSError as exc:
        STATE["no_uid_drop"] = f"interpreter not readable by an unprivileged uid and not exposable ({exc})"


def _private_mounts() -> None:
    """The worker's own mount namespace: empty temporary folders, a tmpfs for the samples' folders, and the
    interpreter exposed to the sample uid. Without it samples stay root (and the isolation report says so)."""
    try:
        isolation.private_mounts()
        # The scorer's folder for this worker (under /tmp) is bound back too: if the scratch tmpfs cannot be
        # mounted after all, samples still have it.
        covered = isolation.cover_temporary(_interpreter_paths() + [STATE["scratch"]])
        STATE["scratch"] = isolation.mount_scratch()
    except OSError as exc:
        STATE["no_uid_drop"] = f"no private mount namespace ({exc})"
        return
    _expose_interpreter()
    # What the covered folders hold before any sample ran (the scratch mount point, interpreter folders bound
    # back): all the rest is a sample's, removed after it (see _empty_temporary).
    STATE["temporary"] = {folder: (os.stat(folder).st_size, frozenset(os.listdir(folder))) for folder in covered}


def _hide_sandbox_modules() -> None:
    """Make the harness, this worker and isolation unreachable by `import` in a sample: out of sys.modules (our
    own references to them stay), and their folder out of sys.path. A sample that imported `harness` could
    otherwise patch how its own verdict is made (see the harness docstring)."""
    own = (harness, isolation, sys.modules[__name__])
    for name in [name for name, module in sys.modules.items() if any(module is mine for mine in own)]:
        del sys.modules[name]
    folder = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [path for path in sys.path if os.path.abspath(path) != folder]


def setup(namespaces: bool, scratch: str) -> None:
    """Once per worker: namespaces, private mounts, subreaper, environment, preloaded modules.

    `scratch` is the folder the scorer made for this worker's samples (it removes it with the worker, even a
    killed one); used only where the worker gets no private tmpfs for them.
    """
    STATE["namespaces"] = namespaces
    STATE["scratch"] = scratch
    if namespaces:
        STATE["network_namespace"] = isolation.enter_network_namespace()
        STATE["ipc_namespace"] = isolation.enter_ipc_namespace()
        if os.geteuid() == 0:
            isolation.claim_uid()  # first: its locks are in the machine's /tmp, which _private_mounts covers
            _private_mounts()
    elif os.geteuid() == 0 and any(isolation._closed_ancestor(p) for p in (sys.base_prefix, sys.prefix)):
        STATE["no_uid_drop"] = "interpreter not readable by an unprivileged uid without a mount namespace"
    if namespaces:
        STATE["pid_namespace"] = isolation.become_pid_namespace_init()
    if STATE["scratch"] == scratch:
        os.chmod(scratch, 0o711)  # the sample uid reaches its own folder in it, and nothing else
    # A folder of this worker's alone: every sample can get the same folder path (created fresh for it, removed
    # after it), so its environment is set once here rather than in every child.
    STATE["workdir"] = f"{STATE['scratch']}/sample"
    # Exactly the safe environment, once: samples only add their folder (HOME, TMPDIR) to it.
    isolation.scrub_environment(STATE["workdir"])
    # Orphans of a sample are re-parented to us (not to init), so we can kill and reap them.
    isolation.become_subreaper()
    isolation.no_new_privileges()
    STATE["isolation"] = _isolation()
    STATE["isolation_report"] = STATE["isolation"].to_dict()
    _hide_sandbox_modules()
    for name in PRELOADED:
        __import__(name)
    import gc

    # Objects that exist now are never collected in a child: its garbage collector leaves their pages shared.
    gc.freeze()


def read_frame(stream) -> object | None:
    """One length-prefixed marshal frame (the scorer's protocol, see sandbox._Worker); None at end of input."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    return marshal.loads(stream.read(struct.unpack("<I", header)[0]))


def write_frame(stream, value: object) -> None:
    payload = marshal.dumps(value)
    stream.write(struct.pack("<I", len(payload)) + payload)
    stream.flush()


def main() -> None:
    """Serve jobs until stdin closes: one marshal frame in, one out (marshal: built in, fast, and both ends
    are ours; what a sample writes never reaches this channel, only the verdict the worker makes of it)."""
    argv = list(sys.argv)
    # Jobs and results travel on private duplicates of stdin and stdout (closed in every sample), so the
    # interpreter's std streams stay untouched and a sample can take them over as they are.
    jobs = open(os.dup(0), "rb")
    out = open(os.dup(1), "wb")
    # The std fds themselves point at /dev/null from now on, so a sample inherits the interpreter's own std
    # streams (sys.stdin/stdout/stderr, never used by the worker, their buffers empty) and only moves fds 1 and 2.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.argv = ["<sample>"]
    if len(argv) > 2 and argv[2]:
        try:
            os.sched_setaffinity(0, {int(argv[2])})  # before anything is forked: samples inherit it
        except OSError:
            pass  # the core is no longer ours: float like any process
    setup(os.environ.get("PROMPTYARD_SANDBOX_NAMESPACES", "1") == "1", os.environ["PROMPTYARD_SANDBOX_SCRATCH"])
    while (job := read_frame(jobs)) is not None:
        try:
            result = run_job(job)
        except Exception as exc:  # noqa: BLE001 - report harness trouble as a crash, keep serving
            result = {"verdict": "crashed", "detail": f"sandbox error: {exc!r}", "isolation": None}
        result["id"] = job.get("id")
        write_frame(out, result)


if __name__ == "__main__":
    main()
