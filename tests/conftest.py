"""Shared fixtures: a clean environment for child processes, one real quick-profile reference run per session, and
the processes a batch left behind."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from processes import batch_processes

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove the temp dirs of earlier sessions with grader.harvest.remove_tree before pytest's own clean-up sees them:
    that one recurses, and the 1500-folder tree a hostile fixture leaves (when its test failed midway) would crash it."""
    if session.config.option.basetemp:
        return
    from grader.harvest import remove_tree

    root = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    if root.is_dir() and not root.is_symlink():
        for old in root.glob("pytest-*"):
            in_use = (old / ".lock").exists()  # another session's, still running
            if old.name != "pytest-current" and old.is_dir() and not old.is_symlink() and not in_use:
                remove_tree(old)


def child_env(home: Path, backend: str = "torch", **extra: str) -> dict[str, str]:
    """An environment for a child process: no GRADER_* leaking in, HOME and Keras' cache inside `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        KERAS_HOME=str(home / ".keras"),
        MPLCONFIGDIR=str(home / ".mpl"),
        KERAS_BACKEND=backend,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_reference(out: Path, home: Path, *args: str, backend: str = "torch", timeout: float = 600, **env: str
                  ) -> subprocess.CompletedProcess[str]:
    """Run `python -m reference.run` in a child process; returns the completed process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "reference.run", *args],
        cwd=ROOT, env=child_env(home, backend, **env), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def reference_quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real quick-profile run of the reference on MNIST (torch backend), configured through GRADER_* variables."""
    base = tmp_path_factory.mktemp("reference-quick")
    out = base / "out"
    proc = run_reference(out, base / "home", GRADER_OUTPUT_DIR=str(out), GRADER_PROFILE="quick", GRADER_SEED="0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def stray_processes(out: Path, since: float) -> list[str]:
    """Processes left of a batch: any whose command line, cwd or environment mentions `out`, and any of uid 65534
    started at or after `since` (epoch seconds) unless its environment places it in another run (a HOME that is not
    under `out`: every sandbox of the grader has its HOME in its work dir). Each as 'pid N uid U: command'."""
    return batch_processes(out, since)[0]
