"""Tests for grader.sandbox: isolation, limits, the time box and capped logs, against hostile fixtures."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import cgroup, sandbox
from grader.cgroup import CgroupStats, CgroupSupport
from grader.sandbox import (
    Limits,
    SandboxResult,
    SandboxSpec,
    SandboxSpecError,
    SandboxUnavailableError,
    build_bwrap_argv,
    classify_limit,
    disk_usage,
    limit_message,
    run_sandboxed,
    truncation_marker,
)

REPO = Path(__file__).resolve().parents[1]
HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
IS_ROOT = os.geteuid() == 0
BWRAP_OK, BWRAP_WHY = sandbox.bwrap_usable()
MiB = 1024**2

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: only root can drop the command to uid 65534")
needs_bwrap = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}"),
]
BOTH_MODES = pytest.mark.parametrize(
    "mode", [pytest.param("bwrap", marks=needs_bwrap), pytest.param("rlimits")]
)
CGROUPS = cgroup.detect()
needs_cgroups = pytest.mark.skipif(
    not (IS_ROOT and CGROUPS.memory and CGROUPS.pids), reason=f"needs root and memory+pids cgroups: {CGROUPS.describe()}"
)
MARKER_VAR = "SANDBOX_TEST_MARKER"  # every process of a run inherits it, whatever its command line
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------
def boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/PID/stat gives start times in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def marked_processes(marker: str) -> list[int]:
    """Live processes whose command line or environment contains ``marker`` (zombies have neither)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (
            marker.encode() in _read(f"/proc/{entry}/cmdline") or marker.encode() in _read(f"/proc/{entry}/environ")
        ):
            found.append(int(entry))
    return found


