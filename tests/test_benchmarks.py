"""Tests for the benchmark scripts: they run at a tiny size and print the lines their docstrings promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, child_env

NUMBER = r"-?\d+\.\d+"


@pytest.mark.slow
def test_gradebook_scale_prints_each_size_and_the_per_submission_ratio(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/gradebook_scale.py", "--sizes", "3,5"], cwd=ROOT,
                          env=child_env(tmp_path / "home", TMPDIR=str(tmp_path)), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("grading trivial submissions with the real engine (--gpus none --jobs 2, ")
    assert lines[1].split() == ["size", "wall", "s", "own", "CPU", "s", "own", "CPU", "ms/sub", "marginal", "ms/sub",
                                "peak", "RSS", "MiB", "update", "CPU", "ms", "statuses"]
    for line, size in zip(lines[2:4], (3, 5)):
        assert re.fullmatch(rf" *{size}( +{NUMBER}){{6}}  completed", line), line
    assert re.fullmatch(rf"marginal own CPU per submission, 5 vs 3: {NUMBER}x \(target <= 1\.20x: (flat|NOT flat)\)",
                        lines[4]), lines[4]
    assert re.fullmatch(rf"peak RSS, 5 vs 3: {NUMBER}x", lines[5]), lines[5]
    assert re.fullmatch(rf"LiveGradebook.update alone \(CPU\): 3 rows {NUMBER} ms, 5 rows {NUMBER} ms \({NUMBER}x\)",
                        lines[6]), lines[6]
    assert len(lines) == 7


def test_gradebook_scale_refuses_a_single_size() -> None:
    proc = subprocess.run([sys.executable, "benchmarks/gradebook_scale.py", "--sizes", "100"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith("error: --sizes needs at least two sizes, each at least 2")
