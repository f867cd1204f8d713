"""A pre-started sandbox worker: reads jobs as marshal frames, has each job's solution process forked by its
forker (forker.py, harness.py), the tests run by its judge (judge.py), and reports the judge's verdict.

Started as a bare script with `python -I -S` (see sandbox._Worker) and kept lean on purpose: the forker and the
judge are forks of this process, so every solution process is a fork of its memory, and on virtual machines a fork
costs in proportion to the memory mapped.
"""

from __future__ import annotations

import marshal
import os
import resource
import signal
import struct
import sys
import time

if __package__:
    from promptyard.evals import (bridge, cgroups, forker, harness, isolation, judge, judgeproc, lockdown, reaper,
                                  rootfs, typehints)
else:
    import bridge  # type: ignore[no-redef]
    import cgroups  # type: ignore[no-redef]
    import forker  # type: ignore[no-redef]
    import harness  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]
    import judge  # type: ignore[no-redef]
    import judgeproc  # type: ignore[no-redef]
    import lockdown  # type: ignore[no-redef]
    import reaper  # type: ignore[no-redef]
    import rootfs  # type: ignore[no-redef]
    import typehints  # type: ignore[no-redef]

STATE = lockdown.STATE

# Imported once here so a forked child finds them loaded (HumanEval prompts import typing, which is slow to
# import); heavier modules (decimal, hashlib...) would make every fork dearer than importing them when used.
PRELOADED = ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string")

_SIGNAL_VERDICTS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "crashed"}
_REPORTED_VERDICTS = ("failed", "error", "memory")
# The exception's text is cut to this in `detail` (the `message` field keeps it whole).
DETAIL_MAX = 500


def _lock_down(job: dict, folder: str, uid, fds: list[int]) -> None:
    """In the judge's process: its folder, its fds (0: /dev/null, then `fds` from 1 on), limits, uid. (A solution
    process is locked down by the forker, see forker.py.)"""
    # Signal dispositions stay the interpreter's own (SIGPIPE and SIGXFSZ ignored, as in any Python program).
    if not STATE["pid_namespace"]:
        os.setsid()  # its own process group, like a solution's
    os.chdir(folder)
    isolation.place_fds(dict(enumerate(fds, start=1)))
    # The judge serves many samples: no CPU-time limit of its own (each sample's deadline stops it).
    isolation.apply_limits(job["limits"], cpu_seconds=resource.RLIM_INFINITY)
    if uid:
        isolation.drop_privileges(uid)
    if not STATE["pid_namespace"]:
        # Inside the worker's PID namespace the kernel kills every sample when the worker (its init) dies.
        isolation.die_with_parent()


def _judge_process(job, uid, fds) -> None:
    try:
        _lock_down(job, STATE["judge_dir"], uid, fds)
        os.environ["HOME"] = os.environ["TMPDIR"] = STATE["judge_dir"]
        isolation.not_dumpable()  # no ptrace, no /proc/PID/mem for anyone but root (a same-uid solution included)
    except BaseException:  # noqa: BLE001
        os._exit(71)
    judge.serve(3, 4, 5, 6, 7)
    os._exit(0)


def _judge(job: dict, nonce: str) -> "judgeproc.JudgeProcess | None":
    """The worker's judge, told that a sample begins (started anew if it died or does not answer)."""
    for _ in range(2):
        current = STATE.get("judge")
        if current is None:
            _drop_forker()  # it holds the old judge's end of the bridge
            uid = STATE["uids"][1] if STATE["uids"] else None
            current = STATE["judge"] = judgeproc.JudgeProcess(
                lambda fds: _fork(_judge_process, job, uid, [*fds, STATE["tests_fd"]]))
        if current.start(nonce, job["id"]):
            return current
        current.close()
        STATE["judge"] = None
    return None


def _forker(judge_: "judgeproc.JudgeProcess") -> "forker.Forker":
    """The worker's forker (started with the judge's end of the bridge, which it hands to every solution)."""
    current = STATE.get("forker")
    if current is None:
        uid = STATE["uids"][0] if STATE["uids"] else None
        current = STATE["forker"] = forker.Forker(judge_.solution_fds(), uid, STATE["budget"], STATE["pid_namespace"])
    return current