def sandbox_user_processes(since_ticks: int) -> dict[int, tuple[int, bytes, bytes]]:
    """Every live process of uid 65534 started at or after ``since_ticks``: pid -> (start, cmdline, environ)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        status, stat_line = _read(f"/proc/{entry}/status"), _read(f"/proc/{entry}/stat")
        uid = next((line.split()[1] for line in status.splitlines() if line.startswith(b"Uid:")), None)
        if uid != str(sandbox.SANDBOX_UID).encode() or not stat_line:
            continue
        fields = stat_line.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z":
            continue  # a zombie is dead already (its parent has not reaped it yet)
        start = int(fields[19])  # field 22 of /proc/PID/stat
        if start >= since_ticks:
            found[int(entry)] = (start, _read(f"/proc/{entry}/cmdline"), _read(f"/proc/{entry}/environ"))
    return found


def leftovers(marker: str, since_ticks: int = 0) -> list[int]:
    """This test's processes still alive: uid-65534 processes started since the test began that carry its marker
    (on the command line or, inherited by every descendant, in the environment), and any other marked process."""
    mine = {pid for pid, (_, cmdline, environ) in sandbox_user_processes(since_ticks).items()
            if marker.encode() in cmdline or marker.encode() in environ}
    return sorted(mine | set(marked_processes(marker)))


def wait_until_no_processes(marker: str, within_s: float = 5.0, since_ticks: int = 0) -> list[int]:
    """Gives the kernel a moment to finish kills already sent; returns what is still there."""
    deadline = time.monotonic() + within_s
    while (left := leftovers(marker, since_ticks)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def host_shmem_bytes() -> int:
    """The host's shared memory and tmpfs pages, from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def python_for(mode: str) -> str:
    """An interpreter the sandbox user can run in this mode."""
    if mode == "bwrap" or not IS_ROOT:
        return sys.executable
    for candidate in (sys.executable, "/usr/bin/python3"):
        if shutil.which(candidate) and sandbox.unreachable_reason(candidate) is None:
            return candidate
    pytest.skip("no Python interpreter here is reachable by uid 65534 (needed without bubblewrap)")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A work dir directly under /tmp, so uid 65534 can reach it even without bubblewrap."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def began() -> int:
    """When the test began, in boot clock ticks (as /proc/PID/stat start times)."""
    return boot_ticks()


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique token the fixtures put on their command lines and runs in their environment; kills (by pid)
    anything left with it."""
    token = f"sbxmark{os.getpid()}x{random.randrange(10**12)}"
    yield token
    for pid in marked_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_spec(mode: str, workdir: Path, logs: Path, command: tuple[str, ...], marker: str | None = None,
              **overrides) -> SandboxSpec:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LC_ALL": "C.UTF-8"}
    if marker is not None:
        env[MARKER_VAR] = marker
    fields = {
        "command": command,
        "workdir": workdir,
        "env": env,
        "time_limit_s": 30.0,
        "stdout_path": logs / "stdout.log",
        "stderr_path": logs / "stderr.log",
        "isolation": mode,
    }
    fields.update(overrides)
    return SandboxSpec(**fields)


def run_fixture(
    mode: str, workdir: Path, logs: Path, script: str, *args: str, **overrides
) -> tuple[SandboxResult, bytes, bytes]:
    """Copies a hostile fixture into the work dir and runs it there; returns the result and both logs."""
    shutil.copy(HOSTILE / script, workdir / script)
    spec = make_spec(mode, workdir, logs, (python_for(mode), script, *args), **overrides)
    result = run_sandboxed(spec)
    return result, spec.stdout_path.read_bytes(), spec.stderr_path.read_bytes()


def expected_isolation(mode: str) -> str:
    return sandbox.choose_isolation(mode)


# ---------------------------------------------------------------------------
# behaviour, in both modes
# ---------------------------------------------------------------------------
@BOTH_MODES
def test_exit_code_and_both_streams_pass_through(mode: str, workdir: Path, tmp_path: Path) -> None:
    result, out, err = run_fixture(mode, workdir, tmp_path, "exits_with_code.py", "3")
    assert (result.exit_code, result.signal, result.timed_out, result.error) == (3, None, False, None)
    assert result.isolation == expected_isolation(mode)
    assert out == b"hello from stdout\n"
    assert err == b"hello from stderr\n"
    assert (result.stdout_truncated, result.stderr_truncated) == (False, False)


@BOTH_MODES
def test_exception_at_import_gives_nonzero_exit_and_traceback_in_stderr_log(
    mode: str, workdir: Path, tmp_path: Path
) -> None:
    result, out, err = run_fixture(mode, workdir, tmp_path, "raises_at_import.py")
    assert result.exit_code == 1
    assert out == b""
    assert err.startswith(b"Traceback (most recent call last):\n")
    assert err.endswith(b"RuntimeError: this submission fails at import time\n")


@BOTH_MODES
def test_hanging_tree_that_ignores_sigterm_is_killed_after_grace_and_nothing_survives(
    mode: str, workdir: Path, tmp_path: Path, marker: str, began: int
) -> None:
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "hangs_with_children.py", marker, "3", time_limit_s=1.5, grace_s=1.0, marker=marker
    )
    assert result.timed_out is True
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert 2.5 <= result.wall_seconds < 2.5 + 2.0  # limit + grace, returned promptly after
    assert out == b"started 3 children\n"
    assert len((workdir / "started.txt").read_text().split()) == 3  # what it wrote before the kill stays
    assert wait_until_no_processes(marker, since_ticks=began) == []


@BOTH_MODES
def test_sigterm_at_time_limit_lets_the_command_save_and_exit(mode: str, workdir: Path, tmp_path: Path) -> None:
    result, _, _ = run_fixture(mode, workdir, tmp_path, "saves_on_sigterm.py", time_limit_s=1.0, grace_s=10.0)
    assert result.timed_out is True
    assert (result.exit_code, result.signal) == (0, None)
    assert (workdir / "saved.txt").read_text() == "saved on SIGTERM\n"
    assert result.wall_seconds < 5.0  # it exited on SIGTERM, long before the grace ran out


@BOTH_MODES
def test_file_size_limit_stops_a_1gb_write_at_the_limit(mode: str, workdir: Path, tmp_path: Path) -> None:
    limit = 16 * MiB
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "writes_1gb_file.py", limits=Limits(file_size_bytes=limit)
    )
    # Python ignores SIGXFSZ, so the write fails with EFBIG and the script reports it.
    assert result.exit_code == 1
    assert out == f"write stopped after {limit} bytes: [Errno 27] File too large\n".encode()
    assert (workdir / "big.bin").stat().st_size == limit


@BOTH_MODES
def test_memory_limit_refuses_a_2gb_allocation(mode: str, workdir: Path, tmp_path: Path) -> None:
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "allocates_2gb.py", limits=Limits(memory_bytes=512 * MiB)
    )
    assert result.exit_code == 1
    assert out == b"allocation refused: MemoryError\n"


@BOTH_MODES
def test_network_is_cut_off(mode: str, workdir: Path, tmp_path: Path) -> None:
    if mode == "rlimits" and expected_isolation(mode) == "rlimits":
        pytest.skip("unshare --net is not permitted here, so the fallback keeps the network")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = str(listener.getsockname()[1])
        control = subprocess.run(
            [sys.executable, str(HOSTILE / "tries_network.py"), "127.0.0.1", port],
            capture_output=True, text=True, timeout=30, check=True,
        )
        assert control.stdout.splitlines()[-1] == f"network reachable: connected to 127.0.0.1:{port}"
        result, out, _ = run_fixture(mode, workdir, tmp_path, "tries_network.py", "127.0.0.1", port)
    assert result.exit_code == 0
    interfaces, verdict = out.decode().splitlines()
    assert interfaces == "interfaces: lo"
    assert verdict.startswith("network blocked: ")


@BOTH_MODES
@needs_root  # as root the limit counts only uid 65534's processes, and the bomb cannot run as root
def test_process_limit_makes_fork_fail_inside_and_spares_the_host(
    mode: str, workdir: Path, tmp_path: Path, marker: str, began: int
) -> None:
    limits = Limits(max_processes=64)
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "spawns_200_processes.py", marker, limits=limits, time_limit_s=20, marker=marker
    )
    assert result.exit_code == 0
    match = re.fullmatch(rb"forked (\d+) of 200, then: \[Errno 11\] Resource temporarily unavailable\n", out)
    assert match is not None, out
    assert int(match.group(1)) < 64
    if CGROUPS.pids:  # the run's own pids.max (the fixture itself + 63 children), not the uid's RLIMIT_NPROC
        assert int(match.group(1)) == 63
        assert (result.process_limit, result.limit_exceeded) == ("pids.max", "processes")
        assert limit_message(result, limits) == "tried to run more than 64 processes at once (threads count too)"
    assert wait_until_no_processes(marker, since_ticks=began) == []
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still start processes


# ---------------------------------------------------------------------------
# resource limits that rlimits alone miss: shared memory, tmpfs, the whole disk, other sandboxes' processes
# ---------------------------------------------------------------------------
@BOTH_MODES
@needs_cgroups
def test_shared_memory_over_the_limit_is_stopped_as_memory(
    mode: str, workdir: Path, tmp_path: Path, marker: str, began: int
) -> None:
    limits = Limits(memory_bytes=256 * MiB)  # RLIMIT_DATA does not count MAP_SHARED: only the cgroup stops this
    result, out, _ = run_fixture(mode, workdir, tmp_path, "maps_shared_memory.py", "512", limits=limits, marker=marker)
    assert (result.exit_code, result.signal, result.timed_out) == (None, signal.SIGKILL, False)
    assert result.limit_exceeded == "memory"
    assert limit_message(result, limits) == "used more than its memory limit of 256 MiB and was stopped"
    assert out.startswith(b"touched 0 MiB\n") and b"touched all" not in out
    assert result.peak_memory_bytes is not None and 128 * MiB < result.peak_memory_bytes <= 256 * MiB
    assert result.cgroup == CGROUPS.describe()
    assert wait_until_no_processes(marker, since_ticks=began) == []


@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
def test_tmp_and_dev_shm_are_sized_tmpfs_that_vanish_with_the_sandbox(
    workdir: Path, tmp_path: Path, marker: str, began: int
) -> None:
    before = host_shmem_bytes()
    limits = Limits(tmpfs_bytes=64 * MiB, memory_bytes=1024 * MiB)
    result, out, _ = run_fixture(
        "bwrap", workdir, tmp_path, "fills_tmpfs.py", "128", "/tmp", "/dev/shm", limits=limits, marker=marker
    )
    assert result.exit_code == 0 and result.limit_exceeded is None
    assert out == (
        b"/tmp: wrote 64 MiB, then: [Errno 28] No space left on device\n"
        b"/dev/shm: wrote 64 MiB, then: [Errno 28] No space left on device\n"
    )
    # The fixture left 128 MiB in its tmpfs; they went with the sandbox (others' runs may move Shmem a little).
    deadline = time.monotonic() + 5
    while host_shmem_bytes() > before + 32 * MiB and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_shmem_bytes() <= before + 32 * MiB
    assert wait_until_no_processes(marker, since_ticks=began) == []


@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
@needs_cgroups
def test_tmpfs_files_count_against_the_memory_limit(workdir: Path, tmp_path: Path, marker: str) -> None:
    limits = Limits(tmpfs_bytes=512 * MiB, memory_bytes=128 * MiB)
    result, out, _ = run_fixture("bwrap", workdir, tmp_path, "fills_tmpfs.py", "256", "/dev/shm", limits=limits,
                                 marker=marker)
    assert (result.signal, result.limit_exceeded) == (signal.SIGKILL, "memory")
    assert out == b""  # killed while writing
    assert limit_message(result, limits) == "used more than its memory limit of 128 MiB and was stopped"


@BOTH_MODES
def test_many_small_files_beyond_the_disk_limit_stop_the_run(
    mode: str, workdir: Path, tmp_path: Path, marker: str, began: int
) -> None:
    limits = Limits(disk_bytes=64 * MiB, file_size_bytes=2 * MiB)  # each 1 MiB file is under the per-file cap
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "fills_disk_with_small_files.py", "1", "1024", limits=limits, time_limit_s=30,
        marker=marker,
    )
    assert (result.exit_code, result.signal, result.timed_out) == (None, signal.SIGKILL, False)
    assert result.limit_exceeded == "disk"
    assert limit_message(result, limits) == "wrote more than its disk limit of 64 MiB to its work dir and was stopped"
    assert out == b""  # it never got to the end
    assert result.wall_seconds < 10
    used = disk_usage(workdir)
    assert used.complete and 64 * MiB < used.bytes < 1024 * MiB
    assert wait_until_no_processes(marker, since_ticks=began) == []


@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False], ids=["cgroups", "rlimit-nproc"])
def test_a_fork_bomb_in_one_sandbox_does_not_starve_a_concurrent_one(
    cgroups: bool, tmp_path: Path, marker: str, began: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both run as uid 65534.  With RLIMIT_NPROC (per uid on the host) the bomb takes the other's processes too;
    the rlimit-nproc case shows that failure, which per-run pids cgroups fix."""
    if not cgroups:
        monkeypatch.setattr(cgroup, "detect", lambda: CgroupSupport.none("disabled for this test"))
    limits = Limits(max_processes=64)
    bomb_dir, other_dir = (Path(tempfile.mkdtemp(prefix=f"sandbox-test-{n}-", dir="/tmp")) for n in ("bomb", "other"))
    bomb_box: list[tuple[SandboxResult, bytes, bytes]] = []
    try:
        bomb = threading.Thread(target=lambda: bomb_box.append(run_fixture(
            "bwrap", bomb_dir, tmp_path / "bomb", "fork_bomb.py", marker, "6", limits=limits, marker=marker)))
        bomb.start()
        deadline = time.monotonic() + 20
        while not (bomb_dir / "bomb_full.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (bomb_dir / "bomb_full.txt").exists(), "the bomb never hit its process limit"
        other, other_out, _ = run_fixture(
            "bwrap", other_dir, tmp_path / "other", "spawns_20_processes.py", marker, limits=limits, marker=marker
        )
        bomb.join(timeout=60)
        assert not bomb.is_alive()
    finally:
        shutil.rmtree(bomb_dir, ignore_errors=True)
        shutil.rmtree(other_dir, ignore_errors=True)
    bombed, bomb_out, _ = bomb_box[0]
    assert bombed.exit_code == 0 and bomb_out.endswith(b" children for 6 s\n")
    if cgroups:
        assert (other.exit_code, other_out) == (0, b"spawned 20 processes\n")
        assert other.process_limit == bombed.process_limit == "pids.max"
        assert bomb_out.startswith(b"forked 63, then: [Errno 11] Resource temporarily unavailable\n")
        assert bombed.limit_exceeded == "processes" and other.limit_exceeded is None
    else:  # how it was: the other sandbox could not start its processes (or even its interpreter)
        assert other.exit_code != 0
        assert re.fullmatch(rb"(spawned \d+ of 20, then: \[Errno 11\] Resource temporarily unavailable\n)?", other_out)
        assert (other.cgroup, other.process_limit) == ("none: disabled for this test", "RLIMIT_NPROC")
        assert bombed.limit_exceeded is None  # RLIMIT_NPROC refusals are not counted anywhere
    assert wait_until_no_processes(marker, since_ticks=began) == []


@needs_root
@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False], ids=["cgroups", "no-cgroups"])
def test_rlimits_mode_kills_a_setsid_escapee_only_with_a_cgroup(
    cgroups: bool, workdir: Path, tmp_path: Path, marker: str, began: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not cgroups:
        monkeypatch.setattr(cgroup, "detect", lambda: CgroupSupport.none("disabled for this test"))
    result, out, _ = run_fixture("rlimits", workdir, tmp_path, "escapes_with_setsid.py", marker, "30", marker=marker)
    assert (result.exit_code, out) == (0, b"left a child behind\n")
    escaped = int((workdir / "escaped.txt").read_text())
    if cgroups:
        assert wait_until_no_processes(marker, since_ticks=began) == []
    else:  # the documented gap of the fallback without cgroups; the marker fixture kills it
        assert leftovers(marker, began) == [escaped]


@BOTH_MODES
def test_binary_flood_on_stdout_is_capped_with_marker_and_fast(mode: str, workdir: Path, tmp_path: Path) -> None:
    result, out, err = run_fixture(mode, workdir, tmp_path, "floods_non_utf8_stdout.py")
    cap = 2 * MiB
    stream = random.Random(1234).randbytes(MiB) * 2
    assert result.exit_code == 0
    assert result.stdout_truncated is True and result.stderr_truncated is False
    assert out == stream[:cap] + b"\n[... output truncated at 2097152 bytes ...]\n"
    assert err == b"\xff\xfe not utf-8 \xc3\x28\n"
    assert result.wall_seconds < 15.0


@BOTH_MODES
def test_environment_is_exactly_the_given_one_plus_pwd(
    mode: str, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "must-not-leak")
    given = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LC_ALL": "C.UTF-8", "GRADER_SEED": "7"}
    result, out, _ = run_fixture(mode, workdir, tmp_path, "reports_identity.py", env=given)
    assert result.exit_code == 0
    report = json.loads(out)
    assert report["env"] == {**given, "PWD": str(workdir)}
    assert report["cwd"] == str(workdir)


@BOTH_MODES
@needs_root
def test_command_runs_as_uid_65534_with_no_groups(mode: str, workdir: Path, tmp_path: Path) -> None:
    (workdir / "staged.txt").write_text("from the grader\n")
    result, out, _ = run_fixture(mode, workdir, tmp_path, "reports_identity.py")
    assert result.exit_code == 0
    report = json.loads(out)
    assert (report["uid"], report["gid"], report["groups"]) == (65534, 65534, [])
    assert (workdir / "staged.txt").stat().st_uid == 65534  # the work dir was handed over


@needs_root
def test_workdir_is_handed_over_but_a_hard_link_to_a_host_file_is_not(workdir: Path, tmp_path: Path) -> None:
    host_file = workdir.parent / f"{workdir.name}-host-file"  # same file system as the work dir
    host_file.write_text("owned by root\n")
    try:
        os.link(host_file, workdir / "planted-link")
        (workdir / "staged.txt").write_text("from the grader\n")
        result, _, _ = run_fixture("rlimits", workdir, tmp_path, "exits_with_code.py", "0")
        assert result.exit_code == 0
        assert (workdir / "staged.txt").stat().st_uid == 65534
        assert host_file.stat().st_uid == 0
    finally:
        host_file.unlink()


# ---------------------------------------------------------------------------
# the grader itself dies or is interrupted
# ---------------------------------------------------------------------------
DRIVER = """
import json, sys
from pathlib import Path
from grader.sandbox import SandboxSpec, run_sandboxed
args = json.loads(sys.argv[1])
run_sandboxed(SandboxSpec(
    command=tuple(args["command"]), workdir=Path(args["workdir"]), env={"PATH": "/usr/bin:/bin"},
    time_limit_s=120, stdout_path=Path(args["logs"], "out.log"), stderr_path=Path(args["logs"], "err.log"),
    isolation=args["mode"],
))
"""


@pytest.mark.parametrize(
    ("mode", "grader_signal", "children"),
    [
        pytest.param("bwrap", signal.SIGTERM, "3", marks=needs_bwrap),
        pytest.param("bwrap", signal.SIGINT, "3", marks=needs_bwrap),
        # Without a PID namespace only the direct child dies with a killed grader (PR_SET_PDEATHSIG);
        # an interrupted grader (KeyboardInterrupt) still kills the whole process group.
        pytest.param("rlimits", signal.SIGTERM, "0"),
        pytest.param("rlimits", signal.SIGINT, "3"),
    ],
)
def test_sandbox_dies_with_a_killed_or_interrupted_grader(
    mode: str, grader_signal: int, children: str, workdir: Path, tmp_path: Path, marker: str
) -> None:
    shutil.copy(HOSTILE / "hangs_with_children.py", workdir)
    args = {
        "command": [python_for(mode), "hangs_with_children.py", marker, children],
        "workdir": str(workdir), "logs": str(tmp_path), "mode": mode,
    }
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(args)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "started.txt").exists() and time.monotonic() < deadline:
            assert driver.poll() is None, "the grader process ended before the sandbox started"
            time.sleep(0.05)
        assert (workdir / "started.txt").exists()
        time.sleep(0.2)  # the fixture has written the file; let it settle into its sleep
        # The driver's argv carries the marker too, and so do bwrap's two processes (outer and namespace init).
        sandboxed = [pid for pid in marked_processes(marker) if pid != driver.pid]
        assert len(sandboxed) == 1 + int(children) + (2 if mode == "bwrap" else 0)
        driver.send_signal(grader_signal)
        driver.wait(timeout=15)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert wait_until_no_processes(marker) == []


