"""Process isolation applied inside a sandbox child: namespaces, rlimits, an unprivileged user, a clean env."""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource

CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

# Sandbox uids start here; see claim_uid.
BASE_UID = 61000

SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    # One BLAS/OpenMP thread per sample: thread pools would blow the process budget and the address space.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

_libc = ctypes.CDLL(None, use_errno=True)


class Limits:
    """Resource budget for one sample; the defaults leave room for numpy-style imports.

    A plain class, not a dataclass: this module is loaded in every sandbox worker, and `dataclasses` pulls in
    `inspect` and friends, megabytes that every per-sample fork would have to copy.
    """

    FIELDS = ("address_space", "file_size", "open_files", "processes", "output_bytes", "memory")

    def __init__(self, address_space: int = 2 * 1024**3, file_size: int = 16 * 1024**2, open_files: int = 64,
                 processes: int = 16, output_bytes: int = 64 * 1024, memory: int = 2 * 1024**3) -> None:
        # Per process: address space, file size, open files (rlimits). Per sample, all its processes together
        # (the solution's, the judge's, whatever they fork): `memory` and `processes` (a cgroup, see cgroups.py;
        # without one, `processes` is an rlimit per uid and memory only the per-process address space).
        self.memory = memory
        self.address_space = address_space
        self.file_size = file_size
        self.open_files = open_files
        self.processes = processes
        self.output_bytes = output_bytes

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Limits({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


class Isolation:
    """What a sandbox child actually got; reported in every run's metadata."""

    def __init__(self, pid_namespace: bool = False, net_namespace: bool = False, uid: int | None = None,
                 rlimits: bool = True, private_tmp: bool = False, ipc_namespace: bool = False,
                 notes: list[str] | None = None, judge_uid: int | None = None, root_filesystem: bool = False,
                 memory_budget: str | None = None) -> None:
        self.pid_namespace = pid_namespace
        self.net_namespace = net_namespace
        # System V and POSIX IPC objects (shared memory, semaphores, queues) die with the worker's namespace.
        self.ipc_namespace = ipc_namespace
        self.uid = uid
        self.rlimits = rlimits
        # /tmp, /var/tmp and /dev/shm are the worker's own and emptied after every sample (see cover_temporary).
        self.private_tmp = private_tmp
        # The tests run in a judge process of their own, under this uid (see judge.py).
        self.judge_uid = judge_uid
        # The worker's own minimal root: nothing of the machine but the interpreter and its libraries (rootfs.py).
        self.root_filesystem = root_filesystem
        # The cgroup version bounding memory and processes per sample ("v1", "v2"), None without one.
        self.memory_budget = memory_budget
        self.notes = list(notes or [])

    @property
    def level(self) -> str:
        if self.pid_namespace and self.net_namespace and self.uid not in (None, 0):
            return "namespaces+uid"
        if self.pid_namespace or self.net_namespace:
            return "namespaces"
        if self.uid not in (None, 0):
            return "uid"
        return "rlimits-only"

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "pid_namespace": self.pid_namespace,
            "net_namespace": self.net_namespace,
            "ipc_namespace": self.ipc_namespace,
            "uid": self.uid,
            "rlimits": self.rlimits,
            "private_tmp": self.private_tmp,
            "judge_uid": self.judge_uid,
            "root_filesystem": self.root_filesystem,
            "memory_budget": self.memory_budget,
            "notes": list(self.notes),
        }


def unshare(flags: int) -> bool:
    """Call unshare(2); False when the kernel or our privileges refuse."""
    return _libc.unshare(ctypes.c_int(flags)) == 0


def enter_network_namespace() -> bool:
    """Give the calling worker its own network namespace (only a downed loopback): no sample reaches a network.

    Done once per worker rather than per sample, because creating a network namespace costs milliseconds.
    """
    return unshare(CLONE_NEWNET)


def enter_ipc_namespace() -> bool:
    """Give the calling worker its own IPC namespace: a sample's System V or POSIX IPC objects (which outlive
    processes) stay inside it and are destroyed with the worker, never left on the machine."""
    return unshare(CLONE_NEWIPC)


def become_pid_namespace_init() -> bool:
    """Move the calling worker into a new PID namespace as its PID 1; False (nothing changed) when refused.

    unshare(CLONE_NEWPID) only places later children in the namespace, so the worker forks once: the child is
    PID 1 and carries on as the worker; the original only waits for it and exits with its status. One namespace
    per worker instead of one per sample (creating one costs about half a millisecond on every fork), and PID 1
    can still kill every process in it after each sample.
    """
    if not unshare(CLONE_NEWPID):
        return False
    pid = os.fork()
    if pid == 0:
        # The scorer watches the original process: if it is killed, this worker (and its namespace) goes too.
        _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        return True
    for fd in (0, 1):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


UID_LOCKS = "/tmp/promptyard-sandbox-uids"
UID_RANGE = 4096
_claimed: dict[int, int] = {}


def claim_uid() -> int:
    """An unprivileged uid no other live sandbox worker on this machine uses (an flock held for our lifetime);
    each call claims another one.

    Each worker runs its samples as its own uids (the solution's and the judge's), so RLIMIT_NPROC (counted per
    uid) is per sample, even across separate scorer processes. The locks live in the machine's /tmp: claim
    before covering it or swapping the root.
    """
    import fcntl

    os.makedirs(UID_LOCKS, mode=0o700, exist_ok=True)
    for uid in range(BASE_UID, BASE_UID + UID_RANGE):
        if uid in _claimed:
            continue
        fd = os.open(f"{UID_LOCKS}/{uid}", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claimed[uid] = fd
        return uid
    raise OSError("no free sandbox uid")


def rlimits(limits: dict, cpu_seconds: int) -> tuple[tuple[int, int], ...]:
    """(resource, value) for each rlimit a sandboxed process gets, from a `Limits.to_dict()`; the CPU limit is a
    backstop behind the wall-clock timeout."""
    return (
        (resource.RLIMIT_AS, int(limits["address_space"])),
        (resource.RLIMIT_CPU, int(cpu_seconds)),
        (resource.RLIMIT_FSIZE, int(limits["file_size"])),
        (resource.RLIMIT_NOFILE, int(limits["open_files"])),
        (resource.RLIMIT_NPROC, int(limits["processes"])),
        (resource.RLIMIT_CORE, 0),
    )


def set_rlimits(pairs) -> None:
    """Set each (resource, value) of `rlimits()`, soft and hard."""
    for name, value in pairs:
        resource.setrlimit(name, (value, value))


def apply_limits(limits: dict, cpu_seconds: int) -> None:
    """Set the rlimits from a `Limits.to_dict()` (see rlimits)."""
    set_rlimits(rlimits(limits, cpu_seconds))


def place_fds(targets: dict[int, int]) -> None:
    """Put each fd where `targets` ({target: fd}) says and close every fd above the highest target (0 and the
    numbers not named stay as they are)."""
    # Out of the way first (above every target number), then in place: no target overwrites a source.
    high = {target: fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for target, fd in targets.items()}
    for target, fd in high.items():
        os.dup2(fd, target)
    os.closerange(max(targets) + 1, 1 << 16)


def drop_privileges(uid: int) -> None:
    """Become an unprivileged uid (only possible, and only needed, when running as root)."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def become_subreaper() -> None:
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def not_dumpable() -> None:
    """No ptrace, no /proc/PID/mem and no core for this process, even for processes of the same uid."""
    _libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


def no_new_privileges() -> None:
    """Forbid gaining privileges through setuid binaries, for us and every process we fork from now on."""
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def scrub_environment(workdir: str) -> None:
    """Replace the environment with a fixed, secret-free one."""
    os.environ.clear()
    os.environ.update(SAFE_ENV)
    os.environ["HOME"] = workdir
    os.environ["TMPDIR"] = workdir


CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_RDONLY, MS_REMOUNT = 4096, 16384, 1 << 18, 1, 32


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _closed_ancestor(path: str) -> str | None:
    """The top-most ancestor of `path` that other users may not traverse (mode without o+x), if any."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    current = ""
    for part in parts[:-1]:
        current += os.sep + part
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return None
    return None


def private_mounts() -> None:
    """Give the calling worker its own mount namespace, so its mounts never show outside it."""
    if not unshare(CLONE_NEWNS):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) refused")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


SCRATCH = "/tmp/promptyard-sandbox"


def mount_scratch(size: str = "256m") -> str:
    """A tmpfs for the samples' working folders (inside a private mount namespace).

    Creating and removing folders on it is cheap (ext4 with discard is not), and its size caps what all the
    samples of a worker can write, whatever each file's size limit.
    """
    os.makedirs(SCRATCH, mode=0o711, exist_ok=True)
    _mount("tmpfs", SCRATCH, "tmpfs", 0, f"mode=0711,size={size}")
    return SCRATCH


def _outermost(paths: list[str]) -> list[str]:
    paths = {os.path.abspath(p) for p in paths}
    return sorted(p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths))


