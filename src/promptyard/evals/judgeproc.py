"""The worker's handle on its judge process (see judge.py): started once, kept for the worker's samples, and
started again when it dies, overruns a deadline or cannot be trusted to be idle."""

from __future__ import annotations

import marshal
import os
import select
import signal

if __package__:
    from promptyard.evals import bridge
else:
    import bridge  # type: ignore[no-redef]


class JudgeProcess:
    """Pipes: control (worker -> judge), result, stdout, stderr (judge -> worker); to_solution and from_solution
    are the solution's ends of the bridge, which the worker's forker holds and every solution process inherits."""

    def __init__(self, start_child) -> None:
        control, result, out, err, to_solution, from_solution = (os.pipe() for _ in range(6))
        # The child gets: 1 stdout, 2 stderr, 3 from the solution, 4 to the solution, 5 result, 6 control, and
        # 7 the scorer's tests (added by the worker).
        self.pid = start_child([out[1], err[1], from_solution[0], to_solution[1], result[1], control[0]])
        for fd in (out[1], err[1], to_solution[1], result[1], control[0]):
            os.close(fd)
        # Kept to empty the pipe between samples, while the judge waits on its control pipe (never on this one).
        self.stale = from_solution[0]
        self.control, self.result, self.out, self.err = control[1], result[0], out[0], err[0]
        self.to_solution, self.from_solution = to_solution[0], from_solution[1]
        self.pidfd = os.pidfd_open(self.pid)
        # Only the worker reads these: never blocking, so that draining them needs no poll.
        for fd in (self.out, self.err):
            os.set_blocking(fd, False)
        self._leftovers = select.poll()  # one poll a sample tells whether start() has anything to clear
        for fd in (self.to_solution, self.stale, self.pidfd):
            self._leftovers.register(fd, select.POLLIN)

    def solution_fds(self) -> list[int]:
        """The bridge's ends for a solution process: 3 (requests from the judge), 4 (answers to it)."""
        return [self.to_solution, self.from_solution]

    def start(self, nonce: str, job_id: int) -> bool:
        """Empty the bridge of what the last solution (dead and reaped) left in it, then tell the judge a sample
        begins; False when the judge is gone."""
        for fd, _ in self._leftovers.poll(0):
            if fd == self.pidfd:
                return False  # the judge has exited
            # Requests the judge sent a solution that is gone, or what that solution wrote and the judge did not
            # read.
            _drain(fd)
        try:
            bridge.send(self.control, b"J", marshal.dumps((nonce, job_id)))
        except OSError:
            return False
        return True

    def solution_ended(self) -> bool:
        """Tell a judge waiting on the solution that it is gone; False when the pipe is full (the judge is not
        reading: it must be stopped)."""
        os.set_blocking(self.from_solution, False)  # only the worker holds this end now (the solution is reaped)
        try:
            bridge.send(self.from_solution, b"X", b"")
            return True
        except OSError:
            return False
        finally:
            os.set_blocking(self.from_solution, True)  # the next solution writes to it blocking

    def close(self) -> int | None:
        """Stop the judge; its wait status."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            status = os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            status = None
        for fd in (self.control, self.result, self.out, self.err, self.to_solution, self.from_solution, self.stale,
                   self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        return status


def _drain(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while poller.poll(0):
        if not os.read(fd, 1 << 16):
            return
