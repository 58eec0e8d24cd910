"""Run one untrusted command in a sandbox with a wall-clock time box and capped logs.

Two isolation levels, chosen per run:

* ``"bwrap"``: bubblewrap, started as root, with private IPC/PID/network/UTS
  namespaces, a read-only view of the system (``/usr``, ``/etc``, the
  interpreter prefixes, ``ro_paths``), a private ``/tmp``, the work dir as the
  only writable host directory, ``masked_paths`` hidden under empty tmpfs (an
  ``ro_paths`` entry inside a masked folder is bound after the mask and shows
  through it), and
  the command run as uid/gid 65534 with no capabilities.  The sandbox dies with
  the grader (``--die-with-parent``) and everything in it dies with its PID
  namespace.
* ``"rlimits"`` / ``"rlimits+netns"``: the fallback without bubblewrap: the same
  resource limits, its own session and process group, and no network when
  a network namespace is permitted (the child enters one, its loopback up).  There is no private file system.  As root it
  runs the command as uid 65534 (through ``setpriv``, or where that is missing
  by the child's own setresuid before exec) when that user can be used here
  (``sandbox_user_probe``) and can reach the command, the work dir and the ro
  paths on the host; otherwise, and always when the grader is not root, the
  command runs as the grader's own user (``choose_run_as`` says why).

``choose_isolation("auto")`` picks bubblewrap when ``bwrap_probe`` finds it
works, else the fallback: a missing sandbox never stops a run.  Each probe runs
once per process (a process start each) and its answer is a frozen ``Probe``;
``SandboxResult.isolation_note`` records what was used and why in one line
(``describe_fallback``).

Portability: bubblewrap, network namespaces, ``setpriv``, cgroups, ``/proc``, prctl
and pidfds are Linux facilities, each used only where present.  Where one is
missing (macOS has none of them) the fallback goes on without it: no netns,
no cgroup (``grader.cgroup.detect`` says why), no parent-death signal, exit
detected by ``Popen.poll`` where ``os.waitid`` is missing.

Resource limits, in both modes:

* **A cgroup per run** (``grader.cgroup``), where the host offers one: the
  bwrap process (or the command) joins it before exec, so everything the run
  starts is inside.  Its memory limit counts every page the run touches,
  shared mappings and tmpfs files included (RLIMIT_DATA does not), and its
  ``pids.max`` counts only this run's processes.  After the command ends,
  everything left in the group is killed (in rlimits mode this catches a
  process that left the process group with ``setsid``), its statistics read
  and the group removed.  Without cgroups the run falls back to RLIMIT_NPROC,
  which is counted per uid on the whole host (every sandbox runs as uid
  65534, so one run's fork bomb starves the others); ``SandboxResult.cgroup``
  and ``.process_limit`` say which held.
* **rlimits**: RLIMIT_DATA (an extra layer under the memory cgroup),
  RLIMIT_FSIZE per file, RLIMIT_NOFILE, RLIMIT_CORE=0, RLIMIT_CPU if asked.
* **A disk cap on the work dir** (``Limits.disk_bytes``): the supervise loop
  measures the work dir (allocated blocks, symlinks never followed, hard links
  counted once) every ``DISK_POLL_S`` seconds, or less often when a walk is
  slow, and SIGKILLs the run when it is over.  The work dir can overshoot the
  cap by the write rate times (poll interval + one walk), and no single file
  passes RLIMIT_FSIZE.  A work dir with more than ``DISK_WALK_MAX_ENTRIES``
  entries, or nested deeper than ``DISK_WALK_MAX_DEPTH``, counts as over the
  cap (so a walk's cost stays bounded).  Only the work dir is measured: under
  bubblewrap the only other writable places are ``/tmp`` and ``/dev/shm``,
  private tmpfs of ``Limits.tmpfs_bytes`` each and charged to the memory
  cgroup; the rlimits fallback has no private ``/tmp``.

``SandboxResult.limit_exceeded`` names the limit that stopped a run (memory:
the cgroup's OOM killer fired; disk: the watcher stopped it; tree: the work dir
grew too many entries or folders too deep for the watcher to measure, so it
stopped it too; processes: a fork was refused by ``pids.max``), and
``limit_message`` gives the line a student reads.

Deciding is kept apart from doing: ``choose_isolation``, ``build_bwrap_argv``,
``build_rlimits_argv``, ``choose_run_as``, ``describe_fallback``, ``rlimit_settings``,
``classify_limit`` and ``limit_message`` only decide (the probes they read are
cached ``Probe`` values); ``run_sandboxed`` starts, supervises, times out
and cleans up.  This module imports only the standard library (and ``grader.errors``,
``grader.cgroup``, which import only the standard library).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import math
import os
import resource
import select
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.errors import GraderError

from grader import cgroup
from grader.cgroup import CgroupStats

__all__ = [
    "ISOLATIONS",
    "LIMIT_KINDS",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "DiskUsage",
    "Limits",
    "Probe",
    "RunAs",
    "SandboxResult",
    "SandboxSpec",
    "SandboxSpecError",
    "SandboxStopped",
    "SandboxUnavailableError",
    "build_bwrap_argv",
    "build_rlimits_argv",
    "bwrap_probe",
    "bwrap_usable",
    "choose_isolation",
    "choose_run_as",
    "classify_limit",
    "describe_fallback",
    "disk_usage",
    "group_limits",
    "limit_message",
    "netns_usable",
    "plan_fallback",
    "rlimit_settings",
    "run_sandboxed",
    "sandbox_user_probe",
    "stop_all",
    "truncation_marker",
    "unreachable_reason",
]

# ---------------------------------------------------------------------------
# Constants (one commented block)
# ---------------------------------------------------------------------------
SANDBOX_UID = 65534  # "nobody": the command never runs as root
SANDBOX_GID = 65534  # "nogroup"
ISOLATIONS = ("auto", "bwrap", "rlimits")
GiB = 1024**3
MiB = 1024**2
# System trees bound read-only into the bwrap sandbox (symlinks such as a
# merged-/usr /bin are recreated as symlinks; absent ones are skipped).
SYSTEM_RO_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
# bwrap makes missing parents of a mount point mode 0700; declare them 0755.
PARENT_DIR_MODE = "0755"
# Seconds spent draining pipes after the command has gone (descendants that
# escaped the process group may hold them open in rlimits mode).
DRAIN_AFTER_EXIT_S = 0.5
# Largest single read from a log pipe, and the pipe size asked for.
READ_CHUNK = 1 * MiB
PIPE_SIZE = 1 * MiB
# The probe that decides whether bubblewrap is usable must finish within this.
PROBE_TIMEOUT_S = 15.0
# After a kill, how long to wait for the sandbox's PID namespace to finish dying.
INIT_EXIT_WAIT_S = 2.0
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP, _IFREQ_SIZE = 0x8913, 0x8914, 0x1, 40  # bring an interface up (netdevice(7))
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_MAX = 63  # capability numbers tried when emptying the bounding set
_SIGNAL_MAX = 64  # statuses 129..192 from bubblewrap mean "killed by signal status-128"
# The limits a run can be stopped for (SandboxResult.limit_exceeded).
LIMIT_KINDS = ("memory", "disk", "tree", "processes")
# bubblewrap's own processes in the run's pids cgroup (the outer bwrap and the
# namespace's init): pids.max is max_processes plus these.
BWRAP_OWN_TASKS = 2
# The disk watcher: seconds between walks of the work dir, the largest share of
# wall time its walks may take (a slow walk stretches the interval), and the
# most entries / the deepest nesting a walk visits before the work dir counts
# as over its cap.
DISK_POLL_S = 0.1
DISK_WALK_SHARE = 0.2
DISK_WALK_MAX_ENTRIES = 100_000
DISK_WALK_MAX_DEPTH = 64
# Bounds for killing and removing a run's cgroup after it ends.
CGROUP_KILL_TIMEOUT_S = 5.0


class SandboxUnavailableError(GraderError, RuntimeError):
    """The requested isolation cannot be provided on this host."""


class SandboxStopped(BaseException):
    """``stop_all`` was called while this run was going: everything it started is killed, and no result is made.

    A BaseException, like KeyboardInterrupt: code that turns a failed run into a result must let it through.
    """


_stop_generation = 0  # bumped by stop_all(); a run started before the bump stops at once


def stop_all() -> None:
    """Stop every sandboxed run going on in this process (each raises SandboxStopped within half a second).

    For an interrupted batch: the runs in the other threads end now, not at their time limit. Runs
    started after the call are not affected.
    """
    global _stop_generation
    _stop_generation += 1


class SandboxSpecError(ValueError):
    """A SandboxSpec cannot be run as given (bad field, missing path, unreachable command)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to the sandboxed command and everything it starts.

    ``memory_bytes`` is the run's memory cgroup limit (every page it touches:
    heap, shared mappings, tmpfs files, page cache) and, as an extra layer,
    RLIMIT_DATA (heap and private writable mappings), not RLIMIT_AS: CUDA and
    JIT runtimes reserve huge address ranges they never touch, which RLIMIT_AS
    would refuse.  ``max_processes`` is the run's ``pids.max`` (threads count
    too); without cgroups it falls back to RLIMIT_NPROC, counted per uid on the
    whole host, so every sandbox running at once as uid 65534 shares it.
    ``file_size_bytes`` caps each file (RLIMIT_FSIZE), ``disk_bytes`` the whole
    work dir (None: unmeasured), ``tmpfs_bytes`` each of the bubblewrap
    sandbox's private ``/tmp`` and ``/dev/shm``.
    """

    memory_bytes: int = 8 * GiB
    file_size_bytes: int = 512 * MiB
    max_processes: int = 256
    max_open_files: int = 1024
    cpu_seconds: float | None = None
    disk_bytes: int | None = 8 * GiB
    tmpfs_bytes: int = 1 * GiB

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "file_size_bytes", "max_processes", "max_open_files", "disk_bytes",
                     "tmpfs_bytes"):
            value = getattr(self, name)
            if name == "disk_bytes" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SandboxSpecError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.cpu_seconds is not None and not (
            isinstance(self.cpu_seconds, (int, float)) and math.isfinite(self.cpu_seconds) and self.cpu_seconds > 0
        ):
            raise SandboxSpecError(f"Limits.cpu_seconds must be a positive number or None, got {self.cpu_seconds!r}")


@dataclass(frozen=True)
class SandboxSpec:
    """What to run, where, with which environment, limits and time box.

    ``env`` is the command's whole environment (nothing of the grader's leaks
    in); the command also sees ``PWD`` set to the work dir.  The log paths must
    lie outside ``workdir``.  ``run_sandboxed`` chowns ``workdir`` (recursively,
    never following symlinks) to uid/gid 65534 when the grader is root, so the
    command can write there.
    """

    command: tuple[str, ...]
    workdir: Path
    env: Mapping[str, str]
    time_limit_s: float
    stdout_path: Path
    stderr_path: Path
    grace_s: float = 3.0
    limits: Limits = field(default_factory=Limits)
    ro_paths: tuple[Path, ...] = ()
    masked_paths: tuple[Path, ...] = ()
    devices: tuple[str, ...] = ()
    log_cap_bytes: int = 2 * MiB
    isolation: str = "auto"

    def __post_init__(self) -> None:
        command = tuple(self.command)
        if not command or not all(isinstance(arg, str) for arg in command):
            raise SandboxSpecError(f"command must be a non-empty sequence of strings, got {self.command!r}")
        object.__setattr__(self, "command", command)
        for name in ("workdir", "stdout_path", "stderr_path"):
            object.__setattr__(self, name, _absolute(getattr(self, name), name))
        for name in ("ro_paths", "masked_paths"):
            object.__setattr__(self, name, tuple(_absolute(p, name) for p in getattr(self, name)))
        object.__setattr__(self, "devices", tuple(str(_absolute(d, "devices")) for d in self.devices))
        env = dict(self.env)
        bad = [k for k, v in env.items() if not isinstance(k, str) or not isinstance(v, str) or not k or "=" in k]
        if bad:
            raise SandboxSpecError(f"env must map variable names to strings; bad entry: {bad[0]!r}")
        object.__setattr__(self, "env", types.MappingProxyType(env))
        if not (isinstance(self.time_limit_s, (int, float)) and math.isfinite(self.time_limit_s) and self.time_limit_s > 0):
            raise SandboxSpecError(f"time_limit_s must be a positive number of seconds, got {self.time_limit_s!r}")
        if not (isinstance(self.grace_s, (int, float)) and math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise SandboxSpecError(f"grace_s must be zero or a positive number of seconds, got {self.grace_s!r}")
        if isinstance(self.log_cap_bytes, bool) or not isinstance(self.log_cap_bytes, int) or self.log_cap_bytes <= 0:
            raise SandboxSpecError(f"log_cap_bytes must be a positive integer, got {self.log_cap_bytes!r}")
        if self.isolation not in ISOLATIONS:
            raise SandboxSpecError(f"isolation must be one of {', '.join(ISOLATIONS)}; got {self.isolation!r}")
        if self.stdout_path == self.stderr_path:
            raise SandboxSpecError(f"stdout_path and stderr_path must differ; both are {self.stdout_path}")
        for name in ("stdout_path", "stderr_path"):
            log = getattr(self, name)
            if _is_within(log, self.workdir):
                raise SandboxSpecError(f"{name} {log} lies inside the work dir {self.workdir}; put logs outside it")


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended.

    ``exit_code`` is None when the command was killed by a signal (``signal``
    says which).  Under bubblewrap a status of 129..192 is read as death by
    signal status-128, as a shell does.  ``error`` is set only when the sandbox
    itself failed to start the command.

    ``limit_exceeded`` is "memory", "disk", "tree" or "processes" when that limit
    stopped the run (or refused it a process), else None; ``limit_message``
    words it for the student.  ``peak_memory_bytes`` is the most memory the
    run's cgroup was charged at once (None without a memory cgroup).
    ``cgroup`` says what held the run: "v1 memory+pids", "v2 memory+pids", or
    "none: <reason>"; ``process_limit`` is "pids.max" or "RLIMIT_NPROC" (the
    latter shared by every sandbox running as uid 65534 on the host).
    ``isolation_note`` says in one line what isolated the run: bubblewrap's
    version, or for the fallback why bubblewrap was not used, which uid the
    command ran as (and why, when not 65534) and whether it had a network.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    wall_seconds: float
    isolation: str
    stdout_path: Path
    stderr_path: Path
    stdout_truncated: bool
    stderr_truncated: bool
    error: str | None = None
    limit_exceeded: str | None = None
    peak_memory_bytes: int | None = None
    cgroup: str = "none: not started"
    process_limit: str = "RLIMIT_NPROC"
    isolation_note: str = ""


def _absolute(path: str | os.PathLike[str], name: str) -> Path:
    p = Path(path)
    if not p.is_absolute():
        raise SandboxSpecError(f"{name} must hold absolute paths, got {str(path)!r}")
    return Path(os.path.normpath(p))


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# ---------------------------------------------------------------------------
# Deciding: probes, isolation choice, argv and rlimits
# ---------------------------------------------------------------------------
def truncation_marker(cap_bytes: int) -> bytes:
    """The line appended to a log cut at ``cap_bytes``."""
    return f"\n[... output truncated at {cap_bytes} bytes ...]\n".encode()


def _mib(n: int) -> str:
    return str(n // MiB) if n % MiB == 0 else f"{n / MiB:.1f}"


def classify_limit(*, disk_stopped: str | None, stats: CgroupStats | None, sig: int | None) -> str | None:
    """Which limit stopped a run: "disk" or "tree" (the watcher stopped it: ``disk_stopped`` says which),
    "memory" (the cgroup's OOM killer
    fired; where the kernel does not count OOM kills, the limit was hit and the run died by SIGKILL),
    "processes" (a fork was refused by pids.max), or None."""
    if disk_stopped:
        return disk_stopped
    if stats is None:
        return None
    if stats.oom_kills:
        return "memory"
    if stats.oom_kills is None and stats.memory_limit_hits and sig == signal.SIGKILL:
        return "memory"
    if stats.pids_limit_hits:
        return "processes"
    return None


def limit_message(result: SandboxResult, limits: Limits) -> str | None:
    """The one line a student reads about the limit that stopped the run, or None."""
    kind = result.limit_exceeded
    if kind == "memory":
        return f"used more than its memory limit of {_mib(limits.memory_bytes)} MiB and was stopped"
    if kind == "disk":
        cap = f" of {_mib(limits.disk_bytes)} MiB" if limits.disk_bytes is not None else ""
        return f"wrote more than its disk limit{cap} to its work dir and was stopped"
    if kind == "tree":
        return (f"made its work dir too large to measure (more than {DISK_WALK_MAX_ENTRIES} entries or "
                f"{DISK_WALK_MAX_DEPTH} folders deep) and was stopped")
    if kind == "processes":
        return f"tried to run more than {limits.max_processes} processes at once (threads count too)"
    return None


def _setpriv_argv(setpriv: str, *, pdeathsig: bool) -> list[str]:
    argv = [
        setpriv,
        f"--reuid={SANDBOX_UID}",
        f"--regid={SANDBOX_GID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]
    if pdeathsig:
        argv.append("--pdeathsig=KILL")
    return [*argv, "--"]


def _find_tool(name: str) -> str | None:
    """A system tool on the grader's PATH, else in the usual system folders; None where it is not installed."""
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")


