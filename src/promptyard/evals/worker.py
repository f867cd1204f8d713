"""A pre-started sandbox worker: reads jobs as marshal frames, forks two processes per job (the solution's and
the judge's, see harness.py and judge.py), reports the judge's verdict.

Started as a bare script with `python -I -S` (see sandbox._Worker) and kept lean on purpose: every sample is a
fork of this process, and on virtual machines a fork costs in proportion to the memory mapped here.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import signal
import struct
import sys
import time

if __package__:
    from promptyard.evals import bridge, cgroups, harness, isolation, judge, lockdown, reaper, rootfs
else:
    import bridge  # type: ignore[no-redef]
    import cgroups  # type: ignore[no-redef]
    import harness  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]
    import judge  # type: ignore[no-redef]
    import lockdown  # type: ignore[no-redef]
    import reaper  # type: ignore[no-redef]
    import rootfs  # type: ignore[no-redef]

STATE = lockdown.STATE

# Imported once here so a forked child finds them loaded (HumanEval prompts import typing, which is slow to
# import); heavier modules (decimal, hashlib...) would make every fork dearer than importing them when used.
PRELOADED = ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string")

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
    """(code, the global names it may read) for the tests; (source, None) when the compiler refuses them."""
    entry = _TESTS.get(tests)
    if entry is None:
        code = _compiled(tests, "<tests>")
        if code is tests:
            return tests, None
        if len(_TESTS) >= _TESTS_KEPT:
            _TESTS.clear()
        entry = _TESTS[tests] = (code, tuple(sorted(_names(code))))
    return entry


def _names(code) -> set:
    """Every name the code (and the functions in it) may look up: the solution's names the judge asks for."""
    names = set(code.co_names)
    for const in code.co_consts:
        if type(const) is type(code):
            names |= _names(const)
    return names


def _compiled_solution(solution: str):
    return solution if len(solution) > SOLUTION_COMPILE_MAX else _compiled(solution, "<solution>")


def _lock_down(job: dict, folder: str, uid, fds: list[int]) -> None:
    """In a sample's process: its folder, its budget, its fds (0: /dev/null, then `fds` from 1 on), limits, uid."""
    # Signal dispositions stay the interpreter's own (SIGPIPE and SIGXFSZ ignored, as in any Python program).
    if not STATE["pid_namespace"]:
        # Its own process group, so a timeout can kill its descendants too; inside the worker's PID namespace
        # every process but the worker is killed after each sample anyway.
        os.setsid()
    os.chdir(folder)
    if folder != STATE["workdir"]:
        os.environ["HOME"] = os.environ["TMPDIR"] = folder
    if STATE["budget"]:
        STATE["budget"].join()  # before dropping privileges: the cgroup files are root's
    # Out of the way first (above every target number), then in place: no target overwrites a source.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in fds]
    for target, fd in enumerate(high, start=1):
        os.dup2(fd, target)
    os.closerange(len(fds) + 1, 1 << 16)
    isolation.apply_limits(job["limits"], cpu_seconds=int(job["timeout"]) + 1)
    if uid:
        isolation.drop_privileges(uid)
    if not STATE["pid_namespace"]:
        # Inside the worker's PID namespace the kernel kills every sample when the worker (its init) dies.
        isolation.die_with_parent()


def _solution_process(job, workdir, uid, fds, solution, names) -> None:
    try:
        _lock_down(job, workdir, uid, fds)  # 1 stdout, 2 stderr, 3 from the judge, 4 to the judge
    except BaseException:  # noqa: BLE001 - a child must never fall back into the worker's loop
        os._exit(71)
    harness.run_solution(solution, job["tests"], names, 3, 4)
    os._exit(0)


def _judge_process(job, uid, fds, tests, nonce) -> None:
    try:
        _lock_down(job, STATE["judge_dir"], uid, fds)  # 1 stdout, 2 stderr, 3 from the solution, 4 to it, 5 result
        os.environ["HOME"] = os.environ["TMPDIR"] = STATE["judge_dir"]
    except BaseException:  # noqa: BLE001
        os._exit(71)
    judge.run_tests(tests, job["tests"], 3, 4, 5, nonce)
    os._exit(0)


def _fresh_folder(unique: str) -> str:
    """An empty folder for one sample: the worker's fixed one when it could be cleared, else a new name."""
    for _ in range(2):
        try:
            os.mkdir(STATE["workdir"], 0o700)
            return STATE["workdir"]
        except FileExistsError:
            reaper.remove_tree(STATE["workdir"])  # the last sample's folder survived its cleanup: one more try
    workdir = f"{STATE['scratch']}/promptyard-sample-{os.getpid()}-{unique[:12]}"
    os.mkdir(workdir, 0o700)
    return workdir


def _fork(child, *args) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            child(*args)
        finally:
            os._exit(70)
    return pid