# ---------------------------------------------------------------------------
# bubblewrap only: the file system
# ---------------------------------------------------------------------------
@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
def test_bwrap_hides_host_files_masks_held_out_data_and_allows_writes_only_in_workdir(
    workdir: Path, tmp_path: Path, marker: str
) -> None:
    data = tmp_path / "data"
    (data / "heldout").mkdir(parents=True)
    (data / "train.txt").write_text("train\n")
    (data / "heldout" / "answers.txt").write_text("the held-out labels\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("grader secret\n")
    result, out, _ = run_fixture(
        "bwrap", workdir, tmp_path / "logs", "reads_outside_workdir.py",
        str(data / "heldout"), str(data), str(secret), marker,
        ro_paths=(data,), masked_paths=(data / "heldout",),
    )
    assert result.exit_code == 0
    report = json.loads(out)
    # Only the interpreter prefixes' top directories are visible under /root.
    visible = sorted({Path(p).relative_to("/root").parts[0]
                      for p in (sys.prefix, sys.base_prefix) if Path(p).is_relative_to("/root")})
    assert report["root_listing"] == visible
    assert report["heldout_listing"] == []
    assert report["read_data"] == "train\n"
    assert report["read_secret"] == "error: No such file or directory"
    assert report["write_data"] == "error: Read-only file system"
    assert report["write_etc"] == "error: Read-only file system"
    assert report["write_tmp"] == "ok"  # a private /tmp ...
    assert not Path(f"/tmp/escape-{marker}.txt").exists()  # ... that the host never sees
    assert report["write_workdir"] == "ok"
    assert (workdir / "inside.txt").read_text() == "escaped\n"
    assert (data / "heldout" / "answers.txt").read_text() == "the held-out labels\n"


@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
def test_bwrap_runs_the_graders_venv_python_with_its_site_packages(workdir: Path, tmp_path: Path) -> None:
    spec = make_spec("bwrap", workdir, tmp_path, (sys.executable, "-c", "import numpy; print(numpy.__file__)"))
    result = run_sandboxed(spec)
    assert result.exit_code == 0, spec.stderr_path.read_text()
    assert spec.stdout_path.read_text().startswith(str(Path(sys.prefix, "lib")))


@needs_root
def test_rlimits_mode_keeps_root_home_closed_but_has_no_private_tmp(
    workdir: Path, tmp_path: Path, marker: str
) -> None:
    escape = Path(f"/tmp/escape-{marker}.txt")
    try:
        result, out, _ = run_fixture(
            "rlimits", workdir, tmp_path, "reads_outside_workdir.py",
            str(tmp_path / "none"), str(tmp_path / "none"), str(tmp_path / "none"), marker,
        )
        report = json.loads(out)
        assert result.exit_code == 0
        assert report["root_listing"] == "error: Permission denied"
        assert report["write_tmp"] == "ok" and escape.exists()  # the fallback has no file-system isolation
    finally:
        escape.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# deciding: argv, isolation choice, spec checks
# ---------------------------------------------------------------------------
def _index(argv: list[str], *window: str) -> int:
    for i in range(len(argv) - len(window) + 1):
        if tuple(argv[i : i + len(window)]) == window:
            return i
    raise AssertionError(f"{window} not in {argv}")


@pytest.fixture
def argv_spec(tmp_path: Path) -> SandboxSpec:
    """A spec with a work dir deep under /tmp, a read-only data dir with a masked subdir, and a GPU."""
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "deep" / "work").mkdir(parents=True)
    return SandboxSpec(
        command=("python", "tune.py"),
        workdir=tmp_path / "deep" / "work",
        env={"PATH": "/usr/bin", "GRADER_SEED": "1"},
        time_limit_s=10,
        stdout_path=tmp_path / "out.log",
        stderr_path=tmp_path / "err.log",
        ro_paths=(tmp_path / "data",),
        masked_paths=(tmp_path / "data" / "test",),
        devices=("/dev/nvidia0", "/dev/nvidiactl"),
    )


