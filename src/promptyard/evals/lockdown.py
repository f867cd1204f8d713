"""A sandbox worker's one-time setup: namespaces, its own minimal root, a cgroup budget, two uids, and the
isolation report saying what of this the kernel granted."""

from __future__ import annotations

import os
import sys

if __package__:
    from promptyard.evals import cgroups, isolation, rootfs
else:
    import cgroups  # type: ignore[no-redef]
    import isolation  # type: ignore[no-redef]
    import rootfs  # type: ignore[no-redef]

# Worker-wide facts, set once in setup().
STATE = {"network_namespace": False, "ipc_namespace": False, "pid_namespace": False, "no_uid_drop": None,
         "namespaces": True, "scratch": None, "isolation": None, "isolation_report": None, "workdir": None,
         "judge_dir": None, "temporary": {}, "uids": None, "budget": None, "no_budget": None,
         "root_filesystem": False, "no_root": None, "root_notes": []}


def interpreter_paths() -> list[str]:
    return [sys.base_prefix, sys.prefix, *[p for p in sys.path if p]]


def _prefixes() -> list[str]:
    return [sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix]


def _claim_uids() -> None:
    """Two unprivileged uids of this worker's own: one for the solution, one for the judge."""
    try:
        STATE["uids"] = (isolation.claim_uid(), isolation.claim_uid())
    except OSError as exc:
        STATE["no_uid_drop"] = f"no free sandbox uid ({exc})"


def _budget(memory: int, processes: int, name: str) -> None:
    """The cgroup all of a sample's processes share (created before the root is swapped: /sys is not in it). The
    worker stays outside: its forker joins it, so every solution process is born in it (see forker.py)."""
    try:
        # +1: the forker counts too.
        STATE["budget"] = cgroups.create(name, memory, processes + 1)
    except OSError as exc:
        where = f" on {exc.filename}" if exc.filename else ""
        STATE["no_budget"] = (f"no cgroup for a per-sample budget ({exc.strerror or exc}{where}): memory is bounded per "
                              "process (address space) and processes per uid, not per sample")


def _old_style_mounts() -> None:
    """Without a root of its own: empty /tmp, /var/tmp and /dev/shm, a tmpfs for the samples' folders, and the
    interpreter exposed to the sample uids (the machine's other files stay visible; the report says so)."""
    covered = isolation.cover_temporary(interpreter_paths() + [STATE["scratch"]])
    STATE["scratch"] = isolation.mount_scratch()
    try:
        isolation.expose_python(interpreter_paths())
    except OSError as exc:
        STATE["no_uid_drop"] = f"interpreter not readable by an unprivileged uid and not exposable ({exc})"
    STATE["temporary"] = {folder: None for folder in covered}


def _own_root(scratch: str) -> bool:
    """Swap the worker's root for a minimal one (see rootfs); False, with the reason noted, when refused."""
    new_root = f"{scratch}/root"
    try:
        os.mkdir(new_root, 0o700)
        STATE["root_notes"] = rootfs.build(new_root, _prefixes(), sys.path, tmp_size="64m", scratch_size="256m",
                                           proc=STATE["pid_namespace"])
    except OSError as exc:
        STATE["no_root"] = f"no private root filesystem ({exc}): the machine's files outside /tmp are visible"
        return False
    STATE["scratch"] = rootfs.SANDBOX
    STATE["temporary"] = {folder: None for folder in ("/tmp", "/var/tmp", "/dev/shm")}
    STATE["root_filesystem"] = True
    return True


