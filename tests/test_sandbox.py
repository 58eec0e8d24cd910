"""Tests for grader.sandbox: isolation, limits, the time box and capped logs, against hostile fixtures."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import sandbox
from grader.sandbox import (
    Limits,
    SandboxResult,
    SandboxSpec,
    SandboxSpecError,
    SandboxUnavailableError,
    build_bwrap_argv,
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


# ---------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------
def marked_processes(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def wait_until_no_processes(marker: str, within_s: float = 5.0) -> list[int]:
    """Gives the kernel a moment to finish kills already sent; returns what is still there."""
    deadline = time.monotonic() + within_s
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


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
def marker() -> Iterator[str]:
    """A unique token the fixtures put on their command lines; kills (by pid) anything left with it."""
    token = f"sbxmark{os.getpid()}x{random.randrange(10**12)}"
    yield token
    for pid in marked_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_spec(mode: str, workdir: Path, logs: Path, command: tuple[str, ...], **overrides) -> SandboxSpec:
    fields = dict(
        command=command,
        workdir=workdir,
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LC_ALL": "C.UTF-8"},
        time_limit_s=30.0,
        stdout_path=logs / "stdout.log",
        stderr_path=logs / "stderr.log",
        isolation=mode,
    )
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
    mode: str, workdir: Path, tmp_path: Path, marker: str
) -> None:
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "hangs_with_children.py", marker, "3", time_limit_s=1.5, grace_s=1.0
    )
    assert result.timed_out is True
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert 2.5 <= result.wall_seconds < 2.5 + 2.0  # limit + grace, returned promptly after
    assert out == b"started 3 children\n"
    assert len((workdir / "started.txt").read_text().split()) == 3  # what it wrote before the kill stays
    assert wait_until_no_processes(marker) == []


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
    mode: str, workdir: Path, tmp_path: Path, marker: str
) -> None:
    result, out, _ = run_fixture(
        mode, workdir, tmp_path, "spawns_200_processes.py", marker, limits=Limits(max_processes=64), time_limit_s=20
    )
    assert result.exit_code == 0
    match = re.fullmatch(rb"forked (\d+) of 200, then: \[Errno 11\] Resource temporarily unavailable\n", out)
    assert match is not None, out
    assert int(match.group(1)) < 64
    assert wait_until_no_processes(marker) == []
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes


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
    assert _index(argv, "--perms", "1777", "--size", str(Limits().memory_bytes), "--tmpfs", "/tmp") > 0


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
def test_rlimits_mode_refuses_a_command_uid_65534_cannot_reach(workdir: Path, tmp_path: Path) -> None:
    locked = Path(tempfile.mkdtemp(prefix="sandbox-locked-", dir="/tmp"))  # mode 0700, owned by root
    try:
        tool = locked / "tool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        with pytest.raises(SandboxSpecError) as info:
            run_sandboxed(make_spec("rlimits", workdir, tmp_path, (str(tool),)))
        assert str(info.value) == (
            f"isolation {expected_isolation('rlimits')!r} runs the command as uid 65534, "
            f"which cannot reach {tool}: {locked} is mode 0700"
        )
    finally:
        shutil.rmtree(locked)


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