def test_bwrap_argv_unshares_namespaces_but_not_user_and_dies_with_parent(argv_spec: SandboxSpec) -> None:
    argv = build_bwrap_argv(argv_spec)
    command_start = argv.index("--")
    options = argv[:command_start]
    for flag in ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--die-with-parent", "--new-session"):
        assert flag in options
    assert "--unshare-all" not in options and "--unshare-user" not in options


def test_bwrap_argv_masks_after_the_read_only_bind_and_binds_devices(argv_spec: SandboxSpec) -> None:
    argv = build_bwrap_argv(argv_spec)
    data, masked = str(argv_spec.ro_paths[0]), str(argv_spec.masked_paths[0])
    assert _index(argv, "--tmpfs", masked) > _index(argv, "--ro-bind", data, data)
    for device in ("/dev/nvidia0", "/dev/nvidiactl"):
        assert _index(argv, "--dev-bind", device, device) > _index(argv, "--dev", "/dev")
    assert _index(argv, "--ro-bind", "/etc", "/etc") < _index(argv, "--tmpfs", masked)
    size = str(Limits().tmpfs_bytes)
    assert _index(argv, "--perms", "1777", "--size", size, "--tmpfs", "/tmp") > 0
    assert _index(argv, "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm") > _index(argv, "--dev", "/dev")


