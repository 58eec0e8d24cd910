"""Shared fixtures: a clean environment for child processes and one real quick-profile reference run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