def _tool(name: str) -> str:
    return _find_tool(name) or name


@dataclass(frozen=True)
class Probe:
    """What one probe of the host found: whether the facility works, and why (or what it is) in one line."""

    usable: bool
    reason: str


@functools.cache
def bwrap_probe() -> Probe:
    """Whether the bubblewrap sandbox works here, with a one-line reason (probed once per process).

    It works when bwrap is installed, the grader is root, and a trivial
    ``true`` runs inside the same namespaces and mounts as uid 65534.  An
    installed bwrap that cannot create namespaces (an unprivileged container,
    AppArmor's block on user namespaces) fails here with bwrap's own last line.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Probe(False, "bwrap is not installed (Debian package bubblewrap)")
    if shutil.which("setpriv") is None:
        return Probe(False, "setpriv is not installed (Debian package util-linux)")
    if os.geteuid() != 0:
        return Probe(False, "the grader is not root (the bubblewrap sandbox starts as root and drops to uid 65534)")
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        probe = SandboxSpec(
            command=("true",),
            workdir=Path(tmp, "work"),
            env={"PATH": "/usr/bin:/bin"},
            time_limit_s=PROBE_TIMEOUT_S,
            stdout_path=Path(tmp, "stdout.log"),
            stderr_path=Path(tmp, "stderr.log"),
        )
        probe.workdir.mkdir()
        try:
            os.chown(probe.workdir, SANDBOX_UID, SANDBOX_GID)
            done = subprocess.run(
                build_bwrap_argv(probe),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                env={},
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return Probe(False, f"bwrap probe could not run: {_oneline_error(exc)}")
    if done.returncode != 0:
        return Probe(False, f"bwrap probe failed: {_last_line(done.stderr, done.returncode)}")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return Probe(True, f"{version or 'bwrap'} works as root, dropping to uid {SANDBOX_UID}")


def bwrap_usable() -> tuple[bool, str]:
    """``bwrap_probe()`` as (usable, one-line reason)."""
    probe = bwrap_probe()
    return probe.usable, probe.reason


@functools.cache
def netns_usable() -> bool:
    """Whether a child can enter a network namespace of its own with its loopback up (probed once; never on macOS).

    It takes root (or a user namespace's root) and a libc with ``unshare``.
    """
    libc_unshare = _libc_function("unshare") if sys.platform.startswith("linux") else None
    if libc_unshare is None:
        return False
    try:
        done = subprocess.run([_find_tool("true") or "/bin/true"], capture_output=True, timeout=PROBE_TIMEOUT_S,
                              env={}, check=False, preexec_fn=functools.partial(_enter_netns, libc_unshare))
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _enter_netns(libc_unshare: Callable[..., int]) -> None:
    """In a forked child: a network namespace of its own, its loopback up (as bubblewrap leaves it), nothing else.

    ``unshare --net`` would leave the loopback down, and a notebook's kernel talks to its runner over it.
    """
    if libc_unshare(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0).ljust(_IFREQ_SIZE, b"\0")
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP).ljust(_IFREQ_SIZE, b"\0"))


@functools.cache
def sandbox_user_probe() -> Probe:
    """Whether this root grader can hand a folder to uid/gid 65534 and run a command as that user (probed once).

    Fails in a container whose user namespace does not map uid 65534, or where
    setuid is refused; never usable when the grader is not root.  The drop is
    done by ``setpriv`` where installed, else by the child itself before exec.
    """
    if not _is_root():
        return Probe(False, "the grader is not root")
    with tempfile.TemporaryDirectory(prefix="sandbox-user-probe-") as tmp:
        try:
            os.chown(tmp, SANDBOX_UID, SANDBOX_GID)
            setpriv = _find_tool("setpriv")
            true = _find_tool("true") or "/bin/true"
            if setpriv is not None:
                argv, drop = [*_setpriv_argv(setpriv, pdeathsig=False), true], None
            else:
                argv, drop = [true], functools.partial(_drop_privileges, None, _libc_prctl())
            done = subprocess.run(argv, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, env={},
                                  timeout=PROBE_TIMEOUT_S, check=False, preexec_fn=drop)
        except (OSError, subprocess.SubprocessError) as exc:
            return Probe(False, f"uid {SANDBOX_UID} cannot be used here: {_oneline_error(exc)}")
    if done.returncode != 0:
        return Probe(False, f"uid {SANDBOX_UID} cannot be used here: {_last_line(done.stderr, done.returncode)}")
    return Probe(True, "setpriv" if setpriv is not None else "the child's own setresuid")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _last_line(stderr: bytes, returncode: int) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else f"exit status {returncode}"


def _oneline_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else ""))
    return _one_line(str(exc))


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def choose_isolation(requested: str) -> str:
    """Map a requested isolation to the one that will run: "bwrap", "rlimits" or "rlimits+netns"."""
    if requested not in ISOLATIONS:
        raise SandboxSpecError(f"isolation must be one of {', '.join(ISOLATIONS)}; got {requested!r}")
    if requested in ("auto", "bwrap"):
        usable, reason = bwrap_usable()
        if not usable and requested == "bwrap":
            raise SandboxUnavailableError(f"bubblewrap sandbox unavailable: {reason}")
        if usable:
            return "bwrap"
    return isolation_for(requested, bwrap=False, netns=netns_usable())


def isolation_for(requested: str, *, bwrap: bool, netns: bool) -> str:
    """The isolation a request gets on a machine where bubblewrap and a network namespace are (not) usable."""
    if requested in ("auto", "bwrap") and bwrap:
        return "bwrap"
    return "rlimits+netns" if netns else "rlimits"


@dataclass(frozen=True)
class RunAs:
    """Who the fallback runs the command as: ``uid``/``gid``, how it gets there, and why, in one line.

    ``via`` is "setpriv" (the argv starts with it), "child" (the forked child
    drops its own ids before exec: setpriv is missing) or "self" (no drop: the
    command runs as the grader's own user; ``reason`` says why).
    """

    uid: int
    gid: int
    via: str
    reason: str

    @property
    def drops(self) -> bool:
        return self.via != "self"

    def describe(self) -> str:
        if self.drops:
            return f"runs as uid {self.uid}"
        return f"runs as the grader's own uid {self.uid} ({self.reason})"


def choose_run_as(spec: SandboxSpec, *, as_root: bool, user_probe: Probe | None, setpriv: str | None) -> RunAs:
    """Decide who the rlimits fallback runs ``spec`` as (nothing is changed; ``user_probe`` is ``sandbox_user_probe()``).

    As root: uid 65534 when that user can be used here and can reach the command,
    the work dir's parent and every ro path; else the grader's own uid, with the
    first reason.  Not root: the grader's own uid.
    """
    own = os.geteuid() if hasattr(os, "geteuid") else -1
    own_gid = os.getegid() if hasattr(os, "getegid") else -1
    if not as_root:
        return RunAs(own, own_gid, "self", "the grader is not root")
    if user_probe is None or not user_probe.usable:
        return RunAs(own, own_gid, "self", user_probe.reason if user_probe else f"uid {SANDBOX_UID} was not probed")
    command = _resolve_command(spec.command[0], spec.env, spec.workdir)
    for what in (command, str(spec.workdir.parent), *map(str, spec.ro_paths)):
        if what is None:
            continue
        blocked = unreachable_reason(what)
        if blocked is not None:
            return RunAs(own, own_gid, "self", f"uid {SANDBOX_UID} cannot reach {what}: {blocked}")
    return RunAs(SANDBOX_UID, SANDBOX_GID, "setpriv" if setpriv else "child", "")


def describe_fallback(isolation: str, bwrap_problem: str | None, run_as: RunAs) -> str:
    """The rlimits fallback in one line: why not bubblewrap (None: it was not asked for), who the command runs as,
    and its network."""
    why = f"bubblewrap not used: {bwrap_problem or 'isolation rlimits was asked for'}"
    if isolation == "rlimits+netns":
        network = "no network (a network namespace with only its loopback)"
    else:
        network = "network open (a network namespace is not permitted here)"
    return f"{why}; {run_as.describe()}; {network}; no private file system"


def plan_fallback(spec: SandboxSpec, isolation: str) -> tuple[str, RunAs, str]:
    """The fallback's final isolation ("rlimits" or "rlimits+netns"), who runs the command, and the one-line note.

    Runs the (cached) probes it needs: setpriv's presence and, as root, ``sandbox_user_probe``.
    """
    as_root = _is_root()
    setpriv = _find_tool("setpriv")
    run_as = choose_run_as(spec, as_root=as_root, user_probe=sandbox_user_probe() if as_root else None,
                           setpriv=setpriv)
    problem = None if spec.isolation == "rlimits" else bwrap_usable()[1]
    return isolation, run_as, describe_fallback(isolation, problem, run_as)


def rlimit_settings(limits: Limits, *, nproc: bool = True) -> tuple[tuple[int, int], ...]:
    """The (resource, value) pairs to set as both soft and hard limit.

    ``nproc=False`` leaves RLIMIT_NPROC out: a pids cgroup caps the run instead.
    """
    settings = [
        (resource.RLIMIT_DATA, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    if nproc:
        settings.insert(2, (resource.RLIMIT_NPROC, limits.max_processes))
    if limits.cpu_seconds is not None:
        settings.append((resource.RLIMIT_CPU, math.ceil(limits.cpu_seconds)))
    return tuple(settings)


class _MountPlan:
    """Accumulates bwrap mount arguments and knows which directories exist inside."""

    def __init__(self) -> None:
        self.argv: list[str] = []
        self._mounts: list[tuple[str, str]] = []  # (destination, "bind" | "tmpfs" | "dir")

    def _covering(self, path: str) -> tuple[str, str] | None:
        for dest, kind in reversed(self._mounts):
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                return dest, kind
        return None

    def _exists_inside(self, path: str) -> bool:
        covering = self._covering(path)
        if covering is None:
            return False
        dest, kind = covering
        return kind == "bind" or dest == path

    def parents(self, path: str) -> None:
        for ancestor in reversed(PurePosixPath(path).parents):
            a = str(ancestor)
            if a != "/" and not self._exists_inside(a):
                self.argv += ["--perms", PARENT_DIR_MODE, "--dir", a]
                self._mounts.append((a, "dir"))

    def bind(self, option: str, source: str, dest: str) -> None:
        self.parents(dest)
        self.argv += [option, source, dest]
        self._mounts.append((dest, "bind"))

    def ro_bind_once(self, path: str) -> None:
        covering = self._covering(path)
        if covering is not None and covering[1] == "bind":
            return  # already visible (read-only system tree or an earlier ro path)
        self.bind("--ro-bind", path, path)

    def tmpfs(self, dest: str, *extra: str) -> None:
        self.parents(dest)
        self.argv += [*extra, "--tmpfs", dest]
        self._mounts.append((dest, "tmpfs"))

    def other(self, *args: str) -> None:
        self.argv += list(args)


def build_bwrap_argv(spec: SandboxSpec) -> list[str]:
    """The bubblewrap command line for ``spec`` (reads only the host's file layout)."""
    plan = _MountPlan()
    plan.other(
        _tool("bwrap"),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
    )
    for path in SYSTEM_RO_PATHS:
        if os.path.islink(path):
            plan.other("--symlink", os.readlink(path), path)
        elif os.path.isdir(path):
            plan.ro_bind_once(path)
    # --dev gives /dev/shm only as a root-owned directory on /dev's unsized tmpfs:
    # mount a sized, world-writable tmpfs there, as on /tmp.
    tmpfs_size = str(spec.limits.tmpfs_bytes)
    plan.other("--proc", "/proc", "--dev", "/dev")
    plan.tmpfs("/dev/shm", "--perms", "1777", "--size", tmpfs_size)
    plan.tmpfs("/tmp", "--perms", "1777", "--size", tmpfs_size)
    # The grader's own interpreter prefixes must be visible inside (venv and base). A read-only path inside a
    # masked folder is bound after the mask, so that it alone shows through (a GPU slot's own
    # /proc/driver/nvidia/gpus/<bus id> inside the masked folder of every GPU's).
    shown = [p for p in map(str, spec.ro_paths) if any(_inside(p, str(m)) for m in spec.masked_paths)]
    for prefix in dict.fromkeys([sys.base_prefix, sys.prefix, *map(str, spec.ro_paths)]):
        if prefix not in shown:
            plan.ro_bind_once(os.path.normpath(prefix))
    workdir = str(spec.workdir)
    plan.bind("--bind", workdir, workdir)
    for masked in map(str, spec.masked_paths):
        if os.path.isdir(masked):
            plan.tmpfs(masked)
        elif os.path.lexists(masked):
            plan.bind("--ro-bind", "/dev/null", masked)  # a masked file reads as empty
    for path in shown:
        plan.bind("--ro-bind", os.path.normpath(path), os.path.normpath(path))
    for device in spec.devices:
        plan.bind("--dev-bind", device, device)
    plan.other("--chdir", workdir, "--clearenv")
    for key, value in spec.env.items():
        plan.other("--setenv", key, value)
    plan.other("--", *_setpriv_argv(_tool("setpriv"), pdeathsig=False), *spec.command)
    return plan.argv


def _inside(path: str, folder: str) -> bool:
    """Whether path is folder or lies under it (lexically)."""
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def build_rlimits_argv(spec: SandboxSpec, *, run_as: RunAs) -> list[str]:
    """The command line for the fallback: ``setpriv`` when it drops the ids, then the command.

    The network namespace is entered by the forked child itself (``_enter_netns``), before any drop.
    """
    argv: list[str] = []
    if run_as.via == "setpriv":
        argv += _setpriv_argv(_tool("setpriv"), pdeathsig=True)
    return [*argv, *spec.command]


def unreachable_reason(path: str | os.PathLike[str], uid: int = SANDBOX_UID, gid: int = SANDBOX_GID) -> str | None:
    """Why ``uid`` (with only group ``gid``) cannot search/execute ``path`` on the host, or None.

    Every directory on the way (symlinks followed) needs search permission and
    ``path`` itself execute/search permission; ACLs are not consulted.
    """
    given = Path(os.path.abspath(path))
    chain: list[Path] = [*reversed(given.parents), given]
    real = Path(os.path.realpath(given))
    chain += [*reversed(real.parents), real]
    for step in dict.fromkeys(chain):
        try:
            st = os.stat(step)
        except OSError:
            return None  # missing paths are reported by whoever uses them
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return f"{step} is mode {stat.S_IMODE(st.st_mode):04o}"
    return None


def _resolve_command(command: str, env: Mapping[str, str], workdir: Path) -> str | None:
    if "/" in command:
        return str(workdir / command)
    return shutil.which(command, path=env.get("PATH", os.defpath))


def _preflight(spec: SandboxSpec) -> None:
    if not spec.workdir.is_dir():
        raise SandboxSpecError(f"work dir does not exist: {spec.workdir}")
    for path in spec.ro_paths:
        if not path.exists():
            raise SandboxSpecError(f"ro path does not exist: {path}")
    for device in spec.devices:
        if not os.path.exists(device):
            raise SandboxSpecError(f"device does not exist: {device}")


# ---------------------------------------------------------------------------
# Doing: start, supervise, time out, clean up
# ---------------------------------------------------------------------------
def _give_to_sandbox_user(workdir: Path) -> None:
    """chown -R to uid/gid 65534 without following symlinks, deepest entries first.

    The tree is the grader's own (staged or made by it, owned by root) when this runs. It is
    listed first, then handed over bottom-up: while an entry is chowned, every folder above
    it still belongs to root, so nothing running as 65534 (a concurrent run in the rlimits
    fallback, say) can swap a component of its path for a link. A regular file with other
    hard links is left alone: it may be a link to a host file that an earlier run planted,
    and chowning it would hand that file over too. The walk is iterative: a deep tree
    cannot exhaust the stack.
    """
    listed: list[tuple[bytes, os.stat_result]] = []
    pending = [os.fsencode(workdir)]
    while pending:
        path = pending.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        listed.append((path, st))
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as entries:
                    pending.extend(entry.path for entry in entries)
            except OSError:
                pass
    for path, st in reversed(listed):
        if (st.st_uid, st.st_gid) == (SANDBOX_UID, SANDBOX_GID):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            continue
        os.lchown(path, SANDBOX_UID, SANDBOX_GID)


def _child_setup(settings: tuple[tuple[int, int], ...], prctl: Callable[..., int] | None, parent: int,
                 join: Callable[[], None] | None = None, drop: tuple[int, int] | None = None,
                 netns: Callable[..., int] | None = None) -> None:
    """Runs in the forked child before exec: join the run's cgroup, enter a network namespace (``netns``: libc's
    unshare), limits, drop to ``drop`` (uid, gid) when given, then die with the grader (set last: a change of ids
    clears it)."""
    if join is not None:
        join()
    if netns is not None:
        _enter_netns(netns)
    for res, value in settings:
        _, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))
    if drop is not None:
        _drop_privileges(drop, prctl)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the grader died before the prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)