def test_bwrap_argv_declares_workdir_parents_0755_and_binds_it_writable(argv_spec: SandboxSpec) -> None:
    argv = build_bwrap_argv(argv_spec)
    workdir = str(argv_spec.workdir)
    bind_at = _index(argv, "--bind", workdir, workdir)
    tmpfs_at = _index(argv, "--tmpfs", "/tmp")
    for parent in argv_spec.workdir.parents:
        if parent.is_relative_to("/tmp") and parent != Path("/tmp"):
            assert tmpfs_at < _index(argv, "--perms", "0755", "--dir", str(parent)) < bind_at
    assert _index(argv, "--chdir", workdir) > bind_at


def test_bwrap_argv_clears_env_sets_exactly_the_given_and_drops_to_65534(argv_spec: SandboxSpec) -> None:
    argv = build_bwrap_argv(argv_spec)
    command_start = argv.index("--")
    options, command = argv[:command_start], argv[command_start + 1 :]
    assert "--clearenv" in options
    setenv = {options[i + 1]: options[i + 2] for i, arg in enumerate(options) if arg == "--setenv"}
    assert setenv == {"PATH": "/usr/bin", "GRADER_SEED": "1"}
    assert Path(command[0]).name == "setpriv"
    assert command[1:] == [
        "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
        "--no-new-privs", "--", "python", "tune.py",
    ]


