"""A pre-started sandbox worker: reads jobs as JSON lines, forks an isolated child per job, reports verdicts."""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import sys
import tempfile
import time

if __package__:
    from promptyard.evals import harness, isolation
else:
    # Started as a bare script (see sandbox._Worker): importing the promptyard package would pull in Flask and
    # pydantic, and every fork would then copy their page tables. A lean worker forks several times faster.
    import harness  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]

# Imported once here so a forked child finds them loaded instead of paying for the import per sample.
PRELOADED = (
    "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing",
    "hashlib", "fractions", "decimal", "statistics", "random", "datetime", "copy", "operator", "json",
)

# Set once at worker start: whether the worker (and so every child) already sits in its own network namespace.
NETWORK_NAMESPACE = [False]
# Set when the interpreter could not be made readable for the sandbox uid: samples then keep uid 0.
NO_UID_DROP: list[str | None] = [None]

_SIGNAL_VERDICTS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "crashed"}


def _child(job: dict, nonce: bytearray, workdir: str, fds: dict, slot: int) -> None:
    """First child: new session and namespaces, then fork the sample as PID 1 and mirror its exit."""
    os.setsid()
    info = isolation.Isolation()
    isolation.enter_namespaces(
        info, use_namespaces=job.get("namespaces", True), have_network_namespace=NETWORK_NAMESPACE[0]
    )
    will_drop = os.geteuid() == 0 and not info.user_namespace and NO_UID_DROP[0] is None
    if will_drop:
        info.uid = isolation.slot_uid(slot)
    elif NO_UID_DROP[0]:
        info.notes.append(NO_UID_DROP[0])
    pid = os.fork()
    if pid == 0:
        _sample(job, nonce, workdir, fds, slot, info)
    # The control pipe is closed in the sample before any of its code runs, so only we can write here.
    os.write(fds["control"], (json.dumps({"isolation": info.to_dict(), "sample_pid": pid}) + "\n").encode())
    os.close(fds["control"])
    nonce[:] = b"\0" * len(nonce)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


def _sample(job: dict, nonce: bytearray, workdir: str, fds: dict, slot: int, info: isolation.Isolation) -> None:
    """Second child (PID 1 of its namespace): lock down, then run the program."""
    try:
        for number in range(1, signal.NSIG):
            if number not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(number, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        os.chdir(workdir)
        isolation.scrub_environment(workdir)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds["stdout"], 1)
        os.dup2(fds["stderr"], 2)
        result_fd = 3
        os.dup2(fds["result"], result_fd)
        os.closerange(4, 1 << 16)  # also closes the control pipe
        limits = isolation.Limits(**job.get("limits", {}))
        isolation.apply_limits(limits, cpu_seconds=int(job["timeout"]) + 1)
        if info.uid:
            isolation.drop_privileges(info, info.uid)
        isolation.die_with_parent()
        if os.getppid() == 1 and not info.pid_namespace:
            os._exit(1)
        sys.dont_write_bytecode = True
        sys.argv = ["<sample>"]
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
    except BaseException:  # noqa: BLE001 - a child must never fall back into the worker's loop
        os._exit(71)
    harness.run_program(job["solution"], job["tests"], result_fd, nonce)
    os._exit(0)