def _drop_privileges(ids: tuple[int, int] | None, prctl: Callable[..., int] | None) -> None:
    """In a forked child, as root: empty the capability bounding set, set no-new-privs (where prctl exists), clear
    the supplementary groups and become ``ids`` (default uid/gid 65534) for good: what setpriv does, without it."""
    uid, gid = ids if ids is not None else (SANDBOX_UID, SANDBOX_GID)
    if prctl is not None:
        for cap in range(_CAP_MAX + 1):
            prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # -1 (EINVAL) past the kernel's last capability: ignored
        prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.setgroups([])
    if hasattr(os, "setresuid"):
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    else:  # macOS: setgid/setuid as root set all three ids
        os.setgid(gid)
        os.setuid(uid)


def _libc_function(name: str) -> Callable[..., int] | None:
    """A libc function through ctypes, or None where the platform has none of that name (prctl on macOS)."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def _libc_prctl() -> Callable[..., int] | None:
    return _libc_function("prctl") if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class DiskUsage:
    """A work dir's allocated bytes; ``complete`` is False when the walk stopped at its entry or depth cap."""

    bytes: int
    entries: int
    complete: bool


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:  # O_NOATIME needs ownership when not root
        return os.open(name, _DIR_FLAGS & ~getattr(os, "O_NOATIME", 0), dir_fd=dir_fd)


