"""A pre-started sandbox worker: reads jobs as JSON lines, forks an isolated child per job, reports verdicts.

Started as a bare script with `python -I -S` (see sandbox._Worker) and kept lean on purpose: every sample is a
fork of this process, and on virtual machines a fork costs in proportion to the memory mapped here.
"""

from __future__ import annotations

import json
import os
import select
import signal
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
STATE = {"network_namespace": False, "no_uid_drop": None, "namespaces": True, "scratch": "/tmp"}

_SIGNAL_VERDICTS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "crashed"}


def _sample(job: dict, nonce: bytearray, workdir: str, fds: dict, info: isolation.Isolation) -> None:
    """The sample's process (PID 1 of its own namespace when available): lock down, then run the program."""
    try:
        # Signal dispositions stay the interpreter's own (SIGPIPE and SIGXFSZ ignored, as in any Python program):
        # the worker installs no handlers of its own.
        os.setsid()
        os.chdir(workdir)
        isolation.scrub_environment(workdir)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds["stdout"], 1)
        os.dup2(fds["stderr"], 2)
        result_fd = 3
        os.dup2(fds["result"], result_fd)
        os.closerange(4, 1 << 16)
        limits = isolation.Limits(**job.get("limits", {}))
        isolation.apply_limits(limits, cpu_seconds=int(job["timeout"]) + 1)
        if info.uid:
            isolation.drop_privileges(info, info.uid)
        isolation.die_with_parent()
        sys.argv = ["<sample>"]
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
    except BaseException:  # noqa: BLE001 - a child must never fall back into the worker's loop
        os._exit(71)
    harness.run_program(job["solution"], job["tests"], result_fd, nonce)
    os._exit(0)


def _isolation_for(slot: int) -> isolation.Isolation:
    info = isolation.Isolation(net_namespace=STATE["network_namespace"])
    if os.geteuid() == 0 and STATE["no_uid_drop"] is None:
        info.uid = isolation.slot_uid(slot)
    elif STATE["no_uid_drop"]:
        info.notes.append(STATE["no_uid_drop"])
    if not STATE["namespaces"]:
        info.notes.append("namespaces disabled by configuration")
    return info


def _fork(info: isolation.Isolation) -> int:
    """Fork the sample, straight into a new PID namespace when the kernel allows (one fork, no middleman)."""
    if STATE["namespaces"]:
        pid = isolation.fork_into_pid_namespace()
        if pid is not None:
            info.pid_namespace = True
            return pid
        info.notes.append("no PID namespace (clone refused); strays are killed by uid or process group")
    return os.fork()


def run_job(job: dict, slot: int) -> dict:
    """Run one job to a verdict; nothing it started outlives this call."""
    started = time.monotonic()
    nonce_text = os.urandom(16).hex()
    nonce = bytearray(nonce_text.encode())
    workdir = f"{STATE['scratch']}/promptyard-sample-{os.getpid()}-{nonce_text[:12]}"
    os.mkdir(workdir, 0o700)
    info = _isolation_for(slot)
    if info.uid:
        os.chown(workdir, info.uid, info.uid)
    pipes = {name: os.pipe() for name in ("stdout", "stderr", "result")}
    pid = _fork(info)
    if pid == 0:
        try:
            for read_end, _ in pipes.values():
                os.close(read_end)
            _sample(job, nonce, workdir, {name: w for name, (_, w) in pipes.items()}, info)
        finally:
            os._exit(70)
    nonce[:] = b"\0" * len(nonce)
    for _, write_end in pipes.values():
        os.close(write_end)
    try:
        status, captured, truncated, timed_out = _supervise(pid, pipes, job, started)
    finally:
        _cleanup(pid, info)
        _remove_tree(workdir)
    result = _interpret(status, captured["result"].decode(errors="replace"), nonce_text, timed_out)
    result.update(
        stdout=captured["stdout"].decode(errors="replace"),
        stderr=captured["stderr"].decode(errors="replace"),
        truncated=sorted(truncated),
        duration=round(time.monotonic() - started, 4),
        isolation=info.to_dict(),
    )
    return result