def run_job(job: dict) -> dict:
    """Run one job to a verdict; nothing it started outlives this call."""
    started = time.monotonic()
    nonce_text = os.urandom(16).hex()
    nonce = bytearray(nonce_text.encode())
    workdir = _fresh_folder(nonce_text)
    uids = STATE["uids"] or (None, None)
    if uids[0]:
        os.chown(workdir, uids[0], uids[0])
    tests, names = _compiled_tests(job["tests"])
    solution = _compiled_solution(job["solution"])
    out, err, result, to_solution, to_judge = (os.pipe() for _ in range(5))
    budget = STATE["budget"]
    oom_kills = budget.oom_kills() if budget else 0
    solution_pid = _fork(_solution_process, job, workdir, uids[0], [out[1], err[1], to_solution[0], to_judge[1]],
                         solution, names)
    judge_pid = _fork(_judge_process, job, uids[1], [out[1], err[1], to_judge[0], to_solution[1], result[1]],
                      tests, nonce)
    nonce[:] = b"\0" * len(nonce)
    for fd in (out[1], err[1], result[1], *to_solution, *to_judge):
        os.close(fd)
    cap = int(job.get("limits", {}).get("output_bytes", 64 * 1024))
    # The report carries the exception's text (up to harness.MESSAGE_MAX characters, escaped).
    caps = {"stdout": cap, "stderr": cap, "result": 1 << 20}
    readers = {out[0]: "stdout", err[0]: "stderr", result[0]: "result"}
    try:
        judged, solved, captured, truncated, timed_out = reaper.supervise(
            judge_pid, solution_pid, readers, caps, started + float(job["timeout"]))
    finally:
        try:
            reaper.cleanup(STATE["pid_namespace"])
        finally:
            reaper.remove_tree(workdir)
            reaper.empty_folders(STATE["temporary"])
    over_budget = bool(budget) and budget.oom_kills() > oom_kills
    outcome = _verdict(judged, solved, captured["result"].decode(errors="replace"), nonce_text, timed_out,
                       over_budget)
    outcome.update(
        stdout=captured["stdout"].decode(errors="replace"),
        stderr=captured["stderr"].decode(errors="replace"),
        truncated=sorted(truncated),
        duration=round(time.monotonic() - started, 4),
        isolation=STATE["isolation_report"],
    )
    return outcome


def _verdict(judged: int, solved: int, result_text: str, nonce: str, timed_out: bool, over_budget: bool) -> dict:
    """The judge's verdict; when it has none because the solution's process ended mid-conversation, how that
    process ended; `memory` whenever the kernel killed one of the sample's processes over its budget."""
    if over_budget:
        return {"verdict": "memory", "detail": "over the sample's memory budget (killed by the kernel)",
                "exception": None}
    if os.WIFEXITED(judged) and os.WEXITSTATUS(judged) in (bridge.SOLUTION_ENDED, bridge.PROTOCOL_BROKEN) \
            and not timed_out and not _signed(result_text, nonce):
        if os.WEXITSTATUS(judged) == bridge.PROTOCOL_BROKEN and os.WIFSIGNALED(solved) \
                and os.WTERMSIG(solved) == signal.SIGKILL:
            return {"verdict": "crashed", "detail": "the solution's process broke the protocol with the judge"}
        return _interpret(solved, "", nonce, False)
    return _interpret(judged, result_text, nonce, timed_out)


def _signed(result_text: str, nonce: str) -> bool:
    return any(line.split("\t")[0] == nonce for line in result_text.splitlines())


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


def _hide_sandbox_modules() -> None:
    """Make the sandbox's own modules unreachable by `import` in a sample: out of sys.modules (our own
    references to them stay), and their folder out of sys.path."""
    own = (harness, isolation, judge, bridge, lockdown, reaper, rootfs, cgroups, sys.modules[__name__])
    for name in [name for name, module in sys.modules.items() if any(module is mine for mine in own)]:
        del sys.modules[name]
    folder = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [path for path in sys.path if os.path.abspath(path) != folder]


def setup(namespaces: bool, scratch: str, memory: int = isolation.Limits().memory,
          processes: int = isolation.Limits().processes, budget_name: str | None = None) -> None:
    """Once per worker: the lockdown (see lockdown.py), then the modules every sample finds loaded."""
    lockdown.setup(namespaces, scratch, memory, processes, budget_name or f"{cgroups.PREFIX}{os.getpid()}")
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
    memory, processes = (int(n) for n in os.environ["PROMPTYARD_SANDBOX_BUDGET"].split())
    setup(os.environ.get("PROMPTYARD_SANDBOX_NAMESPACES", "1") == "1", os.environ["PROMPTYARD_SANDBOX_SCRATCH"],
          memory, processes, os.environ["PROMPTYARD_SANDBOX_CGROUP"])
    while (job := read_frame(jobs)) is not None:
        try:
            result = run_job(job)
        except Exception as exc:  # noqa: BLE001 - report harness trouble as a crash, keep serving
            result = {"verdict": "crashed", "detail": f"sandbox error: {exc!r}", "isolation": None}
        result["id"] = job.get("id")
        write_frame(out, result)


if __name__ == "__main__":
    main()