def run_job(job: dict, slot: int) -> dict:
    """Run one job to a verdict; nothing it started outlives this call."""
    started = time.monotonic()
    nonce_text = secrets.token_hex(16)
    nonce = bytearray(nonce_text.encode())
    workdir = tempfile.mkdtemp(prefix="promptyard-sample-")
    uid = isolation.slot_uid(slot)
    if os.geteuid() == 0:
        os.chown(workdir, uid, uid)
    pipes = {name: os.pipe() for name in ("stdout", "stderr", "result", "control")}
    pid = os.fork()
    if pid == 0:
        try:
            for read_end, _ in pipes.values():
                os.close(read_end)
            _child(job, nonce, workdir, {name: w for name, (_, w) in pipes.items()}, slot)
        finally:
            os._exit(70)
    for _, write_end in pipes.values():
        os.close(write_end)
    readers = {r: name for name, (r, _) in pipes.items()}
    captured = {name: bytearray() for name in pipes}
    caps = {"stdout": int(job.get("limits", {}).get("output_bytes", 64 * 1024)), "result": 1 << 16}
    caps["stderr"] = caps["stdout"]
    caps["control"] = 1 << 16
    truncated = set()
    pidfd = os.pidfd_open(pid)
    isolated_pids = False
    deadline = started + float(job["timeout"])
    timed_out = False
    exited = False
    try:
        while readers:
            now = time.monotonic()
            if exited:
                # The sample is gone; whatever still holds a pipe open is a stray, killed below. Drain briefly.
                wait = max(0.0, min(0.2, deadline + 1 - now))
            else:
                wait = max(0.0, deadline - now)
            ready, _, _ = select.select(list(readers) + ([] if exited else [pidfd]), [], [], wait)
            if not ready:
                if exited:
                    break
                timed_out = True
                _kill_group(pid)
                exited = True
                continue
            for fd in ready:
                if fd == pidfd:
                    exited = True
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    del readers[fd]
                    os.close(fd)
                    continue
                name = readers[fd]
                room = caps[name] - len(captured[name])
                if room > 0:
                    captured[name] += chunk[:room]
                if len(chunk) > room:
                    truncated.add(name)
    finally:
        _kill_group(pid)
        _, status = os.waitpid(pid, 0)
        control = _control_message(captured["control"])
        isolated_pids = bool(control.get("isolation", {}).get("pid_namespace"))
        _finish_sample(control.get("sample_pid"))
        os.close(pidfd)
        for fd in readers:
            os.close(fd)
        if not isolated_pids:
            # Without a PID namespace a double-forked daemon escapes the process group: kill by uid instead.
            isolation.kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)
    result = _interpret(status, captured["result"].decode(errors="replace"), nonce_text, timed_out)
    result["isolation"] = control.get("isolation")
    result.update(
        stdout=captured["stdout"].decode(errors="replace"),
        stderr=captured["stderr"].decode(errors="replace"),
        truncated=sorted(truncated),
        duration=round(time.monotonic() - started, 4),
    )
    return result


def _control_message(raw: bytearray) -> dict:
    try:
        message = json.loads(bytes(raw).split(b"\n", 1)[0] or b"{}")
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _finish_sample(sample_pid: int | None) -> None:
    """SIGKILL the sample (PID 1 of its namespace) and wait until it, and so its whole namespace, is gone."""
    if not sample_pid:
        return
    try:
        pidfd = os.pidfd_open(sample_pid)
    except ProcessLookupError:
        return
    try:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        select.select([pidfd], [], [], 10)
    finally:
        os.close(pidfd)
    # As a child subreaper we inherit the sample when its first parent died before reaping it.
    try:
        os.waitpid(sample_pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _interpret(status: int, result_text: str, nonce: str, timed_out: bool) -> dict:
    """Turn the child's exit status and its nonce-signed report into a verdict."""
    outcome = None
    for line in result_text.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict):
            continue
        if message.get("nonce") == nonce:
            outcome = message
    base: dict = {}
    if timed_out:
        return {**base, "verdict": "timeout", "detail": "timed out"}
    if outcome is not None:
        outcome.pop("nonce", None)
        verdict = outcome.pop("verdict")
        detail = "passed" if verdict == "passed" else f"{outcome.get('type', '')}: {outcome.get('message', '')}"
        return {**base, "verdict": verdict, "detail": detail, "exception": outcome.get("type")}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if code > 128 and (code - 128) in _SIGNAL_VERDICTS:
        sig = signal.Signals(code - 128)
        return {**base, "verdict": _SIGNAL_VERDICTS[sig], "detail": f"killed by {sig.name}"}
    if code > 128:
        return {**base, "verdict": "crashed", "detail": f"killed by signal {code - 128}"}
    # Exit status 0 without the nonce is an early exit (os._exit(0), a killed parent): not a pass.
    return {**base, "verdict": "crashed", "detail": f"exited with status {code} before the tests finished"}


def _expose_interpreter() -> None:
    """Make the interpreter importable for the unprivileged sample uid; without that, stay root (and say so)."""
    paths = [sys.base_prefix, sys.prefix, *[p for p in sys.path if p]]
    try:
        isolation.expose_python(paths)
    except OSError as exc:
        NO_UID_DROP[0] = f"interpreter not readable by an unprivileged uid and not exposable ({exc})"


def main() -> None:
    """Serve jobs from stdin until it closes; one JSON line in, one JSON line out."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    slot = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # Orphans of a sample are re-parented to us (not to init), so we can reap and account for them.
    isolation.become_subreaper()
    if os.environ.get("PROMPTYARD_SANDBOX_NAMESPACES", "1") == "1":
        NETWORK_NAMESPACE[0] = isolation.enter_network_namespace()
        if os.geteuid() == 0:
            _expose_interpreter()
    elif os.geteuid() == 0 and any(isolation._closed_ancestor(p) for p in (sys.base_prefix, sys.prefix)):
        NO_UID_DROP[0] = "interpreter not readable by an unprivileged uid without a mount namespace"
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
