"""Issue 13's findings as an attacker would try them: host sockets, host files and processes, memory across
processes, forged verdicts. Each asserts what the sandbox must hold, or that the isolation report names the
protection the kernel refused."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from promptyard.evals.isolation import Limits
from promptyard.evals.sandbox import Program, Sandbox

REPO = Path(__file__).resolve().parents[2]


def run(box, solution: str, tests: str = "assert True\n"):
    return box.run(Program(solution, tests))


def has_root_filesystem(result) -> bool:
    """Whether the sample saw its own minimal root; when not, the report must say so."""
    if result.isolation and result.isolation.get("root_filesystem"):
        return True
    assert any("root filesystem" in note for note in result.isolation["notes"]), result.isolation
    return False


class UnixServer:
    """A Unix socket server on this machine that records every connection it accepts."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.accepted: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        if not path.startswith("\0"):
            os.chmod(path, 0o777)  # as /run/postgresql/.s.PGSQL.5432 is: anyone may connect
        self.server.listen(5)
        self.server.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(1.0)
                try:
                    self.accepted.append(connection.recv(100))
                except OSError:
                    self.accepted.append(b"")

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.server.close()


CONNECT = (
    "import socket\n"
    "def connect(path):\n"
    "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "    s.settimeout(2)\n"
    "    s.connect(path)\n"
    "    s.sendall(b'SELECT datname FROM pg_database')\n"
    "    return True\n"
)


@pytest.mark.parametrize("where", ["/run", "/tmp", "/var/tmp", "abstract"])
def test_host_unix_sockets_are_unreachable(sandbox, where):
    if where == "abstract":
        folder, path = None, f"\0promptyard-test-{uuid.uuid4().hex}"
    else:
        folder = tempfile.mkdtemp(dir=where, prefix="promptyard-socket-")
        os.chmod(folder, 0o755)
        path = f"{folder}/.s.PGSQL.5432"
    server = UnixServer(path)
    try:
        result = run(sandbox, CONNECT + f"connect({path!r})\n", "assert True\n")
    finally:
        server.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    assert server.accepted == [], result
    assert result.verdict == "error", result.detail
    assert result.exception in ("FileNotFoundError", "ConnectionRefusedError", "PermissionError")


def test_the_machines_own_sockets_are_not_there(sandbox):
    probe = ("import os\nfound = [os.path.join(r, n) for top in ('/run', '/var/run', '/tmp', '/var/lib')\n"
             "         for r, _, names in os.walk(top) for n in names if n.startswith('.s.') or n.endswith('.sock')]\n"
             "print(found)\n")
    result = run(sandbox, probe)
    assert result.verdict == "passed", result.detail
    if has_root_filesystem(result):
        assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("top", ["/srv", "/var/lib", "/home", "/run"])
