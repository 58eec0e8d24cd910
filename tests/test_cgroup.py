"""Tests for grader.cgroup: detection, a group's memory and pids limits, killing, removal and leftovers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import cgroup
from grader.cgroup import CgroupError, CgroupStats, CgroupSupport, Group, Mount

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
IS_ROOT = os.geteuid() == 0
SUPPORT = cgroup.detect()
MiB = 1024**2

needs_groups = pytest.mark.skipif(
    not (SUPPORT.memory and SUPPORT.pids), reason=f"no memory+pids cgroups here: {SUPPORT.describe()}"
)


def marked_processes(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    token = f"cgmark{os.getpid()}x{random.randrange(10**12)}"
    yield token
    for pid in marked_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def group() -> Iterator[Group]:
    """A group with a 256 MiB memory limit and pids.max 16; killed and removed afterwards."""
    made = Group.create(256 * MiB, 16)
    yield made
    made.kill_all()
    made.remove()


def start_in(group: Group, *args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a hostile fixture inside ``group`` (it joins before exec), output captured."""
    return subprocess.Popen(
        [sys.executable, str(HOSTILE / args[0]), *args[1:]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=group.join, cwd=cwd,  # noqa: PLW1509 - no threads here
    )


def dead_pid() -> int:
    """A pid that no process has any more (a child that has exited and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------------------
# deciding: parsing and candidates (no cgroup needed)
# ---------------------------------------------------------------------------
HYBRID_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
HYBRID_SELF = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"


def test_proc_cgroup_is_read_per_controller_with_the_v2_entry_under_empty_name() -> None:
    assert cgroup.parse_proc_cgroup(HYBRID_SELF) == {"pids": "/", "memory": "/process_api/abc", "cpu": "/", "": "/"}
    assert cgroup.parse_proc_cgroup("5:cpu,cpuacct:/a b\n") == {"cpu": "/a b", "cpuacct": "/a b"}


def test_hybrid_host_uses_v1_under_its_own_cgroup_and_skips_the_empty_unified_mount() -> None:
    mounts = cgroup.parse_mounts(HYBRID_MOUNTS)
    assert [m.mountpoint for m in mounts] == [
        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified",
    ]
    plan = cgroup.candidate_parents(mounts, cgroup.parse_proc_cgroup(HYBRID_SELF),
                                    {"/sys/fs/cgroup/unified": frozenset()})
    assert plan == {
        "v2": {},
        "v1": {
            "memory": ["/sys/fs/cgroup/memory/process_api/abc", "/sys/fs/cgroup/memory"],
            "pids": ["/sys/fs/cgroup/pids"],
        },
    }


def test_unified_host_with_memory_and_pids_offers_v2_own_cgroup_then_root() -> None:
    mounts = [Mount("/sys/fs/cgroup", "cgroup2", ("rw", "nsdelegate"))]
    plan = cgroup.candidate_parents(mounts, {"": "/system.slice/grader.service"},
                                    {"/sys/fs/cgroup": frozenset({"cpu", "memory", "pids", "io"})})
    both = ["/sys/fs/cgroup/system.slice/grader.service", "/sys/fs/cgroup"]
    assert plan == {"v2": {"memory": both, "pids": both}, "v1": {}}


def test_support_describes_itself_in_one_line() -> None:
    assert CgroupSupport("v1", {"memory": "/m", "pids": "/p"}).describe() == "v1 memory+pids"
    assert CgroupSupport("v2", {"pids": "/u"}).describe() == "v2 pids"
    assert CgroupSupport.none("no cgroup file system is mounted").describe() == "none: no cgroup file system is mounted"


def test_creating_a_group_without_cgroups_says_why() -> None:
    with pytest.raises(CgroupError) as info:
        Group.create(MiB, 16, support=CgroupSupport.none("the grader is not root"))
    assert str(info.value) == "cgroups unavailable: the grader is not root"


def fake_group(tmp_path: Path, version: str, files: dict[str, str]) -> Group:
    """A Group over a plain directory holding the given control files (reading and writing them needs no cgroup)."""
    for name, text in {"cgroup.procs": "", **files}.items():
        (tmp_path / name).write_text(text)
    return Group("grader-1-1", version, {"memory": str(tmp_path), "pids": str(tmp_path)})


def test_v2_stats_come_from_memory_events_memory_peak_and_pids_events(tmp_path: Path) -> None:
    group = fake_group(tmp_path, "v2", {
        "memory.events": "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
        "memory.peak": "268435456\n",
        "pids.events": "max 3\n",
        "cgroup.kill": "",
    })
    assert group.stats() == CgroupStats(peak_memory_bytes=256 * MiB, oom_kills=1, memory_limit_hits=7,
                                        pids_limit_hits=3)
    assert group.kill_all(timeout_s=0.5) is True
    assert (tmp_path / "cgroup.kill").read_text() == "1"  # v2 kills the whole group in one write


def test_v1_stats_come_from_max_usage_failcnt_oom_control_and_pids_events(tmp_path: Path) -> None:
    group = fake_group(tmp_path, "v1", {
        "memory.max_usage_in_bytes": "1048576\n",
        "memory.failcnt": "12\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "pids.events": "max 0\n",
    })
    assert group.stats() == CgroupStats(peak_memory_bytes=MiB, oom_kills=2, memory_limit_hits=12, pids_limit_hits=0)


def test_a_kernel_without_oom_kill_counts_reports_none_not_zero(tmp_path: Path) -> None:
    group = fake_group(tmp_path, "v1", {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"})
    assert group.stats() == CgroupStats(peak_memory_bytes=None, oom_kills=None, memory_limit_hits=None,
                                        pids_limit_hits=None)


# ---------------------------------------------------------------------------
# doing: on this host
# ---------------------------------------------------------------------------
V1_HOST = os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") and os.path.exists("/sys/fs/cgroup/pids/tasks")


@pytest.mark.skipif(not (IS_ROOT and V1_HOST), reason="needs root on a host with cgroup v1 memory and pids mounts")
def test_detection_on_a_v1_host_says_v1_memory_and_pids_under_the_graders_own_memory_cgroup() -> None:
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    assert SUPPORT.describe() == "v1 memory+pids"
    assert SUPPORT.parents["memory"] == os.path.normpath(f"/sys/fs/cgroup/memory/{own['memory']}")
    assert SUPPORT.parents["pids"] == os.path.normpath(f"/sys/fs/cgroup/pids/{own['pids']}")


@needs_groups
def test_memory_limit_stops_a_child_touching_twice_the_limit_of_shared_memory(group: Group) -> None:
    child = start_in(group, "maps_shared_memory.py", "512")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert b"touched all" not in out and out.startswith(b"touched 0 MiB\n")
    stats = group.stats()
    assert stats.oom_kills is not None and stats.oom_kills >= 1
    assert stats.peak_memory_bytes is not None and 128 * MiB < stats.peak_memory_bytes <= 256 * MiB


@needs_groups
def test_pids_max_stops_a_fork_loop(group: Group, marker: str) -> None:
    child = start_in(group, "spawns_200_processes.py", marker)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert out == b"forked 15 of 200, then: [Errno 11] Resource temporarily unavailable\n"  # 16 = itself + 15
    assert group.stats().pids_limit_hits == 1


@needs_groups
def test_kill_all_leaves_no_process_even_those_that_ignore_sigterm_or_left_the_session(
    group: Group, marker: str, tmp_path: Path
) -> None:
    hanging = start_in(group, "hangs_with_children.py", marker, "3", cwd=tmp_path)
    escaping = start_in(group, "escapes_with_setsid.py", marker, "60", cwd=tmp_path)
    assert escaping.wait(timeout=30) == 0
    deadline = time.monotonic() + 30
    while not (tmp_path / "started.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert len(group.members()) == 1 + 3 + 1  # the hanging tree and the escapee
    assert group.kill_all() is True
    hanging.wait(timeout=10)
    assert group.members() == []
    assert marked_processes(marker) == []


@needs_groups
def test_remove_leaves_no_directory_and_refuses_while_a_process_is_inside(group: Group) -> None:
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=group.join)  # noqa: PLW1509
    try:
        assert group.remove(timeout_s=0.2) is False
        assert all(os.path.isdir(d) for d in group.dirs.values())
    finally:
        group.kill_all()
        sleeper.wait()
    assert group.remove() is True
    assert not any(os.path.exists(d) for d in group.dirs.values())


@needs_groups
def test_leftover_group_of_a_dead_grader_is_removed_once_empty() -> None:
    pid = dead_pid()
    leftover = Group.create(MiB * 64, 16, name=f"grader-{pid}-0")
    busy = Group.create(MiB * 64, 16, name=f"grader-{pid}-1")
    mine = Group.create(MiB * 64, 16, name=f"grader-{os.getpid()}-999999")
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=busy.join)  # noqa: PLW1509
    try:
        assert cgroup.clean_leftovers(min_age_s=3600) == []  # too young
        removed = set(cgroup.clean_leftovers(min_age_s=0))  # may include real leftovers of other dead graders
        assert set(leftover.dirs.values()) <= removed
        assert not removed & {*busy.dirs.values(), *mine.dirs.values()}
        assert not any(os.path.exists(d) for d in leftover.dirs.values())
        assert all(os.path.isdir(d) for d in busy.dirs.values())  # still holds a process
        assert all(os.path.isdir(d) for d in mine.dirs.values())  # its grader (this process) lives
    finally:
        for made in (busy, mine):
            made.kill_all()
            made.remove()
        sleeper.wait()