def _cover(folder: str, keep: list[str], options: str) -> None:
    """Mount an empty tmpfs over `folder`, then bind the folders in `keep` (all under it) back in place.

    The originals are held by O_PATH descriptors opened before the tmpfs hides them, and bound back from
    /proc/self/fd: no staging folder anywhere (the folder covered may be /tmp itself).
    """
    held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in _outermost(keep)]
    try:
        _mount("tmpfs", folder, "tmpfs", 0, options)
        for path, fd in held:
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    finally:
        for _, fd in held:
            os.close(fd)


def _folders_under(folder: str, paths: list[str]) -> list[str]:
    return [p for p in paths if p and os.path.isdir(p) and os.path.abspath(p).startswith(folder + os.sep)]


# World-writable folders every process can leave files in (see cover_temporary).
TEMPORARY_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")


def cover_temporary(paths: list[str], size: str = "64m") -> list[str]:
    """Give the calling worker (in its private mount namespace) its own empty /tmp, /var/tmp and /dev/shm.

    Each becomes a world-writable tmpfs seen by no one else, which the worker empties after every sample: what a
    sample writes there (a path it hard-coded rather than TMPDIR) never reaches the machine nor the next
    sample. The interpreter's folders in `paths` that lie under one are bound back. Returns the folders covered.
    """
    covered = []
    for folder in TEMPORARY_FOLDERS:
        if os.path.isdir(folder) and not os.path.islink(folder):
            _cover(folder, _folders_under(folder, paths), f"mode=1777,size={size},nr_inodes=16k")
            covered.append(folder)
    return covered


def expose_python(paths: list[str]) -> list[str]:
    """Let an unprivileged sample import the interpreter's own files when they sit under a private home.

    In the worker's private mount namespace (see private_mounts) a closed directory such as /root is covered by an
    empty tmpfs and only the interpreter's folders are bind-mounted back: the sample sees Python, nothing else
    there. Returns the directories covered; raises OSError when the kernel refuses.
    """
    needed: dict[str, list[str]] = {}
    for path in paths:
        if path and os.path.isdir(path):
            closed = _closed_ancestor(path)
            if closed:
                needed.setdefault(closed, []).append(path)
    for closed, inner in needed.items():
        _cover(closed, inner, "mode=0755,size=1m")
        _mount(None, closed, None, MS_REMOUNT | MS_RDONLY)
    return sorted(needed)