def _drop_forker() -> None:
    current = STATE.pop("forker", None)
    if current is not None:
        current.close()


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
    """Run one job to a verdict; nothing the solution started outlives this call."""
    started = time.monotonic()
    nonce_text = os.urandom(16).hex()
    workdir = _fresh_folder(nonce_text)
    uids = STATE["uids"] or (None, None)
    if uids[0]:
        os.chown(workdir, uids[0], uids[0])
    judge_ = _judge(job, nonce_text)
    forker_ = None
    if judge_ is not None:
        try:
            forker_ = _forker(judge_)
        except OSError:
            pass
    if forker_ is None:
        reaper.remove_tree(workdir)
        return {"verdict": "crashed", "detail": "the sandbox's judge could not be started" if judge_ is None
                else "the sandbox's forker could not be started", "isolation": STATE["isolation_report"]}
    budget = STATE["budget"]
    counters = budget.counters() if budget else None
    cap = int(job.get("limits", {}).get("output_bytes", 64 * 1024))
    try:
        forker_.submit(workdir, None if workdir == STATE["workdir"] else workdir, job, job.get("names"))
        run = reaper.supervise(forker_, judge_, cap, started + float(job["timeout"]), nonce_text, budget)
    except OSError:
        run = reaper.Run()
        run.forker_lost = run.judge_lost = True  # its jobs pipe is broken: it is gone (and the judge waits)
        reaper.cleanup((judge_.pid, forker_.pid))
    except BaseException:
        reaper.cleanup((judge_.pid, forker_.pid))
        raise
    finally:
        reaper.remove_tree(workdir)
        reaper.empty_folders(STATE["temporary"])
    if run.judge_lost:
        run.judge_status = judge_.close()
        STATE["judge"] = None
        _drop_forker()
    if run.forker_lost:
        _drop_forker()
    after = budget.counters() if budget else None
    # Over budget: the kernel killed one of its processes, or it hit the limit and ran out of time (reclaiming).
    over_budget = bool(budget) and (after[0] > counters[0] or (run.timed_out and after[1] > counters[1]))
    outcome = _verdict(run, nonce_text, over_budget)
    outcome.update(
        stdout=run.captured["stdout"].decode(errors="replace"),
        stderr=run.captured["stderr"].decode(errors="replace"),
        truncated=sorted(run.truncated),
        duration=round(time.monotonic() - started, 4),
        isolation=STATE["isolation_report"],
    )
    return outcome


def _verdict(run, nonce: str, over_budget: bool) -> dict:
    """The judge's verdict; when it has none because the solution's process ended mid-conversation, how that
    process ended; `memory` whenever the kernel killed one of the sample's processes over its budget."""
    if over_budget:
        return {"verdict": "memory", "detail": "over the sample's memory budget (killed by the kernel)",
                "exception": None}
    report = run.report
    fields = report.split("\t") if report else []
    if not run.timed_out and len(fields) == 4 and fields[0] == nonce and fields[1] == "broken":
        return {"verdict": "crashed", "detail": "the solution's process broke the protocol with the judge"}
    if not run.timed_out and len(fields) == 4 and fields[0] == nonce and fields[1] == "ended":
        if run.solution_status is None:
            return {"verdict": "crashed", "detail": "the sandbox's forker stopped before the solution ended"}
        return _interpret(run.solution_status, "", nonce, False)
    if run.forker_lost and report is None and not run.timed_out:
        return {"verdict": "crashed", "detail": "the sandbox's forker stopped before the tests ended"}
    if report is None and not run.timed_out and run.judge_status is not None:
        return _interpret(run.judge_status, "", nonce, False)
    return _interpret(run.solution_status or 0, (report or "") + "\n", nonce, run.timed_out)


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
    own = (harness, isolation, judge, bridge, lockdown, reaper, rootfs, cgroups, forker, judgeproc, typehints,
           sys.modules[__name__])
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
    # The scorer's pipe of tests for the judge: held for it (and handed to each judge started), never read here.
    STATE["tests_fd"] = int(os.environ["PROMPTYARD_SANDBOX_TESTS_FD"])
    setup(os.environ.get("PROMPTYARD_SANDBOX_NAMESPACES", "1") == "1", os.environ["PROMPTYARD_SANDBOX_SCRATCH"],
          memory, processes, os.environ["PROMPTYARD_SANDBOX_CGROUP"])
    reported = False
    while (job := read_frame(jobs)) is not None:
        try:
            result = run_job(job)
        except Exception as exc:  # noqa: BLE001 - report harness trouble as a crash, keep serving
            result = {"verdict": "crashed", "detail": f"sandbox error: {exc!r}", "isolation": None}
        result["id"] = job.get("id")
        if result.get("isolation") is STATE["isolation_report"]:
            if reported:
                del result["isolation"]  # the same report as in an earlier result: the scorer keeps that one
            reported = True
        write_frame(out, result)
    # Stopped and reaped here (not left to the kernel when the namespace's init exits), so that their CPU time
    # counts in the scorer's resource usage like the rest of the sandbox's.
    _drop_forker()
    if STATE.get("judge") is not None:
        STATE.pop("judge").close()


if __name__ == "__main__":
    main()