def setup(namespaces: bool, scratch: str, memory: int, processes: int, budget_name: str) -> None:
    """Once per worker: namespaces, root filesystem, budget, subreaper, environment.

    `scratch` is the folder the scorer made for this worker (it removes it with the worker, even a killed one):
    the new root is built on a mount point in it, or, without one, samples work in it.
    """
    STATE["namespaces"] = namespaces
    STATE["scratch"] = scratch
    root = os.geteuid() == 0
    mount_namespace = False
    if namespaces:
        STATE["network_namespace"] = isolation.enter_network_namespace()
        STATE["ipc_namespace"] = isolation.enter_ipc_namespace()
        if root:
            _claim_uids()  # first: its locks are in the machine's /tmp, which the new root does not have
            _budget(memory, processes, budget_name)
            try:
                isolation.private_mounts()
                mount_namespace = True
            except OSError as exc:
                STATE["no_uid_drop"] = f"no private mount namespace ({exc})"
        STATE["pid_namespace"] = isolation.become_pid_namespace_init()
        if mount_namespace and not _own_root(scratch):
            try:
                _old_style_mounts()
            except OSError as exc:
                STATE["no_uid_drop"] = f"no private mounts ({exc})"
    elif root:
        _claim_uids()
        _budget(memory, processes, budget_name)
        if any(isolation._closed_ancestor(p) for p in (sys.base_prefix, sys.prefix)):
            STATE["no_uid_drop"] = "interpreter not readable by an unprivileged uid without a mount namespace"
    if STATE["no_uid_drop"]:
        STATE["uids"] = None
    if STATE["scratch"] == scratch:
        os.chmod(scratch, 0o711)  # the sample uid reaches its own folder in it, and nothing else
    # Folders of this worker's alone: every sample gets the same paths (created fresh for it, emptied after it),
    # so its environment is set once here rather than in every child.
    STATE["workdir"] = f"{STATE['scratch']}/sample"
    STATE["judge_dir"] = f"{STATE['scratch']}/judge"
    os.makedirs(STATE["judge_dir"], 0o700, exist_ok=True)
    if STATE["uids"]:
        os.chown(STATE["judge_dir"], STATE["uids"][1], STATE["uids"][1])
    # What these folders hold before any sample ran (mount points, interpreter folders bound back): all the rest
    # is a sample's, removed after it (see reaper.empty_folders).
    watched = [*STATE["temporary"], STATE["judge_dir"]]
    STATE["temporary"] = {folder: (os.stat(folder).st_size, frozenset(os.listdir(folder))) for folder in watched}
    # Exactly the safe environment, once: samples only add their folder (HOME, TMPDIR) to it.
    isolation.scrub_environment(STATE["workdir"])
    # Orphans of a sample are re-parented to us (not to init), so we can kill and reap them.
    isolation.become_subreaper()
    isolation.no_new_privileges()
    STATE["isolation"] = _isolation()
    STATE["isolation_report"] = STATE["isolation"].to_dict()


def _isolation() -> isolation.Isolation:
    """What every sample of this worker gets (decided once, in setup)."""
    info = isolation.Isolation(net_namespace=STATE["network_namespace"], pid_namespace=STATE["pid_namespace"],
                               ipc_namespace=STATE["ipc_namespace"])
    info.uid = STATE["uids"][0] if STATE["uids"] else None
    info.judge_uid = STATE["uids"][1] if STATE["uids"] else None
    info.root_filesystem = STATE["root_filesystem"]
    info.memory_budget = STATE["budget"].version if STATE["budget"] else None
    if STATE["no_uid_drop"]:
        info.notes.append(STATE["no_uid_drop"])
    if os.geteuid() == 0 and not info.uid:
        info.notes.append("samples run as root: no limit on their number of processes, no protection for files "
                          "outside their folder; the judge runs under the same uid as the solution")
    if not STATE["namespaces"]:
        info.notes.append("namespaces disabled by configuration")
    elif not STATE["pid_namespace"]:
        info.notes.append("no PID namespace (unshare refused); strays are killed by the worker, their subreaper")
    if STATE["namespaces"] and not STATE["ipc_namespace"]:
        info.notes.append("no IPC namespace (unshare refused): shared memory or queues a sample creates outlive it")
    if not STATE["root_filesystem"]:
        info.notes.append(STATE["no_root"] or "no private root filesystem: the machine's files outside /tmp are "
                                              "visible to samples (and its Unix sockets reachable)")
    info.notes.extend(STATE["root_notes"])
    if STATE["no_budget"]:
        info.notes.append(STATE["no_budget"])
    elif not STATE["budget"]:
        info.notes.append("no cgroup for a per-sample budget (not root): memory is bounded per process "
                          "(address space), not per sample")
    info.private_tmp = any(folder != STATE["judge_dir"] for folder in STATE["temporary"])
    if not info.private_tmp:
        info.notes.append("no private /tmp: files a sample leaves in /tmp, /var/tmp or /dev/shm outlive it")
    return info
