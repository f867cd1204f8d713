"""The worker's side of a running sample: drain its pipes until the judge ends or time is up, then make sure
nothing the sample started or wrote outlives it."""

from __future__ import annotations

import os
import select
import signal
import time

if __package__:
    from promptyard.evals.forker import ForkerLost
else:
    from forker import ForkerLost  # type: ignore[no-redef]


class Run:
    """What supervising one sample found."""

    def __init__(self) -> None:
        self.captured = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated: set[str] = set()
        self.timed_out = False
        self.report: str | None = None
        self.solution_status: int | None = None
        self.judge_status: int | None = None
        # The judge died, overran the deadline or could not be told the solution ended: it is started anew.
        self.judge_lost = False
        # The forker died or stopped answering: no wait status for the solution; it is started anew.
        self.forker_lost = False


def supervise(forker, judge, cap: int, deadline: float, nonce: str, budget=None) -> Run:
    """Drain the solution's and the judge's output (capped) until the judge reports or the deadline passes, then
    stop the solution's process.

    When the solution's process exits first (the forker says so), whatever it started is killed and the judge is
    told (it then reports `ended`, or its verdict if the tests were already done with the solution)."""
    run = Run()
    readers = {forker.out: "stdout", forker.err: "stderr", judge.out: "stdout", judge.err: "stderr",
               judge.result: "result"}
    keep = (judge.pid, forker.pid)
    tasks = budget.tasks if budget is not None else None
    report = bytearray()
    poller = select.poll()
    for fd in [*readers, forker.ended, forker.pidfd, judge.pidfd]:
        poller.register(fd, select.POLLIN)
    try:
        while b"\n" not in report and not run.judge_lost:
            wait = deadline - time.monotonic()
            ready = poller.poll(max(0, int(wait * 1000))) if wait > 0 else []
            if not ready:
                run.timed_out = run.judge_lost = True  # the judge may be inside the tests: it is stopped too
                break
            for fd, _ in ready:
                if fd == forker.ended:
                    poller.unregister(fd)
                    run.solution_status = forker.wait_status()
                    cleanup(keep, tasks)  # nothing of the solution's may write to the bridge after the notice
                    if not judge.solution_ended():
                        run.judge_lost = True
                elif fd == forker.pidfd:
                    raise ForkerLost("the forker exited")
                elif fd == judge.pidfd:
                    run.judge_lost = True
                else:
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        poller.unregister(fd)
                        if fd in (judge.out, judge.err, judge.result):
                            run.judge_lost = True
                        continue
                    if readers[fd] == "result":
                        report += chunk
                    else:
                        _keep(run, readers[fd], chunk, cap)
        if run.solution_status is None:
            run.solution_status = forker.stop(forker.solution_pid())
    except ForkerLost:
        # The solution, if alive, is ours now (we are the subreaper): cleanup kills it. The judge may be waiting on
        # it mid-conversation: it is started anew too.
        run.forker_lost = run.judge_lost = True
    cleanup(keep, tasks)
    for fd in (forker.out, forker.err):  # the sample's processes are all gone: what they wrote is in the pipe
        _drain(run, fd, readers[fd], cap)
    if not run.judge_lost:
        for fd in (judge.out, judge.err):  # flushed before its report
            _drain(run, fd, readers[fd], cap)
    if b"\n" in report:
        run.report = bytes(report).split(b"\n", 1)[0].decode(errors="replace")
    return run


def _keep(run: Run, name: str, chunk: bytes, cap: int) -> None:
    room = cap - len(run.captured[name])
    if room > 0:
        run.captured[name] += chunk[:room]
    if len(chunk) > room:
        run.truncated.add(name)


def _drain(run: Run, fd: int, name: str, cap: int) -> None:
    """Read what is in the pipe now (a non-blocking one: its writers are done)."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            return
        _keep(run, name, chunk, cap)


def cleanup(keep: tuple[int, ...], tasks=None) -> None:
    """Kill whatever the solution left running, however detached (setsid, double fork), sparing the judge and the
    forker (`keep`). `tasks()`, when given, counts the processes in the sample's cgroup: the forker alone there
    means nothing is left (the usual case), without listing our children.

    We are the subreaper of everything a sample forks (and PID 1 of its namespace when there is one): an orphan is
    re-parented to us, never to init. So: kill our children but the judge, reap them (their children are ours
    from then on), and repeat until none is left.
    """
    if tasks is not None and tasks() == 1:
        return
    while True:
        with open("/proc/thread-self/children", "rb") as handle:
            children = [int(pid) for pid in handle.read().split() if int(pid) not in keep]
        if not children:
            return
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


def empty_folders(folders: dict) -> None:
    """Remove what the sample left in the worker's own /tmp, /var/tmp, /dev/shm and the judge's folder.

    `folders` maps each folder to (its size, the names it held before any sample ran). On tmpfs a folder's size
    counts its entries, so one stat per folder tells whether there is anything to do.
    """
    for folder, (size, kept) in folders.items():
        if os.stat(folder).st_size != size:
            for name in os.listdir(folder):
                if name not in kept:
                    remove(f"{folder}/{name}")


def remove(path: str) -> None:
    """Delete a file, link or folder the sample left (symlinks are removed, never followed)."""
    try:
        os.unlink(path)
    except IsADirectoryError:
        remove_tree(path)
    except OSError:
        pass


def remove_tree(path: str) -> None:
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