def disk_usage(root: Path, *, max_entries: int = DISK_WALK_MAX_ENTRIES,
               max_depth: int = DISK_WALK_MAX_DEPTH) -> DiskUsage:
    """Bytes allocated under ``root`` (st_blocks * 512), walked iteratively through directory fds.

    Symlinks are never followed (directories are opened with O_NOFOLLOW
    relative to their parent's fd, so a directory swapped for a symlink
    mid-walk is skipped); a file with several hard links counts once; at most
    ``max_depth`` directory fds are open at once.  Entries that vanish during
    the walk are skipped.
    """
    try:
        top = _open_dir(str(root))
    except OSError:
        return DiskUsage(0, 0, True)
    total = os.fstat(top).st_blocks * 512
    entries = 0
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[int, object]] = []
    try:
        stack.append((top, os.scandir(top)))
    except OSError:
        os.close(top)
        return DiskUsage(total, 0, True)
    try:
        while stack:
            fd, it = stack[-1]
            entry = next(it, None)  # type: ignore[call-overload]
            if entry is None:
                it.close()  # type: ignore[attr-defined]
                os.close(fd)
                stack.pop()
                continue
            entries += 1
            if entries > max_entries:
                return DiskUsage(total, entries, False)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            if not stat.S_ISDIR(st.st_mode):
                continue
            if len(stack) >= max_depth:
                return DiskUsage(total, entries, False)
            try:
                child = _open_dir(entry.name, dir_fd=fd)
            except OSError:
                continue
            try:
                stack.append((child, os.scandir(child)))
            except OSError:
                os.close(child)
    finally:
        for fd, it in stack:
            it.close()  # type: ignore[attr-defined]
            os.close(fd)
    return DiskUsage(total, entries, True)


