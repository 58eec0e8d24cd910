"""Wherever it runs, it runs: `grader check` as a non-root user, under a bwrap that cannot make namespaces, and without
cgroups, grades normally on the rlimits fallback and records why in result.isolation."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, child_env

from grader import sandbox
from grader.sandbox import SandboxSpec, run_sandboxed

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: it creates a user, or plays the Gradescope container")
GRADER = [sys.executable, "-m", "grader.cli"]
# What an Ubuntu 24.04 runner's AppArmor (or an unprivileged container) makes bwrap say.
BWRAP_FAILS = "bwrap: setting up uid map: Permission denied"
STRIPPED = ("__pycache__", ".pytest_cache", "outputs")


# ---------------------------------------------------------------------------
# repositories laid out as a student's
# ---------------------------------------------------------------------------
def template_repo(dest: Path) -> Path:
    """The untouched starter repo."""
    shutil.copytree(ROOT / "student_template", dest, ignore=shutil.ignore_patterns(*STRIPPED))
    return dest


def reference_repo(dest: Path) -> Path:
    """The starter repo with the reference solution handed in: its tuning.py and notebook, its starter files."""
    template_repo(dest)
    shutil.copytree(ROOT / "reference" / "starter", dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*STRIPPED))
    for name in ("tuning.py", "assignment.ipynb"):
        shutil.copyfile(ROOT / "reference" / name, dest / name)
    return dest


def open_to_all(top: Path, *trees: Path) -> None:
    """Make `top` (a folder directly under a temp dir) and `trees` readable by every user."""
    top.chmod(0o755)
    for tree in trees:
        for path in (tree, *tree.rglob("*")):
            path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | (0o055 if path.is_dir() else 0))


def result_of(tmp: Path, repo: Path, uid: int) -> dict:
    """The result.json `grader check` wrote for repo, under the per-user check folder in tmp."""
    return json.loads((tmp / f"grader-check-{uid}" / repo.name / repo.name / "result.json").read_text())


def check(repo: Path, home: Path, tmp: Path, *, prefix: tuple[str, ...] = (),
          **env: str) -> subprocess.CompletedProcess[str]:
    """`grader check repo` with the repo's own quick rubric, temp files in tmp."""
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*prefix, *GRADER, "check", str(repo), "--rubric", str(repo / "rubrics" / "quick.json")],
                          cwd=repo, env=child_env(home, TMPDIR=str(tmp), **env), capture_output=True, text=True,
                          timeout=900, check=False)


# ---------------------------------------------------------------------------
# as a root grader in a container where bwrap cannot make namespaces, or cgroups cannot be made
# ---------------------------------------------------------------------------
@pytest.fixture
def failing_bwrap(tmp_path: Path) -> Path:
    """A folder holding a `bwrap` that fails as bubblewrap does where user namespaces are blocked."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "bwrap").write_text(f"#!/bin/sh\necho '{BWRAP_FAILS}' >&2\nexit 1\n")
    (shim / "bwrap").chmod(0o755)
    return shim


@needs_root
@pytest.mark.slow
def test_a_bwrap_that_cannot_make_namespaces_falls_back_to_rlimits_and_says_why(
    tmp_path: Path, failing_bwrap: Path
) -> None:
    repo = template_repo(tmp_path / "repo")
    proc = check(repo, tmp_path / "home", tmp_path / "tmp", PATH=f"{failing_bwrap}:{os.environ['PATH']}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = result_of(tmp_path / "tmp", repo, 0)
    assert result["status"] == "completed", result["message"]
    assert result["message"].startswith("6 notebook cell(s) raised an error, first cell 4: NotImplementedError: ")
    assert result["isolation"]["method"] in ("rlimits", "rlimits+netns")
    details = result["isolation"]["details"]
    assert details.startswith(f"bubblewrap not used: bwrap probe failed: {BWRAP_FAILS}; runs as "), details
    assert "\n" not in details
    assert re.search(r"; (no network \(a network namespace with only its loopback\)|network open \([^)]*\)); no private file system; memory 4096 MiB, "
                     r"file size 256 MiB, work dir 1024 MiB, 256 processes, 1024 open files, no core dumps; ", details)
    out = " ".join(proc.stdout.split())
    assert f"isolation: {result['isolation']['method']} (" in out and BWRAP_FAILS in out


CGROUPS_READ_ONLY = """
set -e
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
  mount -o remount,bind,ro "$m"