def test_bwrap_argv_binds_interpreter_prefixes_read_only(argv_spec: SandboxSpec) -> None:
    argv = build_bwrap_argv(argv_spec)
    for prefix in (sys.prefix, sys.base_prefix):
        covered = [i for i, arg in enumerate(argv) if arg == "--ro-bind" and Path(prefix).is_relative_to(argv[i + 2])]
        assert covered, f"{prefix} is not bound read-only"
    assert not any(arg == "--ro-bind" and argv[i + 1] in ("/root", "/") for i, arg in enumerate(argv))


def test_asking_for_bwrap_when_unusable_raises_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_usable", lambda: (False, "bwrap is not installed (Debian package bubblewrap)"))
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.choose_isolation("bwrap")
    assert str(info.value) == "bubblewrap sandbox unavailable: bwrap is not installed (Debian package bubblewrap)"
    assert sandbox.choose_isolation("auto") in ("rlimits", "rlimits+netns")


def test_spec_refuses_logs_inside_the_workdir(tmp_path: Path) -> None:
    with pytest.raises(SandboxSpecError) as info:
        make_spec("auto", tmp_path / "work", tmp_path / "work", ("true",))
    assert str(info.value) == (
        f"stdout_path {tmp_path}/work/stdout.log lies inside the work dir {tmp_path}/work; put logs outside it"
    )