class _DiskWatcher:
    """Measures the work dir now and then; says when it is over its cap."""

    def __init__(self, root: Path, cap: int) -> None:
        self._root = root
        self._cap = cap
        self.next_at = 0.0  # monotonic time of the next walk: the first is at once
        self.last: DiskUsage | None = None

    def over(self, now: float) -> str | None:
        """None while the work dir is within its cap; "disk" past it, "tree" when it cannot be measured."""
        if now < self.next_at:
            return None
        began = time.monotonic()
        self.last = disk_usage(self._root)
        took = time.monotonic() - began
        self.next_at = time.monotonic() + max(DISK_POLL_S, took / DISK_WALK_SHARE)
        if not self.last.complete:
            return "tree"
        return "disk" if self.last.bytes > self._cap else None


class _CappedLog:
    """Writes the first ``cap`` bytes of a stream to a file, then a marker, then discards."""

    def __init__(self, path: Path, cap: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        self._cap = cap
        self._written = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        if self.truncated or not data:
            return
        room = self._cap - self._written
        if len(data) <= room:
            self._file.write(data)
            self._written += len(data)
            return
        self._file.write(data[:room])
        self._file.write(truncation_marker(self._cap))
        self._written = self._cap
        self.truncated = True

    def close(self) -> None:
        self._file.close()


class _Stopper:
    """Signals everything a sandboxed run started.

    Under bubblewrap the sandbox is a PID namespace whose init is the outer
    bwrap's only child: every process whose ``/proc/PID/ns/pid`` matches the
    init's is in the sandbox, and when the init dies the kernel kills them all.
    Signals go through pidfds, so a recycled pid is never hit.
    """

    def __init__(self, proc: subprocess.Popen[bytes], isolation: str, group: cgroup.Group | None = None) -> None:
        self._proc = proc
        self._group = group
        self._bwrap = isolation == "bwrap"
        self._init_fd: int | None = None
        self._namespace: str | None = None

    def terminate(self) -> None:
        """Ask politely: SIGTERM to the process group, or to every process in the PID namespace."""
        if self._bwrap:
            for pid_fd in self._namespace_members():
                _pidfd_signal(pid_fd, signal.SIGTERM)
        elif self._proc.returncode is None:
            _killpg(self._proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL everything: the namespace's processes, its init and the outer bwrap, or the process group."""
        if self._bwrap:
            for pid_fd in self._namespace_members():
                _pidfd_signal(pid_fd, signal.SIGKILL)
            if self._init_fd is not None:
                _pidfd_signal(self._init_fd, signal.SIGKILL, close=False)
            if self._proc.returncode is None:  # never signal a reaped (reusable) pid
                self._proc.kill()
        elif self._proc.returncode is None:
            _killpg(self._proc.pid, signal.SIGKILL)
        if self._group is not None:
            self._group.kill_all(CGROUP_KILL_TIMEOUT_S)  # whatever left the group or namespace

    def after_exit(self) -> None:
        """The command has exited but is not reaped yet: make sure nothing it started lives on."""
        if not self._bwrap:
            if self._proc.returncode is None:
                _killpg(self._proc.pid, signal.SIGKILL)  # its unreaped pid still holds the group
        elif self._init_fd is not None:
            # The namespace is gone once its init has exited (the kernel kills the rest first).
            select.select([self._init_fd], [], [], INIT_EXIT_WAIT_S)
        if self._group is not None:
            self._group.kill_all(CGROUP_KILL_TIMEOUT_S)  # e.g. a setsid escapee in rlimits mode
        self.close()

    def close(self) -> None:
        if self._init_fd is not None:
            os.close(self._init_fd)
            self._init_fd = None

    def _find_namespace(self) -> bool:
        if self._init_fd is not None:
            return True
        init = _child_of(self._proc.pid)
        if init is None:
            return False  # bwrap has not started its namespace yet
        try:
            init_fd = os.pidfd_open(init)
        except OSError:
            return False
        try:
            self._namespace = os.readlink(f"/proc/{init}/ns/pid")
        except OSError:
            os.close(init_fd)
            return False
        if self._namespace == os.readlink("/proc/self/ns/pid"):  # not in its own namespace yet: never signal ours
            os.close(init_fd)
            self._namespace = None
            return False
        self._init_fd = init_fd
        return True

    def _namespace_members(self) -> list[int]:
        """pidfds of the processes in the sandbox's PID namespace, its init excepted."""
        if not self._find_namespace():
            return []
        members: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or not _in_namespace(entry, self._namespace):
                continue
            try:
                pid_fd = os.pidfd_open(int(entry))
            except OSError:
                continue
            # Checked again with the pidfd held: the pid now names the process the pidfd pins.
            if _in_namespace(entry, self._namespace) and _parent_of(entry) != self._proc.pid:
                members.append(pid_fd)
            else:
                os.close(pid_fd)
        return members


def _in_namespace(pid: str, namespace: str | None) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == namespace
    except OSError:
        return False


def _parent_of(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _child_of(parent: int) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_of(entry) == parent:
            return int(entry)
    return None


def _pidfd_signal(pid_fd: int, sig: int, *, close: bool = True) -> None:
    try:
        signal.pidfd_send_signal(pid_fd, sig)
    except OSError:
        pass  # already gone
    finally:
        if close:
            os.close(pid_fd)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the command has exited; on Linux it stays a zombie (its pid and group reserved) until reaped.

    Where ``os.waitid`` is missing (macOS before Python 3.13) it is reaped here: its process group is then
    signalled only while another member keeps the group alive.
    """
    if not hasattr(os, "waitid"):
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _pump(sel: selectors.BaseSelector, timeout: float) -> None:
    if not sel.get_map():
        time.sleep(timeout)
        return
    for key, _ in sel.select(timeout):
        if key.data is None:
            continue  # the process pidfd: the caller checks for exit
        try:
            data = os.read(key.fd, READ_CHUNK)
        except BlockingIOError:
            continue
        if data:
            key.data.feed(data)
        else:
            sel.unregister(key.fd)
            os.close(key.fd)


def _supervise(
    proc: subprocess.Popen[bytes],
    logs: Sequence[tuple[int, _CappedLog]],
    started: float,
    spec: SandboxSpec,
    stopper: _Stopper,
    disk: _DiskWatcher | None = None,
) -> tuple[bool, str | None]:
    """Copy output to the logs until the command exits; enforce the time box and the disk cap.

    Returns (timed_out, what the disk watcher stopped it for: "disk", "tree" or None).
    """
    sel = selectors.DefaultSelector()
    for fd, log in logs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, log)
    pid_fd = _open_pidfd(proc.pid)
    if pid_fd is not None:
        sel.register(pid_fd, selectors.EVENT_READ, None)
    deadline = started + spec.time_limit_s
    kill_at = math.inf
    timed_out = False
    disk_stopped: str | None = None
    generation = _stop_generation
    try:
        while not _has_exited(proc):
            if _stop_generation != generation:
                raise SandboxStopped(f"stopped by stop_all() after {time.monotonic() - started:.1f} s")
            now = time.monotonic()
            if disk is not None and not disk_stopped:
                disk_stopped = disk.over(now)
                if disk_stopped:
                    stopper.kill()  # no grace: every second of it could be more bytes
                    kill_at = math.inf
            if not timed_out and not disk_stopped and now >= deadline:
                timed_out = True
                stopper.terminate()
                kill_at = now + spec.grace_s
            if now >= kill_at:
                stopper.kill()
                kill_at = math.inf
            next_event = kill_at if timed_out else deadline
            if disk is not None and not disk_stopped:
                next_event = min(next_event, disk.next_at)
            now = time.monotonic()
            _pump(sel, max(0.0, min(next_event - now, 0.5)))
        if pid_fd is not None:
            sel.unregister(pid_fd)
        stopper.after_exit()
        proc.wait()
        drain_until = time.monotonic() + DRAIN_AFTER_EXIT_S
        while sel.get_map() and time.monotonic() < drain_until:
            _pump(sel, max(0.0, drain_until - time.monotonic()))
    finally:  # the log pipes left registered, then the pidfd (still registered when an exception left the loop)
        for key in list(sel.get_map().values()):
            sel.unregister(key.fd)
            if key.fd != pid_fd:
                os.close(key.fd)
        sel.close()
        if pid_fd is not None:
            os.close(pid_fd)
    return timed_out, disk_stopped


def _exit_status(returncode: int, isolation: str) -> tuple[int | None, int | None]:
    if returncode < 0:
        return None, -returncode
    if isolation == "bwrap" and 128 < returncode <= 128 + _SIGNAL_MAX:
        return None, returncode - 128
    return returncode, None


def run_sandboxed(spec: SandboxSpec) -> SandboxResult:
    """Run ``spec.command`` sandboxed and time-boxed; return how it ended.

    Raises SandboxSpecError when the spec cannot run here (missing work dir,
    ro path or device; in rlimits mode as root, a command or work dir that uid
    65534 cannot reach) and SandboxUnavailableError when ``isolation="bwrap"``
    is asked for but unusable.  Whatever the command does, the call returns
    within about ``time_limit_s + grace_s + 1`` seconds.  At the time limit
    every sandboxed process gets SIGTERM, and SIGKILL ``grace_s`` later.  Over
    the disk cap, everything gets SIGKILL at once.  If the grader is interrupted
    (KeyboardInterrupt or any exception) the sandbox is killed before the
    exception propagates; if the grader process dies, the sandbox dies with it.

    Under bubblewrap nothing the command started survives the call.  Without
    it, the process group is killed, and where the run has a cgroup so is
    everything else in it (a process that left the group with ``setsid``
    included); without a cgroup such a process is out of reach, and when the
    grader is killed only the direct child dies with it.

    When the grader is root, ``workdir`` is chowned to uid/gid 65534 first
    (symlinks and multiply-linked files excepted).
    """
    isolation = choose_isolation(spec.isolation)
    _preflight(spec)
    run_as: RunAs | None = None
    if isolation == "bwrap":
        argv = build_bwrap_argv(spec)
        env: dict[str, str] = {}
        cwd = "/"
        note = bwrap_usable()[1]
    else:
        isolation, run_as, note = plan_fallback(spec, isolation)
        argv = build_rlimits_argv(spec, run_as=run_as)
        env = {**spec.env, "PWD": str(spec.workdir)}
        cwd = str(spec.workdir)
    if isolation == "bwrap" or (run_as is not None and run_as.drops):
        _give_to_sandbox_user(spec.workdir)

    stdout_log = _CappedLog(spec.stdout_path, spec.log_cap_bytes)
    stderr_log = _CappedLog(spec.stderr_path, spec.log_cap_bytes)
    prctl = _libc_prctl() if isolation != "bwrap" else None
    started = time.monotonic()
    group: cgroup.Group | None = None
    try:
        executable = _resolve_command(spec.command[0], spec.env, spec.workdir)
        if executable is None or not os.path.isfile(executable):
            if "/" in spec.command[0]:
                missing = f"command not found: {executable}"
            else:
                missing = f"command not found on PATH {spec.env.get('PATH', os.defpath)!r}: {spec.command[0]!r}"
            return _not_started(spec, isolation, started, missing, note=note)
        group, cgroup_line = _make_group(spec.limits, isolation)
        has_pids = group is not None and "pids" in group.dirs
        drop = (run_as.uid, run_as.gid) if run_as is not None and run_as.via == "child" else None
        netns = _libc_function("unshare") if isolation == "rlimits+netns" else None
        setup = functools.partial(_child_setup, rlimit_settings(spec.limits, nproc=not has_pids), prctl,
                                  os.getpid(), group.join if group is not None else None, drop, netns)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
                # Safe with the scheduler's threads: the hook makes only system calls on objects built before the
                # fork (no imports, no locks), and joining the cgroup must happen before exec.
                preexec_fn=setup,  # noqa: PLW1509
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return _not_started(spec, isolation, started, f"could not start {argv[0]}: {exc}", cgroup_line, note)
        assert proc.stdout is not None and proc.stderr is not None
        stdout_fd, stderr_fd = os.dup(proc.stdout.fileno()), os.dup(proc.stderr.fileno())
        proc.stdout.close()
        proc.stderr.close()
        for fd in (stdout_fd, stderr_fd):
            _grow_pipe(fd)
        stopper = _Stopper(proc, isolation, group)
        disk = _DiskWatcher(spec.workdir, spec.limits.disk_bytes) if spec.limits.disk_bytes is not None else None
        try:
            timed_out, disk_stopped = _supervise(
                proc, [(stdout_fd, stdout_log), (stderr_fd, stderr_log)], started, spec, stopper, disk
            )
        except BaseException:
            stopper.kill()
            stopper.after_exit()
            proc.wait()
            raise
        wall = time.monotonic() - started
        stats = group.stats() if group is not None else None
    finally:
        stdout_log.close()
        stderr_log.close()
        if group is not None:
            group.kill_all(CGROUP_KILL_TIMEOUT_S)
            group.remove()
    exit_code, sig = _exit_status(proc.returncode, isolation)
    return SandboxResult(
        exit_code=exit_code,
        signal=sig,
        timed_out=timed_out,
        wall_seconds=wall,
        isolation=isolation,
        stdout_path=spec.stdout_path,
        stderr_path=spec.stderr_path,
        stdout_truncated=stdout_log.truncated,
        stderr_truncated=stderr_log.truncated,
        error=None,
        limit_exceeded=classify_limit(disk_stopped=disk_stopped, stats=stats, sig=sig),
        peak_memory_bytes=stats.peak_memory_bytes if stats is not None else None,
        cgroup=cgroup_line,
        process_limit="pids.max" if has_pids else "RLIMIT_NPROC",
        isolation_note=note,
    )


def group_limits(limits: Limits, isolation: str) -> tuple[int, int]:
    """The run's cgroup limits: (memory bytes, pids.max); bubblewrap's own two processes count in pids."""
    return limits.memory_bytes, limits.max_processes + (BWRAP_OWN_TASKS if isolation == "bwrap" else 0)


def _make_group(limits: Limits, isolation: str) -> tuple[cgroup.Group | None, str]:
    """The run's cgroup and the line SandboxResult.cgroup gets; (None, "none: <reason>") without one."""
    support = cgroup.detect()
    if not support.available:
        return None, support.describe()
    memory, pids_max = group_limits(limits, isolation)
    try:
        group = cgroup.Group.create(memory, pids_max, support=support)
    except OSError as exc:
        return None, f"none: {exc}"
    return group, group.describe()


def _not_started(spec: SandboxSpec, isolation: str, started: float, error: str,
                 cgroup_line: str = "none: not started", note: str = "") -> SandboxResult:
    return SandboxResult(
        exit_code=None,
        signal=None,
        timed_out=False,
        wall_seconds=time.monotonic() - started,
        isolation=isolation,
        stdout_path=spec.stdout_path,
        stderr_path=spec.stderr_path,
        stdout_truncated=False,
        stderr_truncated=False,
        error=error,
        cgroup=cgroup_line,
        isolation_note=note,
    )


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass
