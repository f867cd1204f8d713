"""A minimal root filesystem for a sandbox worker: the interpreter and the system's libraries, read-only, and
nothing else of the machine (own mount namespace + pivot_root; see the README's sandbox section for why)."""

from __future__ import annotations

import ctypes
import os

if __package__:
    from promptyard.evals.isolation import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, _libc, _mount, _outermost
else:
    from isolation import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, _libc, _mount, _outermost  # type: ignore

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

# The system's programs and libraries (Debian's merged /usr: the others are symlinks into it).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Files of /etc a program may need: the dynamic loader's cache and the time zone. Nothing else of /etc
# (no passwd, no hosts, no database or service configuration).
ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")
DEVICES = ("null", "zero", "full", "random", "urandom")
# Where the samples' working folders live in the new root (a tmpfs of its own).
SANDBOX = "/sandbox"


def _bind_read_only(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _placeholder(source: str, target: str) -> None:
    """An empty file or folder at `target` to bind `source` on."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def interpreter_folders(prefixes: list[str], path: list[str]) -> list[str]:
    """The folders to bind for the interpreter: its prefixes and the site- or dist-packages on its path. Never
    the other folders of sys.path (the project's own source, the evaluation engine, a script's folder)."""
    wanted = []
    for folder in [*prefixes, *[p for p in path if os.path.basename(p) in ("site-packages", "dist-packages")]]:
        if not folder or not os.path.isdir(folder):
            continue
        folder = os.path.realpath(folder)
        if any(folder == top or folder.startswith(top + os.sep) for top in SYSTEM):
            continue  # bound with /usr
        wanted.append(folder)
    return _outermost(wanted)


def build(new_root: str, prefixes: list[str], site: list[str], tmp_size: str, scratch_size: str,
          proc: bool) -> list[str]:
    """Make `new_root` (an empty folder) a minimal root, then pivot into it; returns notes on what is missing.

    Must run as root, in a private mount namespace, and (for a /proc of its own) in the worker's PID namespace.
    """
    notes: list[str] = []
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m,nr_inodes=4k")
    for path in SYSTEM:
        if os.path.islink(path):
            os.symlink(os.readlink(path), new_root + path)
        elif os.path.isdir(path):
            os.makedirs(new_root + path)
            _bind_read_only(path, new_root + path)
    os.makedirs(new_root + "/etc")
    for path in ETC:
        if os.path.islink(path) and not os.path.isdir(path):
            os.symlink(os.readlink(path), new_root + path)
        elif os.path.exists(path):
            _placeholder(path, new_root + path)
            _bind_read_only(path, new_root + path)
    # The private tmpfs folders before the interpreter's: an interpreter or virtualenv that lives under /tmp (a
    # checkout in /tmp) is bound on top of the private /tmp, not hidden under it.
    _devices(new_root)
    for folder in ("/tmp", "/var/tmp"):
        os.makedirs(new_root + folder, exist_ok=True)
        _mount("tmpfs", new_root + folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_size},nr_inodes=16k")
    os.makedirs(new_root + SANDBOX)
    _mount("tmpfs", new_root + SANDBOX, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0711,size={scratch_size}")
    for path in interpreter_folders(prefixes, site):
        _placeholder(path, new_root + path)
        _bind_read_only(path, new_root + path)
    os.makedirs(new_root + "/proc")
    if proc:
        try:
            # hidepid=2: a sample sees only its own uid's processes (not the worker, not the judge).
            _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        except OSError as exc:
            notes.append(f"no /proc in the sandbox root ({exc})")
    else:
        notes.append("no /proc in the sandbox root (no PID namespace of its own to show)")
    _pivot(new_root)
    return notes


def _devices(new_root: str) -> None:
    dev = new_root + "/dev"
    os.makedirs(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=64k,nr_inodes=64")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{dev}/{name}", "a").close()
            _mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm")
    _mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m,nr_inodes=16k")


def _pivot(new_root: str) -> None:
    """Make `new_root` the root and detach the old one entirely: nothing of it stays reachable."""
    old = new_root + "/.old-root"
    os.makedirs(old)
    os.chdir(new_root)
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {os.uname().machine}")
    if _libc.syscall(number, b".", b".old-root") != 0:  # glibc has no wrapper for pivot_root(2)
        raise OSError(ctypes.get_errno(), f"pivot_root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    if _libc.umount2(b"/.old-root", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), f"umount old root: {os.strerror(ctypes.get_errno())}")
    os.rmdir("/.old-root")
    # The root itself read-only: a sample writes only in its folder, /tmp, /var/tmp and /dev/shm.
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