def test_spec_refuses_relative_workdir_and_unknown_isolation(tmp_path: Path) -> None:
    with pytest.raises(SandboxSpecError) as info:
        make_spec("auto", Path("work"), tmp_path, ("true",))
    assert str(info.value) == "workdir must hold absolute paths, got 'work'"
    with pytest.raises(SandboxSpecError) as info:
        make_spec("docker", tmp_path / "work", tmp_path, ("true",))
    assert str(info.value) == "isolation must be one of auto, bwrap, rlimits; got 'docker'"


def test_limits_refuse_non_positive_values() -> None:
    with pytest.raises(SandboxSpecError) as info:
        Limits(max_processes=0)
    assert str(info.value) == "Limits.max_processes must be a positive integer, got 0"


def test_missing_workdir_is_reported_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(SandboxSpecError) as info:
        run_sandboxed(make_spec("rlimits", tmp_path / "gone", tmp_path, ("true",)))
    assert str(info.value) == f"work dir does not exist: {tmp_path}/gone"


@BOTH_MODES
def test_missing_command_is_reported_without_starting(mode: str, workdir: Path, tmp_path: Path) -> None:
    spec = make_spec(mode, workdir, tmp_path, ("no-such-grader-tool", "--flag"))
    result = run_sandboxed(spec)
    assert (result.exit_code, result.signal, result.timed_out) == (None, None, False)
    assert result.error == "command not found on PATH '/usr/bin:/bin': 'no-such-grader-tool'"
    assert spec.stdout_path.read_bytes() == b"" and spec.stderr_path.read_bytes() == b""


@needs_root
def test_rlimits_mode_runs_a_command_uid_65534_cannot_reach_as_the_grader_and_says_why(
    workdir: Path, tmp_path: Path
) -> None:
    """A missing sandbox user is not a reason to fail every run: the command runs as the grader, and the note says so."""
    locked = Path(tempfile.mkdtemp(prefix="sandbox-locked-", dir="/tmp"))  # mode 0700, owned by root
    try:
        tool = locked / "tool"
        tool.write_text("#!/bin/sh\nid -u\n")
        tool.chmod(0o755)
        result = run_sandboxed(make_spec("rlimits", workdir, tmp_path, (str(tool),)))
        assert (result.exit_code, (tmp_path / "stdout.log").read_text()) == (0, "0\n")
        network = ("no network (a network namespace with only its loopback)" if sandbox.netns_usable()
                   else "network open (a network namespace is not permitted here)")
        assert result.isolation_note == (
            "bubblewrap not used: isolation rlimits was asked for; runs as the grader's own uid 0 "
            f"(uid 65534 cannot reach {tool}: {locked} is mode 0700); {network}; no private file system"
        )
        assert workdir.stat().st_uid == 0  # nothing was handed to a user that does not run it
    finally:
        shutil.rmtree(locked)


def test_the_fallback_runs_as_the_graders_own_user_when_not_root_or_when_65534_is_unusable(tmp_path: Path) -> None:
    spec = make_spec("rlimits", Path("/tmp/sandbox-test-not-made"), tmp_path, ("true",))  # a path 65534 can reach
    unusable = sandbox.Probe(False, "uid 65534 cannot be used here: setpriv: setresuid failed: Invalid argument")
    as_user = sandbox.choose_run_as(spec, as_root=False, user_probe=None, setpriv="/usr/bin/setpriv")
    as_root = sandbox.choose_run_as(spec, as_root=True, user_probe=unusable, setpriv="/usr/bin/setpriv")
    assert (as_user.via, as_user.reason) == ("self", "the grader is not root")
    assert as_root.describe() == (f"runs as the grader's own uid {os.geteuid()} "
                                  "(uid 65534 cannot be used here: setpriv: setresuid failed: Invalid argument)")
    usable = sandbox.Probe(True, "setpriv")
    assert sandbox.choose_run_as(spec, as_root=True, user_probe=usable, setpriv=None).via == "child"
    assert sandbox.build_rlimits_argv(spec, run_as=as_root) == ["true"]
    assert sandbox.describe_fallback("rlimits", "bwrap probe failed: bwrap: setting up uid map: Permission denied",
                                     as_user) == (
        "bubblewrap not used: bwrap probe failed: bwrap: setting up uid map: Permission denied; "
        f"runs as the grader's own uid {os.geteuid()} (the grader is not root); "
        "network open (a network namespace is not permitted here); no private file system"
    )


def test_the_bwrap_probe_is_run_once_per_process() -> None:
    assert sandbox.bwrap_probe() is sandbox.bwrap_probe()
    assert sandbox.bwrap_probe.cache_info().misses <= 1


