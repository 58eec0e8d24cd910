"""One resource-control group (cgroup) per sandboxed run: a memory cap and a process cap for everything it starts.

Why a cgroup and not only rlimits: RLIMIT_DATA does not count shared mappings or
files written to tmpfs (``/tmp``, ``/dev/shm``), RLIMIT_NPROC is counted per uid
on the whole host (every sandbox runs as uid 65534, so one fork bomb starves the
others), and no rlimit can kill a process that left the process group.  A memory
cgroup is charged for every page its processes touch, shared memory and tmpfs
pages included; a pids cgroup counts only its own tasks; and its member list
finds every process the run started.

Both hierarchies are supported:

* **v2** (the unified hierarchy, where its ``memory`` and ``pids`` controllers
  are available): ``memory.max``, ``memory.swap.max = 0``, ``pids.max``;
  ``memory.events`` (``oom_kill``), ``memory.peak``, ``pids.events`` (``max``);
  ``cgroup.kill`` to stop everything at once.
* **v1** (one mount per controller): ``memory.limit_in_bytes`` and, where swap
  is accounted, ``memory.memsw.limit_in_bytes`` at the same value (so swap
  cannot dodge the cap); ``memory.max_usage_in_bytes``, ``memory.failcnt``,
  ``memory.oom_control`` (its ``oom_kill`` line); ``pids.max`` and
  ``pids.events``.  Killing is a loop of SIGKILL to every member until the group
  is empty (no freezer): a killed process cannot fork, so the loop converges.

A v2 mount with no controllers enabled (the empty ``/sys/fs/cgroup/unified`` of
a hybrid host) is ignored.  Groups are made under the grader's OWN cgroup, as
read from ``/proc/self/cgroup``, so a limit the grader itself runs under (a
container's) still holds for them; if that is not writable, under the root of
the hierarchy.  Where neither works (a container's read-only ``/sys/fs/cgroup``,
a grader that is not root, a host that is not Linux), ``detect`` says why in one
line and the sandbox falls back to rlimits alone.

``pids.max`` counts tasks, so threads count as processes, as they do for
RLIMIT_NPROC.

Group names are ``grader-<pid>-<counter>``: unique per run and per grader
process.  Groups left by a grader that was killed are removed, once empty, by
``clean_leftovers`` (called on the first ``Group.create`` of each process).

Deciding (``parse_mounts``, ``parse_proc_cgroup``, ``candidate_parents``) is
kept apart from doing (``detect``'s probes, ``Group``).  This module imports
only the standard library.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CgroupError",
    "CgroupStats",
    "CgroupSupport",
    "Group",
    "candidate_parents",
    "clean_leftovers",
    "detect",
    "parse_mounts",
    "parse_proc_cgroup",
]

# ---------------------------------------------------------------------------
# Constants (one commented block)
# ---------------------------------------------------------------------------
CONTROLLERS = ("memory", "pids")
NAME_PREFIX = "grader"
# Names this module gives its groups (probes included): grader-<pid>-<counter>.
NAME_PATTERN = re.compile(rf"^{NAME_PREFIX}-(\d+)-(\d+)$")
# kill_all gives up after this long (a fork loop is bounded by pids.max, so it never needs it).
KILL_TIMEOUT_S = 5.0
KILL_POLL_S = 0.01
# remove() retries rmdir this long: the last member may still be leaving.
REMOVE_TIMEOUT_S = 2.0
# A leftover is only removed when at least this old (a group another grader has just
# made is empty until its child joins).
LEFTOVER_MIN_AGE_S = 60.0
MOUNTS_FILE = "/proc/self/mounts"
PROC_CGROUP_FILE = "/proc/self/cgroup"
# The file each controller needs in a new group, per hierarchy version.
_NEEDED = {
    ("v1", "memory"): "memory.limit_in_bytes",
    ("v1", "pids"): "pids.max",
    ("v2", "memory"): "memory.max",
    ("v2", "pids"): "pids.max",
}

_counter = itertools.count()
_counter_lock = threading.Lock()
_leftovers_cleaned = False
_leftovers_lock = threading.Lock()


class CgroupError(OSError):
    """A group could not be made or set up."""


def _next_name() -> str:
    with _counter_lock:
        n = next(_counter)
    return f"{NAME_PREFIX}-{os.getpid()}-{n}"


# ---------------------------------------------------------------------------
# Deciding: what the host offers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CgroupSupport:
    """What this host offers: the hierarchy version and, per controller, the directory new groups go in.

    ``version`` is None when cgroups cannot be used; ``reason`` then says why in one line.
    """

    version: str | None
    parents: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def none(cls, reason: str) -> CgroupSupport:
        return cls(version=None, parents={}, reason=reason)

    @property
    def available(self) -> bool:
        return self.version is not None and bool(self.parents)

    @property
    def memory(self) -> bool:
        return self.available and "memory" in self.parents

    @property
    def pids(self) -> bool:
        return self.available and "pids" in self.parents

    def describe(self) -> str:
        """One line: ``v1 memory+pids``, ``v2 memory+pids``, or ``none: <reason>``."""
        if not self.available:
            return f"none: {self.reason}"
        return f"{self.version} " + "+".join(c for c in CONTROLLERS if c in self.parents)


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    options: tuple[str, ...]


def _unescape(field_: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mounts(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in a ``/proc/self/mounts`` text."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(Mount(_unescape(parts[1]), parts[2], tuple(parts[3].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller -> the process's cgroup path, from a ``/proc/PID/cgroup`` text; ``""`` is the v2 entry."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        path = path.removesuffix(" (deleted)")
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _join(mountpoint: str, path: str) -> str:
    return os.path.normpath(mountpoint + "/" + path.lstrip("/")) if path.strip("/") else mountpoint


def candidate_parents(mounts: Sequence[Mount], own: Mapping[str, str],
                      v2_controllers: Mapping[str, frozenset[str]]) -> dict[str, dict[str, list[str]]]:
    """Where groups could go, best first: ``{"v2": {controller: [dirs]}, "v1": {...}}``.

    ``v2_controllers`` gives, per cgroup2 mount point, the controllers its root
    offers (its ``cgroup.controllers``); a mount offering neither memory nor pids
    is skipped.  Each list is the grader's own cgroup, then the hierarchy's root.
    """
    plan: dict[str, dict[str, list[str]]] = {"v2": {}, "v1": {}}
    for mount in mounts:
        if mount.fstype == "cgroup2":
            offered = v2_controllers.get(mount.mountpoint, frozenset())
            for controller in CONTROLLERS:
                if controller in offered and controller not in plan["v2"]:
                    dirs = [_join(mount.mountpoint, own.get("", "/")), mount.mountpoint]
                    plan["v2"][controller] = list(dict.fromkeys(dirs))
        else:
            for controller in CONTROLLERS:
                if controller in mount.options and controller not in plan["v1"]:
                    dirs = [_join(mount.mountpoint, own.get(controller, "/")), mount.mountpoint]
                    plan["v1"][controller] = list(dict.fromkeys(dirs))
    return plan


# ---------------------------------------------------------------------------
# Doing: probes
# ---------------------------------------------------------------------------
def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _probe(parent: str, version: str, controller: str) -> str | None:
    """Make and remove a trial group in ``parent``; None when it works, else why not."""
    if not os.path.isdir(parent):
        return f"{parent} does not exist"
    probe = os.path.join(parent, _next_name())
    try:
        os.mkdir(probe)
    except OSError as exc:
        return f"cannot create a group in {parent}: {_strerror(exc)}"
    try:
        needed = _NEEDED[(version, controller)]
        if version == "v2" and not os.path.exists(os.path.join(probe, needed)):
            try:
                _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
            except OSError as exc:
                return f"cannot enable {controller} for groups under {parent}: {_strerror(exc)}"
        if not os.path.exists(os.path.join(probe, needed)):
            return f"groups under {parent} have no {needed}"
        return None
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def _v2_controllers(mounts: Sequence[Mount]) -> dict[str, frozenset[str]]:
    offered = {}
    for mount in mounts:
        if mount.fstype == "cgroup2":
            try:
                offered[mount.mountpoint] = frozenset(_read(os.path.join(mount.mountpoint, "cgroup.controllers")).split())
            except OSError:
                offered[mount.mountpoint] = frozenset()
    return offered


def _choose(plan: dict[str, list[str]], version: str) -> tuple[dict[str, str], list[str]]:
    parents: dict[str, str] = {}
    problems: list[str] = []
    for controller in CONTROLLERS:
        for parent in plan.get(controller, []):
            problem = _probe(parent, version, controller)
            if problem is None:
                parents[controller] = parent
                break
            problems.append(problem)
    return parents, problems


@functools.cache
def detect() -> CgroupSupport:
    """What this host offers for memory and pids groups, probed once per process.

    v2 is used where its unified hierarchy offers memory or pids; else v1.  Off Linux (macOS: no cgroups,
    no ``/proc``) nothing is probed.
    """
    if not sys.platform.startswith("linux"):
        return CgroupSupport.none(f"cgroups are a Linux facility (this is {sys.platform})")
    try:
        mounts = parse_mounts(_read(MOUNTS_FILE))
        own = parse_proc_cgroup(_read(PROC_CGROUP_FILE))
    except OSError as exc:
        return CgroupSupport.none(f"cannot read {MOUNTS_FILE} or {PROC_CGROUP_FILE}: {_strerror(exc)}")
    if not mounts:
        return CgroupSupport.none("no cgroup file system is mounted")
    plan = candidate_parents(mounts, own, _v2_controllers(mounts))
    problems: list[str] = []
    best: CgroupSupport | None = None
    for version in ("v2", "v1"):  # the one offering more controllers; v2 on a tie
        if not plan[version]:
            continue
        parents, why = _choose(plan[version], version)
        problems += why
        if parents and (best is None or len(parents) > len(best.parents)):
            best = CgroupSupport(version=version, parents=parents)
    if best is not None:
        return best
    if problems:
        return CgroupSupport.none(problems[-1])
    return CgroupSupport.none("no cgroup hierarchy offers the memory or pids controller")


# ---------------------------------------------------------------------------
# Doing: one group
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CgroupStats:
    """What a group recorded.  None where this host does not report it.

    ``peak_memory_bytes`` is the most memory charged to the group at once (page
    cache and tmpfs pages included).  ``oom_kills`` counts processes the kernel
    killed for the memory limit; ``memory_limit_hits`` counts times usage hit the
    limit (reclaim included, so not a kill by itself); ``pids_limit_hits`` counts
    forks refused by ``pids.max``.
    """

    peak_memory_bytes: int | None
    oom_kills: int | None
    memory_limit_hits: int | None
    pids_limit_hits: int | None


def _keyed(text: str, key: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def _int_file(path: str) -> int | None:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return None


def _keyed_file(path: str, key: str) -> int | None:
    try:
        return _keyed(_read(path), key)
    except OSError:
        return None


class Group:
    """One cgroup (in each controller's hierarchy, for v1) holding one sandboxed run.

    Make it with ``create``; call ``join`` in the child before exec (everything
    it starts is then inside); afterwards ``kill_all``, ``stats``, ``remove``.
    """

    def __init__(self, name: str, version: str, dirs: Mapping[str, str]) -> None:
        self.name = name
        self.version = version
        self.dirs = dict(dirs)  # controller -> this group's directory
        self._unique_dirs = tuple(dict.fromkeys(self.dirs.values()))
        # Precomputed so the child's join allocates as little as possible.
        self._procs_files = tuple(os.path.join(d, "cgroup.procs") for d in self._unique_dirs)

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(c for c in CONTROLLERS if c in self.dirs)

    def describe(self) -> str:
        return f"{self.version} " + "+".join(self.controllers)

    @classmethod
    def create(cls, memory_bytes: int | None, pids_max: int | None, *, name: str | None = None,
               support: CgroupSupport | None = None) -> Group:
        """Make a group with these limits (None: no limit) under the detected parents.

        Raises CgroupError when cgroups are unavailable or the group cannot be set up
        (nothing is left behind then).
        """
        support = detect() if support is None else support
        if not support.available:
            raise CgroupError(f"cgroups unavailable: {support.reason}")
        _clean_leftovers_once(support)
        name = name or _next_name()
        dirs = {c: os.path.join(parent, name) for c, parent in support.parents.items()}
        group = cls(name, support.version or "", dirs)
        made: list[str] = []
        try:
            for d in group._unique_dirs:
                os.mkdir(d)
                made.append(d)
            group._set_limits(memory_bytes, pids_max)
        except OSError as exc:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise CgroupError(f"cannot set up cgroup {name}: {_strerror(exc)}") from exc
        return group

    def _set_limits(self, memory_bytes: int | None, pids_max: int | None) -> None:
        mem = self.dirs.get("memory")
        if mem is not None and memory_bytes is not None:
            if self.version == "v2":
                _write(os.path.join(mem, "memory.max"), str(memory_bytes))
                _write_if_present(os.path.join(mem, "memory.swap.max"), "0")
            else:
                _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory_bytes))
                # memsw (memory + swap) must not be below the memory limit: set after it.
                _write_if_present(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(memory_bytes))
        pids = self.dirs.get("pids")
        if pids is not None and pids_max is not None:
            _write(os.path.join(pids, "pids.max"), str(pids_max))

    def join(self) -> None:
        """Move the calling process into the group (every controller).  Meant for a child before exec."""
        pid = str(os.getpid()).encode()
        for path in self._procs_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def members(self) -> list[int]:
        """Pids of the live processes in the group (zombies are not listed)."""
        found: set[int] = set()
        for path in self._procs_files:
            try:
                found.update(int(p) for p in _read(path).split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def stats(self) -> CgroupStats:
        mem = self.dirs.get("memory")
        pids = self.dirs.get("pids")
        peak = oom = hits = None
        if mem is not None and self.version == "v2":
            peak = _int_file(os.path.join(mem, "memory.peak"))
            oom = _keyed_file(os.path.join(mem, "memory.events"), "oom_kill")
            hits = _keyed_file(os.path.join(mem, "memory.events"), "max")
        elif mem is not None:
            peak = _int_file(os.path.join(mem, "memory.max_usage_in_bytes"))
            oom = _keyed_file(os.path.join(mem, "memory.oom_control"), "oom_kill")
            hits = _int_file(os.path.join(mem, "memory.failcnt"))
        pid_hits = _keyed_file(os.path.join(pids, "pids.events"), "max") if pids is not None else None
        return CgroupStats(peak_memory_bytes=peak, oom_kills=oom, memory_limit_hits=hits, pids_limit_hits=pid_hits)

    def kill_all(self, timeout_s: float = KILL_TIMEOUT_S) -> bool:
        """SIGKILL every process in the group until it is empty; True when it is (within ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        if self.version == "v2":
            for d in self._unique_dirs:
                _write_if_present(os.path.join(d, "cgroup.kill"), "1")
        while True:
            listed = self.members()
            if not listed:
                return True
            if time.monotonic() >= deadline:
                return False
            self._signal(listed, signal.SIGKILL)
            time.sleep(KILL_POLL_S)

    def _signal(self, listed: Sequence[int], sig: int) -> None:
        """Signal ``listed`` through pidfds, and only those still members once pinned (pids may be reused)."""
        pinned: dict[int, int] = {}
        for pid in listed:
            try:
                pinned[pid] = os.pidfd_open(pid)
            except OSError:
                continue  # already gone
        try:
            still = set(self.members())
            for pid, fd in pinned.items():
                if pid in still:
                    try:
                        signal.pidfd_send_signal(fd, sig)
                    except OSError:
                        pass
        finally:
            for fd in pinned.values():
                os.close(fd)

    def remove(self, timeout_s: float = REMOVE_TIMEOUT_S) -> bool:
        """rmdir the group (retried while its last members leave); True when it is gone."""
        deadline = time.monotonic() + timeout_s
        gone = True
        for d in self._unique_dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        gone = False
                        break
                    time.sleep(0.02)
        return gone


def _write_if_present(path: str, value: str) -> None:
    try:
        _write(path, value)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------
# Doing: leftovers from a grader that was killed
# ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(support: CgroupSupport | None = None, *, min_age_s: float = LEFTOVER_MIN_AGE_S) -> list[str]:
    """Remove this module's empty groups whose grader process is gone; returns the removed directories.

    A group is left alone while its grader lives, while it is younger than
    ``min_age_s``, and while it holds processes.
    """
    support = detect() if support is None else support
    removed: list[str] = []
    if not support.available:
        return removed
    for parent in dict.fromkeys(support.parents.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            match = NAME_PATTERN.match(name)
            if match is None or _alive(int(match.group(1))):
                continue
            path = os.path.join(parent, name)
            try:
                if time.time() - os.stat(path).st_ctime < min_age_s:
                    continue
                if _read(os.path.join(path, "cgroup.procs")).split():
                    continue
                os.rmdir(path)
            except OSError:
                continue
            removed.append(path)
    return removed


def _clean_leftovers_once(support: CgroupSupport) -> None:
    global _leftovers_cleaned
    with _leftovers_lock:
        if _leftovers_cleaned:
            return
        _leftovers_cleaned = True
    clean_leftovers(support)