def _supervise(pid: int, pipes: dict, job: dict, started: float):
    """Drain the pipes (capped) until the sample exits or its time is up; returns its wait status."""
    readers = {r: name for name, (r, _) in pipes.items()}
    captured = {name: bytearray() for name in pipes}
    cap = int(job.get("limits", {}).get("output_bytes", 64 * 1024))
    caps = {"stdout": cap, "stderr": cap, "result": 1 << 16}
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
    # SIGKILL to PID 1 of a namespace (from outside it) takes the whole namespace down with it.
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _cleanup(pid: int, info: isolation.Isolation) -> None:
    """After the sample is reaped: without a PID namespace, hunt strays by uid and reap re-parented orphans."""
    if not info.pid_namespace:
        if info.uid:
            isolation.kill_uid(info.uid)
        while True:
            try:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if reaped == 0:
                break


def _remove_tree(path: str) -> None:
    """Delete the sample's folder (symlinks are removed, never followed)."""
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


def _interpret(status: int, result_text: str, nonce: str, timed_out: bool) -> dict:
    """Turn the child's exit status and its nonce-signed report into a verdict."""
    outcome = None
    for line in result_text.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("nonce") == nonce:
            outcome = message
    if timed_out:
        return {"verdict": "timeout", "detail": "timed out"}
    if outcome is not None:
        verdict = outcome["verdict"]
        detail = "passed" if verdict == "passed" else f"{outcome.get('type', '')}: {outcome.get('message', '')}"
        return {"verdict": verdict, "detail": detail, "exception": outcome.get("type")}
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        return {"verdict": _SIGNAL_VERDICTS.get(sig, "crashed"), "detail": f"killed by {sig.name}"}
    code = os.WEXITSTATUS(status)
    if code == 71:
        return {"verdict": "crashed", "detail": "the sandbox could not be set up for this sample"}
    # Exit status 0 without the nonce is an early exit (os._exit(0), a killed parent): not a pass.
    return {"verdict": "crashed", "detail": f"exited with status {code} before the tests finished"}


def _expose_interpreter() -> None:
    """Make the interpreter importable for the unprivileged sample uid; without that, stay root (and say so)."""
    paths = [sys.base_prefix, sys.prefix, *[p for p in sys.path if p]]
    try:
        isolation.expose_python(paths)
    except OSError as exc:
        STATE["no_uid_drop"] = f"interpreter not readable by an unprivileged uid and not exposable ({exc})"


def setup(slot: int, namespaces: bool) -> None:
    """Once per worker: network namespace, interpreter exposure, subreaper, preloaded modules."""
    import importlib

    STATE["namespaces"] = namespaces
    if namespaces:
        STATE["network_namespace"] = isolation.enter_network_namespace()
        if os.geteuid() == 0:
            try:
                isolation.private_mounts()
                STATE["scratch"] = isolation.mount_scratch()
            except OSError as exc:
                STATE["no_uid_drop"] = f"no private mount namespace ({exc})"
            else:
                _expose_interpreter()
    elif os.geteuid() == 0 and any(isolation._closed_ancestor(p) for p in (sys.base_prefix, sys.prefix)):
        STATE["no_uid_drop"] = "interpreter not readable by an unprivileged uid without a mount namespace"
    # Orphans of a sample are re-parented to us (not to init), so we can reap them.
    isolation.become_subreaper()
    if os.geteuid() == 0 and STATE["no_uid_drop"] is None:
        isolation.claim_uid()
    for name in PRELOADED:
        importlib.import_module(name)
    import gc

    # Objects that exist now are never collected in a child: its garbage collector leaves their pages shared.
    gc.freeze()


def main() -> None:
    """Serve jobs from stdin until it closes; one JSON line in, one JSON line out."""
    slot = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    setup(slot, os.environ.get("PROMPTYARD_SANDBOX_NAMESPACES", "1") == "1")
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            result = run_job(job, slot)
        except Exception as exc:  # noqa: BLE001 - report harness trouble as a crash, keep serving
            result = {"verdict": "crashed", "detail": f"sandbox error: {exc!r}", "isolation": None}
        result["id"] = job.get("id")
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