def test_limit_messages_name_the_limit_in_one_line() -> None:
    limits = Limits(memory_bytes=1024 * MiB, disk_bytes=1024 * MiB, max_processes=256)
    base = SandboxResult(None, signal.SIGKILL, False, 1.0, "bwrap", Path("/o"), Path("/e"), False, False)
    messages = {kind: limit_message(dataclasses.replace(base, limit_exceeded=kind), limits)
                for kind in (*sandbox.LIMIT_KINDS, None)}
    assert messages == {
        "memory": "used more than its memory limit of 1024 MiB and was stopped",
        "disk": "wrote more than its disk limit of 1024 MiB to its work dir and was stopped",
        "tree": "made its work dir too large to measure (more than 100000 entries or 64 folders deep) and was stopped",
        "processes": "tried to run more than 256 processes at once (threads count too)",
        None: None,
    }


def test_the_limit_that_stopped_a_run_is_read_from_the_watcher_and_the_cgroup() -> None:
    def stats(oom: int | None = 0, hits: int | None = 0, pids: int | None = 0) -> CgroupStats:
        return CgroupStats(peak_memory_bytes=1, oom_kills=oom, memory_limit_hits=hits, pids_limit_hits=pids)

    assert classify_limit(disk_stopped="disk", stats=stats(oom=1), sig=signal.SIGKILL) == "disk"
    assert classify_limit(disk_stopped="tree", stats=None, sig=signal.SIGKILL) == "tree"
    assert classify_limit(disk_stopped=None, stats=stats(oom=1, pids=3), sig=None) == "memory"
    assert classify_limit(disk_stopped=None, stats=stats(hits=5), sig=signal.SIGKILL) is None  # reclaim, no kill
    assert classify_limit(disk_stopped=None, stats=stats(oom=None, hits=5), sig=signal.SIGKILL) == "memory"
    assert classify_limit(disk_stopped=None, stats=stats(oom=None, hits=5), sig=None) is None
    assert classify_limit(disk_stopped=None, stats=stats(pids=2), sig=None) == "processes"
    assert classify_limit(disk_stopped=None, stats=None, sig=signal.SIGKILL) is None


def test_without_a_pids_cgroup_the_process_limit_falls_back_to_rlimit_nproc() -> None:
    limits = Limits(max_processes=77)
    assert (resource.RLIMIT_NPROC, 77) in sandbox.rlimit_settings(limits)
    assert all(res != resource.RLIMIT_NPROC for res, _ in sandbox.rlimit_settings(limits, nproc=False))
    assert sandbox.group_limits(limits, "bwrap") == (limits.memory_bytes, 77 + 2)  # bwrap's outer process and init
    assert sandbox.group_limits(limits, "rlimits+netns") == (limits.memory_bytes, 77)


def test_limits_take_an_unmeasured_disk_but_refuse_a_zero_tmpfs() -> None:
    assert Limits(disk_bytes=None).disk_bytes is None
    with pytest.raises(SandboxSpecError) as info:
        Limits(tmpfs_bytes=0)
    assert str(info.value) == "Limits.tmpfs_bytes must be a positive integer, got 0"


def test_disk_usage_counts_blocks_once_and_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * (4 * MiB))
    work = tmp_path / "work"
    (work / "a" / "b").mkdir(parents=True)
    (work / "a" / "b" / "data.bin").write_bytes(b"y" * MiB)
    os.link(work / "a" / "b" / "data.bin", work / "a" / "hardlink.bin")
    (work / "to-outside").symlink_to(outside)
    (work / "a" / "to-big").symlink_to(outside / "big.bin")
    used = disk_usage(work)
    blocks = sum(os.lstat(p).st_blocks * 512 for p in (work, work / "a", work / "a" / "b", work / "a" / "b" / "data.bin",
                                                        work / "to-outside", work / "a" / "to-big"))
    assert (used.bytes, used.entries, used.complete) == (blocks, 6, True)
    assert MiB <= used.bytes < 2 * MiB


def test_disk_usage_stops_at_its_entry_and_depth_caps(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(b"")
    assert disk_usage(tmp_path, max_entries=5).complete is False
    assert disk_usage(tmp_path, max_entries=10).complete is True
    deep = tmp_path / "d1" / "d2" / "d3"
    deep.mkdir(parents=True)
    assert disk_usage(tmp_path, max_depth=3).complete is False
    assert disk_usage(tmp_path, max_depth=4).complete is True


def test_truncation_marker_is_one_line_naming_the_cap() -> None:
    assert truncation_marker(2 * MiB) == b"\n[... output truncated at 2097152 bytes ...]\n"


# ---------------------------------------------------------------------------
# GPU: device nodes reach the sandbox
# ---------------------------------------------------------------------------
NVIDIA_DEVICES = tuple(sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device()))


@pytest.mark.gpu
@pytest.mark.sandbox
@pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")
@pytest.mark.skipif(not NVIDIA_DEVICES or shutil.which("nvidia-smi") is None, reason="no NVIDIA GPU and nvidia-smi here")
def test_bwrap_with_nvidia_devices_sees_the_gpu(workdir: Path, tmp_path: Path) -> None:
    spec = make_spec("bwrap", workdir, tmp_path, (shutil.which("nvidia-smi"), "-L"), devices=NVIDIA_DEVICES)
    result = run_sandboxed(spec)
    assert result.exit_code == 0, spec.stderr_path.read_text()
    assert spec.stdout_path.read_text().startswith("GPU 0: ")