def test_a_canary_outside_tmp_cannot_be_read(sandbox, top):
    folder = tempfile.mkdtemp(dir=top, prefix="promptyard-canary-")
    try:
        os.chmod(folder, 0o755)
        canary = Path(folder) / "canary.txt"
        canary.write_text("secret")
        canary.chmod(0o644)
        result = run(sandbox, f"print(open({str(canary)!r}).read())\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert "secret" not in result.stdout
    if has_root_filesystem(result):
        assert (result.verdict, result.exception) == ("error", "FileNotFoundError")


def test_the_project_checkout_and_host_folders_are_invisible(sandbox):
    probe = (
        "import os\n"
        f"print(os.path.exists({str(REPO / 'README.md')!r}), os.path.exists({str(REPO / '.git')!r}))\n"
        "print(sorted(os.listdir('/')))\n"
        "print([p for p in ('/run', '/var/run', '/var/lib', '/home', '/srv', '/etc/passwd', '/etc/postgresql', '/sys')\n"
        "       if os.path.exists(p)])\n"
    )
    result = run(sandbox, probe)
    assert result.verdict == "passed", result.detail
    if not has_root_filesystem(result):
        return
    exists, listing, present = result.stdout.splitlines()
    assert exists == "False False"
    assert present == "[]"
    assert not set(eval(listing)) & {"run", "home", "srv", "boot", "mnt", "opt", "media", "sys"}


def test_host_processes_are_invisible(sandbox):
    probe = (
        "import os\n"
        "pids = [e for e in os.listdir('/proc') if e.isdigit()]\n"
        "print(len(pids))\n"
        f"print(os.path.exists('/proc/{os.getpid()}/cmdline'))\n"
    )
    result = run(sandbox, probe)
    assert result.verdict == "passed", result.detail
    count, mine = result.stdout.splitlines()
    if not result.isolation["pid_namespace"]:
        assert any("PID namespace" in note for note in result.isolation["notes"])
        return
    # Only the sample itself (and at most what it started): never the machine's hundreds of processes.
    assert int(count) <= 2, result.stdout
    assert mine == "False"


MEMORY_HOG = (
    "import os, time\n"
    "children = []\n"
    "for _ in range(3):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        block = b'x' * (1 << 30)\n"
    "        time.sleep(2)\n"
    "        os._exit(0)\n"
    "    children.append(pid)\n"
    "block = b'x' * (1 << 30)\n"
    "for pid in children:\n"
    "    os.waitpid(pid, 0)\n"
)


def test_memory_is_one_budget_for_all_the_samples_processes():
    limits = Limits(memory=1536 * 1024**2)
    # The hog takes 1 to 2 s alone; once, under the whole suite's load, it ran 6 s without reaching the budget.
    with Sandbox(1, timeout=20.0, limits=limits) as box:
        first = run(box, "x = 1\n")
        if not first.isolation.get("memory_budget"):
            # No cgroup: the report says memory is bounded per process only (and we do not eat 4 GiB here).
            assert any("per process" in note for note in first.isolation["notes"]), first.isolation
            return
        hog = run(box, MEMORY_HOG)
        after = run(box, "block = b'x' * (512 << 20)\nsize = len(block)\n", "assert size == 512 << 20\n")
    assert hog.verdict == "memory", (hog.verdict, hog.detail)
    assert after.verdict == "passed", after.detail


def test_a_fork_the_budget_refuses_is_a_crash_and_the_worker_carries_on():
    # No room in the process budget for even the solution's own process: the forker cannot fork it.
    with Sandbox(1, timeout=3.0, limits=Limits(processes=0)) as box:
        results = [run(box, "x = 1\n", "assert x == 1\n") for _ in range(2)]
    budget = results[0].isolation and results[0].isolation.get("memory_budget")
    for result in results:
        if budget in ("v1", "v2"):  # a pids controller: the fork itself is refused
            assert (result.verdict, result.detail) == ("crashed", "the sandbox could not be set up for this sample")
        else:  # only the rlimit, applied after the fork
            assert result.verdict == "passed", result.detail


def test_processes_are_one_budget_across_uids_and_forks():
    limits = Limits(processes=8)
    spawn = ("import os, time\nmade = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
             "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
             "    made += 1\nprint(made)\n")
    with Sandbox(1, timeout=5.0, limits=limits) as box:
        result = run(box, spawn)
    if os.geteuid() == 0 and not result.isolation["uid"]:
        return  # no uid and no cgroup: nothing counts processes, and the report says so
    assert int(result.stdout.strip()) < 8


# Each way to forge a verdict from inside the solution's process; the tests always fail on honest terms.
FRAME_NONCE = (
    "import sys, os\n"
    "def grab():\n"
    "    f = sys._getframe()\n"
    "    while f is not None:\n"
    "        for name, value in list(f.f_locals.items()):\n"
    "            if isinstance(value, str) and len(value) == 32 and name == 'token':\n"
    "                os.write(3, (value + '\\tpassed\\n').encode())\n"
    "                os._exit(0)\n"
    "        f = f.f_back\n"
    "grab()\n"
)

TRACE_SKIP = (
    "import sys\n"
    "def tracer(frame, event, arg):\n"
    "    if frame.f_code.co_filename == '<tests>':\n"
    "        def local(frame, event, arg):\n"
    "            if event == 'line':\n"
    "                try:\n"
    "                    frame.f_lineno = frame.f_code.co_firstlineno + 10 ** 6\n"
    "                except ValueError:\n"
    "                    pass\n"
    "                frame.f_globals['f'] = lambda x: 2\n"
    "            return local\n"
    "        return local\n"
    "    return None\n"
    "sys.settrace(tracer)\n"
)

CTYPES_INT = (
    "import ctypes, sys\n"
    "two = 2\n"
    "ctypes.c_uint32.from_address(id(two) + 3 * ctypes.sizeof(ctypes.c_ssize_t)).value = 1\n"
)

CTYPES_CODE = (
    "import ctypes, gc\n"
    "for obj in gc.get_objects():\n"
    "    if type(obj).__name__ == 'code' and obj.co_filename == '<tests>':\n"
    "        raw = obj.co_code\n"
    "        ctypes.memmove(id(raw) + bytes.__basicsize__ - 1, b'\\x09\\x00' * (len(raw) // 2), len(raw))\n"
)

FORKED_LATE_WRITER = (
    "import os, sys, time\n"
    "token = None\n"
    "f = sys._getframe()\n"
    "while f is not None:\n"
    "    token = f.f_locals.get('token', token)\n"
    "    f = f.f_back\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    time.sleep(0.3)\n"
    "    for fd in range(3, 10):\n"
    "        try:\n"
    "            os.write(fd, f'{token}\\tpassed\\n'.encode())\n"
    "        except OSError:\n"
    "            pass\n"
    "    print('passed')\n"
    "    os._exit(0)\n"
)

EQUALS_ANYTHING = (
    "class Anything:\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __ne__ = lambda self, other: False\n"
    "    __hash__ = object.__hash__\n"
    "_f = f\n"
    "f = lambda x: Anything()\n"
)

INT_SUBCLASS = (
    "class Two(int):\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __hash__ = int.__hash__\n"
    "f = lambda x: Two(7)\n"
)

STR_SUBCLASS_IN_A_LIST = (
    "class S(str):\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __hash__ = str.__hash__\n"
    "f = lambda x: [S('no')]\n"
)

PATCHED_BUILTINS = (
    "import builtins\n"
    "builtins.AssertionError = type('AssertionError', (Exception,), {})\n"
    "builtins.isinstance = lambda *a: True\n"
    "builtins.len = lambda x: 2\n"
)

KILL_EVERYTHING = (
    "import os, signal\n"
    "for entry in os.listdir('/proc'):\n"
    "    if entry.isdigit() and int(entry) != os.getpid():\n"
    "        try:\n"
    "            os.kill(int(entry), signal.SIGKILL)\n"
    "        except OSError:\n"
    "            pass\n"
)

STDOUT_CLAIMS = "import sys\nprint('passed')\nsys.stdout.flush()\nimport os\nos._exit(0)\n"

FORGERIES = {
    "frames read the proof": FRAME_NONCE,
    "trace function skips the asserts": TRACE_SKIP,
    "ctypes rewrites an int": CTYPES_INT,
    "ctypes rewrites the tests' code": CTYPES_CODE,
    "forked child writes after the tests": FORKED_LATE_WRITER,
    "object equal to anything": EQUALS_ANYTHING,
    "int subclass": INT_SUBCLASS,
    "str subclass inside a list": STR_SUBCLASS_IN_A_LIST,
    "patched builtins": PATCHED_BUILTINS,
    "kill every visible process": KILL_EVERYTHING,
    "exit 0 after printing passed": STDOUT_CLAIMS,
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_solution_cannot_forge_its_verdict(sandbox, forgery):
    solution = "def f(x):\n    return 1\n" + forgery
    tests = "r = f(1)\nassert r == 2\nassert len([r, r]) == 2\n"
    result = run(sandbox, solution, tests)
    assert result.verdict != "passed", result
    assert result.verdict in ("failed", "error", "crashed"), result


def test_a_returned_object_of_another_type_is_an_error_naming_it(sandbox):
    result = run(sandbox, "def f(x):\n    return 1\n" + INT_SUBCLASS, "assert f(1) == 2\n")
    assert (result.verdict, result.exception) == ("error", "TypeError")
    assert "Two" in result.detail


def test_the_verdict_waits_for_the_judge_not_for_the_solution():
    # The solution ends its process (exit status 0) in the middle of a call: never a pass.
    with Sandbox(1) as box:
        result = run(box, "import os\ndef f(x):\n    os._exit(0)\n", "f(1)\n")
        killed = run(box, "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n", "f(1)\n")
    assert result.verdict == "crashed" and result.detail.startswith("exited with status 0")
    assert killed.verdict == "crashed" and "SIGKILL" in killed.detail


def test_a_sample_cannot_change_the_pipes_the_next_sample_gets():
    # A solution's stdout, stderr and bridge to the judge are the same open pipes from one sample to the next (see
    # forker.py): one sample makes them non-blocking, appending, signal-driven and tiny; the next must not notice.
    meddle = (
        "import fcntl, os\n"
        "for fd in (1, 2, 3, 4):\n"
        "    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK | os.O_APPEND | os.O_ASYNC)\n"
        "    try:\n"
        "        fcntl.fcntl(fd, 1031, 4096)\n"  # F_SETPIPE_SZ: one page
        "    except OSError:\n"
        "        pass\n"
        "def f(x):\n"
        "    return x\n"
    )
    honest = "import sys\nprint('x' * 300_000)\nprint('y' * 300_000, file=sys.stderr)\ndef f(x):\n    return [x] * 2000\n"
    tests = "for i in range(300):\n    assert f(i) == [i] * 2000\n"
    with Sandbox(1) as box:
        run(box, meddle, "assert f(1) == 1\n")  # may break its own conversation with the judge: its business
        result = run(box, honest, tests)
    assert result.verdict == "passed", result.detail
    assert sorted(result.truncated) == ["stderr", "stdout"]


def test_the_solution_cannot_signal_or_trace_the_judge(sandbox):
    probe = (
        "import os, signal\n"
        "def f(x):\n"
        "    hits = []\n"
        "    for entry in os.listdir('/proc'):\n"
        "        if entry.isdigit() and int(entry) != os.getpid():\n"
        "            try:\n"
        "                os.kill(int(entry), signal.SIGSTOP)\n"
        "                hits.append(entry)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return hits\n"
    )
    result = run(sandbox, probe, "assert f(1) == []\n")
    assert result.verdict == "passed", result.detail


def test_stale_worker_folders_of_dead_scorers_are_removed_on_start():
    import subprocess
    import sys

    from promptyard.evals import sandbox as sandbox_module

    # A scorer killed with SIGKILL: its workers' folders stay behind.
    script = ("import os, sys, time\nfrom promptyard.evals.sandbox import Sandbox\n"
              "box = Sandbox(1).__enter__()\nprint(box._all[0].scratch, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        folder = proc.stdout.readline().strip()
        assert folder and os.path.isdir(folder)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.isdir(folder)
    # A live scorer's folder (this process's) must stay.
    with Sandbox(1) as first:
        mine = first._all[0].scratch
        with Sandbox(1):
            assert not os.path.exists(folder)
            assert os.path.isdir(mine)
    assert folder not in sandbox_module.stale_folders()


def test_the_tests_are_not_in_the_solutions_memory(sandbox):
    # A solution that looks for its tests (to copy the expected answers) finds nothing: they never reach the
    # worker it is forked from, only the judge.
    marker = uuid.uuid4().hex
    half = len(marker) // 2
    peek = (
        "import gc\n"
        "def peek():\n"
        f"    needle = {marker[:half]!r} + {marker[half:]!r}\n"
        "    def strings(obj):\n"
        "        if type(obj) is dict:\n"
        "            yield from (v for kv in list(obj.items()) for v in kv)\n"
        "        elif type(obj) in (list, tuple):\n"
        "            yield from obj\n"
        "        elif type(obj).__name__ == 'code':\n"
        "            yield from obj.co_consts\n"
        "    for obj in gc.get_objects():\n"
        "        for value in strings(obj):\n"
        "            if type(value) is str and value is not needle and needle in value:\n"
        "                return True\n"
        "    return False\n"
    )
    result = run(sandbox, peek, f"expected = {marker!r}\nassert not peek(), 'the solution found its tests'\n")
    assert result.verdict == "passed", result.detail
