"""One memory and process budget per sample, for all its processes together: a cgroup per sandbox worker.

The worker's forker (forker.py) joins its cgroup once, so every solution process it forks is in it from birth
(moving each one in cost ~0.4 ms of CPU per sample); each solution process raises its own oom_score_adj to 1000, so
an over-budget sample is what the kernel kills first, before the (small) forker. The worker and the judge stay
outside: they are not the sample's. cgroup v1 (`memory` and `pids` controllers) and v2 are both supported.
"""

from __future__ import annotations

import os

ROOT = "/sys/fs/cgroup"
# Folder names: PREFIX + the owning scorer's "pid.starttime" + "-" + slot + "-" + a random part.
PREFIX = "promptyard-sandbox-"


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller (and "" for the v2 hierarchy), from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _bases() -> dict[str, str]:
    """The folder of this process's own cgroup for each hierarchy we use: 'memory' and 'pids' (v1) or 'v2'."""
    own = _own_paths()
    if os.path.exists(f"{ROOT}/cgroup.controllers"):  # a pure v2 machine
        return {"v2": f"{ROOT}{own.get('', '/')}".rstrip("/")}
    bases = {}
    for controller in ("memory", "pids"):
        if controller in own and os.path.isdir(f"{ROOT}/{controller}"):
            bases[controller] = f"{ROOT}/{controller}{own[controller]}".rstrip("/")
    return bases


class Budget:
    """A worker's cgroup(s): `join()` (as root) moves the caller in; `counters()` counts the processes the kernel
    killed for going over the memory budget."""

    def __init__(self, version: str, folders: list[str], procs: list[int], counters: list[tuple[int, str]],
                 tasks: int | None = None) -> None:
        self.version = version
        self.folders = folders
        self._procs = procs
        # (fd, key): the OOM kills and the times usage hit the limit; key None for a file holding one number.
        self._counters = counters
        self._tasks = tasks  # pids.current, when there is a pids controller

    def tasks(self) -> int | None:
        """How many processes (threads included) are in the cgroup now; None without a pids controller."""
        if self._tasks is None:
            return None
        return int(os.pread(self._tasks, 64, 0) or 0)

    def join(self) -> None:
        for fd in self._procs:
            os.write(fd, b"0")  # "0": the writing process itself, in whatever PID namespace it is

    def counters(self) -> tuple[int, ...]:
        """(processes the OOM killer killed, times the usage hit the limit), cumulative."""
        values = []
        for fd, key in self._counters:
            text = os.pread(fd, 4096, 0).decode()
            if key is None:
                values.append(int(text.strip() or 0))
                continue
            found = 0
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    found = int(value)
            values.append(found)
        return tuple(values)


def create(name: str, memory: int, processes: int) -> Budget:
    """Make this worker's cgroup(s) with the budget; raises OSError when the machine has none we may use."""
    bases = _bases()
    if "v2" in bases:
        return _create_v2(bases["v2"], name, memory, processes)
    if "memory" not in bases:
        raise OSError(0, "no memory cgroup controller")
    folders, procs, tasks = [], [], None
    memory_folder = f"{bases['memory']}/{name}"
    os.mkdir(memory_folder, 0o755)
    folders.append(memory_folder)
    _write(f"{memory_folder}/memory.limit_in_bytes", str(memory))
    if os.path.exists(f"{memory_folder}/memory.memsw.limit_in_bytes"):
        try:
            _write(f"{memory_folder}/memory.memsw.limit_in_bytes", str(memory))  # no swapping past it either
        except OSError:
            pass
    procs.append(os.open(f"{memory_folder}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    if "pids" in bases:
        pids_folder = f"{bases['pids']}/{name}"
        os.mkdir(pids_folder, 0o755)
        folders.append(pids_folder)
        _write(f"{pids_folder}/pids.max", str(processes))
        procs.append(os.open(f"{pids_folder}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        tasks = os.open(f"{pids_folder}/pids.current", os.O_RDONLY | os.O_CLOEXEC)
    counters = [(os.open(f"{memory_folder}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC), "oom_kill"),
                (os.open(f"{memory_folder}/memory.failcnt", os.O_RDONLY | os.O_CLOEXEC), None)]
    return Budget("v1" if "pids" in bases else "v1 (memory only)", folders, procs, counters, tasks)


def _create_v2(base: str, name: str, memory: int, processes: int) -> Budget:
    enabled = open(f"{base}/cgroup.subtree_control").read().split()
    missing = [c for c in ("memory", "pids") if c not in enabled]
    if missing:
        # Refused where our own cgroup holds processes (v2's "no internal processes" rule): then no budget.
        _write(f"{base}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    folder = f"{base}/{name}"
    os.mkdir(folder, 0o755)
    _write(f"{folder}/memory.max", str(memory))
    for optional, value in (("memory.swap.max", "0"), ("memory.oom.group", "0")):
        try:
            _write(f"{folder}/{optional}", value)
        except OSError:
            pass
    _write(f"{folder}/pids.max", str(processes))
    procs = [os.open(f"{folder}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)]
    events = os.open(f"{folder}/memory.events", os.O_RDONLY | os.O_CLOEXEC)
    tasks = os.open(f"{folder}/pids.current", os.O_RDONLY | os.O_CLOEXEC)
    return Budget("v2", [folder], procs, [(events, "oom_kill"), (events, "max")], tasks)


def remove(name: str) -> None:
    """Remove a worker's cgroup folders (once the worker is gone; a cgroup with processes stays)."""
    try:
        bases = _bases()
    except OSError:
        return
    for base in bases.values():
        try:
            os.rmdir(f"{base}/{name}")
        except OSError:
            pass


def stale(is_alive) -> list[str]:
    """Cgroup folders of ours whose owning scorer is gone (`is_alive(owner)` says), removed; returns them."""
    removed = []
    try:
        bases = _bases()
    except OSError:
        return removed
    for base in bases.values():
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if name.startswith(PREFIX) and not is_alive(name[len(PREFIX):].split("-", 1)[0]):
                try:
                    os.rmdir(f"{base}/{name}")
                    removed.append(f"{base}/{name}")
                except OSError:
                    pass
    return removed

