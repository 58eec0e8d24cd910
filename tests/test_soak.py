"""The soak benchmark at a small size: the grader SIGKILLed twice mid-batch loses, duplicates and leaves nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, child_env
from grader.harvest import remove_tree
from grader.sandbox import bwrap_usable

pytestmark = [pytest.mark.slow, pytest.mark.sandbox,
              pytest.mark.skipif(not bwrap_usable()[0], reason="bubblewrap sandbox unusable here")]


def test_two_kills_lose_nothing_duplicate_nothing_and_leave_no_process(tmp_path) -> None:
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak_kill.py"), "--kills", "2", "--seed",
                               "1", "--out", str(tmp_path / "soak")],
                              cwd=ROOT, env=child_env(tmp_path / "home"), capture_output=True, text=True, timeout=600)
    finally:
        remove_tree(tmp_path / "soak")  # it holds a 1500-deep tree, which pytest's own clean-up would recurse into
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for count in ("results lost: 0", "duplicated results: 0", "leftover processes: 0"):
        assert count in lines, proc.stdout[-3000:]
