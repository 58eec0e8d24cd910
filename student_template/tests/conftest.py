"""Fixtures for the self-checks: the repo root on sys.path, Keras on torch, caches in a temp dir."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Your tuning.run on the quick profile (about a minute on a laptop CPU); its output dir and trials."""
    import tuning
    from tunekit.config import RunConfig

    out = tmp_path_factory.mktemp("outputs")
    os.environ.setdefault("MPLCONFIGDIR", str(out.parent / "mpl"))
    previous = Path.cwd()
    os.chdir(REPO)  # answers.yaml is read from the repo root
    try:
        trials = tuning.run(RunConfig(out=out, profile="quick", seed=0))
    finally:
        os.chdir(previous)
    return out, trials