done
exec "$@"
"""


@needs_root
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) for a private mount namespace")
def test_read_only_cgroups_leave_the_run_to_its_rlimits_and_say_so(tmp_path: Path) -> None:
    """As in a container whose /sys/fs/cgroup is read-only: the cgroup mounts are remounted read-only in a private
    mount namespace that only the grader's process tree sees."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode(errors='replace').strip()}")
    if not any(line.split()[2] in ("cgroup", "cgroup2") for line in Path("/proc/self/mounts").read_text().splitlines()):
        pytest.skip("no cgroup file system is mounted here")
    repo = template_repo(tmp_path / "repo")
    proc = check(repo, tmp_path / "home", tmp_path / "tmp",
                 prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c", CGROUPS_READ_ONLY, "sh"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = result_of(tmp_path / "tmp", repo, 0)
    assert result["status"] == "completed", result["message"]
    details = result["isolation"]["details"]
    assert re.search(r"; no cgroup \(cannot create a group in /[^:]+: Read-only file system\): memory held by "
                     r"RLIMIT_DATA alone, processes by RLIMIT_NPROC per uid$", details), details


# ---------------------------------------------------------------------------
# as a student's own (non-root) user
# ---------------------------------------------------------------------------
def closed_dir(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder on the way to path (links followed) that uid/gid cannot search, or None."""
    real = Path(os.path.realpath(path))
    for step in (*reversed(real.parents), real):
        st = step.stat()
        bits = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if step.is_dir() and not st.st_mode & bits:
            return step
    return None


VIEW_SCRIPT = """
set -e
closed=$1 inner=$2 view=$3; shift 3
mount --bind "$closed/$inner" "$view"
mount -t tmpfs -o mode=755,size=1m none "$closed"
mkdir "$closed/$inner"
mount --bind "$view" "$closed/$inner"
exec "$@"
"""


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pwd.struct_passwd, tuple[str, ...]]]:
    """A throw-away user (removed afterwards), and the command prefix that runs a command as that user.

    The project and its venv must be readable by other users. Where the interpreter lies under a folder closed
    to them (a pyenv under /root), the prefix shows it through a private mount namespace: the host is unchanged.
    """
    if not IS_ROOT or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("needs root, useradd and runuser to make a test user")
    name = f"grtest{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a test user: {made.stderr.strip()}")
    try:
        user = pwd.getpwnam(name)
        blocked = closed_dir(ROOT, user.pw_uid, user.pw_gid) or closed_dir(ROOT / ".venv", user.pw_uid, user.pw_gid)
        if blocked is not None:
            pytest.skip(f"{blocked} is not traversable by other users: a non-root user cannot run this project's grader")
        prefix: tuple[str, ...] = ("runuser", "-u", name, "--")
        closed = closed_dir(Path(sys.executable), user.pw_uid, user.pw_gid)
        if closed is not None:
            inner = Path(os.path.realpath(sys.executable)).relative_to(closed).parts[0]
            view = tmp_path_factory.mktemp("interpreter-view")
            prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", VIEW_SCRIPT, "sh",
                      str(closed), inner, str(view), *prefix)
            probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, text=True, check=False)
            if probe.returncode != 0:
                pytest.skip(f"{closed} is closed to other users and cannot be shown to them: {probe.stderr.strip()}")
        yield user, prefix
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder directly under /tmp that every user can reach (pytest's own temp dirs are closed to others)."""
    path = Path(tempfile.mkdtemp(prefix="nonroot-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def student_dirs(tmp_path: Path, user: pwd.struct_passwd) -> tuple[Path, Path]:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    for folder in (home, tmp):
        folder.mkdir()
        os.chown(folder, user.pw_uid, user.pw_gid)
    return home, tmp


@pytest.mark.slow
def test_check_as_a_student_passes_the_reference_on_the_fallback(
    open_dir: Path, student: tuple[pwd.struct_passwd, tuple[str, ...]]
) -> None:
    tmp_path = open_dir
    user, prefix = student
    repo = reference_repo(tmp_path / "solution")
    open_to_all(tmp_path, repo)
    home, tmp = student_dirs(tmp_path, user)
    proc = check(repo, home, tmp, prefix=prefix)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "solution: completed (ran to the end)" in out
    assert "score 100/100 on the visible checks" in out
    result = result_of(tmp, repo, user.pw_uid)
    assert result["isolation"]["method"] == "rlimits"
    assert result["isolation"]["details"].startswith(
        "bubblewrap not used: the grader is not root (the bubblewrap sandbox starts as root and drops to uid 65534); "
        f"runs as the grader's own uid {user.pw_uid} (the grader is not root); "
    )
    assert "isolation: rlimits (" in out


@pytest.mark.slow
def test_check_as_a_student_fails_the_untouched_template_naming_the_todos(
    open_dir: Path, student: tuple[pwd.struct_passwd, tuple[str, ...]]
) -> None:
    tmp_path = open_dir
    user, prefix = student
    repo = template_repo(tmp_path / "starter")
    open_to_all(tmp_path, repo)
    home, tmp = student_dirs(tmp_path, user)
    proc = check(repo, home, tmp, prefix=prefix)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "starter: completed (6 notebook cell(s) raised an error, first cell 4: NotImplementedError: TODO(student):" in out
    assert "score 0/100 on the visible checks" in out
    assert result_of(tmp, repo, user.pw_uid)["status"] == "completed"


# ---------------------------------------------------------------------------
# a root grader without setpriv (an Alpine container): the child drops to uid 65534 itself
# ---------------------------------------------------------------------------
@needs_root
def test_without_setpriv_the_child_drops_to_uid_65534_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = next((p for p in (sys.executable, "/usr/bin/python3")
                   if shutil.which(p) and sandbox.unreachable_reason(p) is None), None)
    if python is None:
        pytest.skip("no Python interpreter here is reachable by uid 65534")
    real_find = sandbox._find_tool
    monkeypatch.setattr(sandbox, "_find_tool", lambda name: None if name == "setpriv" else real_find(name))
    sandbox.sandbox_user_probe.cache_clear()
    monkeypatch.setattr(sandbox, "bwrap_usable", lambda: (False, "setpriv is not installed (Debian package util-linux)"))
    work = Path(tempfile.mkdtemp(prefix="nonroot-test-", dir="/tmp"))  # uid 65534 can reach it: /tmp is open
    spec = SandboxSpec(command=(python, "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups())"),
                       workdir=work, env={"PATH": "/usr/bin:/bin"}, time_limit_s=60,
                       stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log")
    try:
        result = run_sandboxed(spec)
    finally:
        sandbox.sandbox_user_probe.cache_clear()
        shutil.rmtree(work, ignore_errors=True)
    assert result.exit_code == 0, (tmp_path / "err.log").read_text()
    assert (tmp_path / "out.log").read_text() == "65534 65534 []\n"
    assert result.isolation == ("rlimits+netns" if sandbox.netns_usable() else "rlimits")
    assert result.isolation_note == (
        "bubblewrap not used: setpriv is not installed (Debian package util-linux); runs as uid 65534; "
        + ("no network (a network namespace with only its loopback)" if sandbox.netns_usable()
           else "network open (a network namespace is not permitted here)")
        + "; no private file system"
    )
