"""The worker's side of a running sample: drain its pipes until the judge ends or time is up, then make sure
nothing the sample started or wrote outlives it."""

from __future__ import annotations

import os
import select
import signal
import time


def supervise(judge: int, solution: int, readers: dict[int, str], caps: dict[str, int], deadline: float):
    """Drain the pipes (capped) until the judge exits or the deadline passes; both processes are then killed and
    reaped. Returns (judge status, solution status, captured, truncated, timed_out)."""
    captured = {name: bytearray() for name in caps}
    truncated: set[str] = set()
    timed_out = exited = False
    pidfd = os.pidfd_open(judge)
    poller = select.poll()
    for fd in [*readers, pidfd]:
        poller.register(fd, select.POLLIN)
    try:
        while readers:
            now = time.monotonic()
            # Once the judge is gone, whatever still holds a pipe (the solution, a stray) gets a moment to flush.
            wait = min(0.2, deadline + 1 - now) if exited else deadline - now
            ready = poller.poll(max(0, int(wait * 1000)))
            if not ready:
                if exited:
                    break
                timed_out = exited = True
                kill(judge)
                kill(solution)
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
    statuses = []
    for pid in (judge, solution):
        kill(pid)
        statuses.append(os.waitpid(pid, 0)[1])
    return statuses[0], statuses[1], captured, truncated, timed_out


def kill(pid: int) -> None:
    # Outside a PID namespace the sample leads its own process group; whatever left it is killed in cleanup.
    for action in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            action()
        except (ProcessLookupError, PermissionError):
            pass


def cleanup(pid_namespace: bool) -> None:
    """After the sample's processes are reaped: no process they started may outlive them."""
    if pid_namespace:
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
