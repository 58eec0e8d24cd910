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


@pytest.mark.slow
def test_fast_trainer_prints_each_configuration_the_agreement_and_the_ratios(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/fast_trainer.py", "--configs", "2"], cwd=ROOT,
                          env=child_env(tmp_path / "home", TMPDIR=str(tmp_path)), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if not line.lstrip().startswith("grid trial")]
    assert re.fullmatch(r"2 quick-grid configurations, 3000 train / 1000 validation MNIST images, torch \S+, \d+ cores, "
                        r"\d+ torch threads", lines[0]), lines[0]
    assert lines[1].split() == ["configuration", "keras", "fast", "diff", "pts"]
    for line, dropout in zip(lines[2:4], ("0", "0.3")):
        assert re.fullmatch(rf"learning_rate=0\.001 batch_size=32 filters=8 dropout={dropout} +{NUMBER} +{NUMBER} +{NUMBER}",
                            line), line
    assert re.fullmatch(rf"mean val accuracy: keras {NUMBER}, fast {NUMBER} \(fast - keras [+-]{NUMBER[2:]} points\)",
                        lines[4]), lines[4]
    assert re.fullmatch(rf"KerasTuner with seed 1 against seed 0: largest difference {NUMBER} points, mean difference "
                        rf"{NUMBER} points \(the noise floor of one seed\)", lines[5]), lines[5]
    assert re.fullmatch(rf"largest difference: {NUMBER} points \(target <= 1\.5 points: (met|NOT met)\); mean difference "
                        rf"{NUMBER} points", lines[6]), lines[6]
    assert re.fullmatch(rf"wall: KerasTuner {NUMBER} s, fast trainer {NUMBER} s \(\d+ single-thread processes\), "
                        rf"fast trainer in one process {NUMBER} s", lines[7]), lines[7]
    assert re.fullmatch(rf"speed vs KerasTuner: {NUMBER}x \(target >= 3\.0x: (met|NOT met)\)", lines[8]), lines[8]
    assert re.fullmatch(rf"one process per core vs one process: {NUMBER}x", lines[9]), lines[9]
    assert len(lines) == 10


@pytest.mark.slow
def test_verify_speed_prints_the_claims_both_wall_times_and_the_ratio(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/verify_speed.py", "--students", "3"], cwd=ROOT,
                          env=child_env(tmp_path / "home", TMPDIR=str(tmp_path)), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"3 students, 6 claims, [1-6] distinct configurations, 3000 train / 1000 validation MNIST "
                        r"images, \d+ cores", lines[0]), lines[0]
    assert re.fullmatch(rf"naive per-student Keras re-training: 6 fits in {NUMBER} s", lines[1]), lines[1]
    assert re.fullmatch(rf"verify \(distinct configurations once, fast trainer\): [1-6] trainings in {NUMBER} s",
                        lines[2]), lines[2]
    assert re.fullmatch(rf"speed-up: {NUMBER}x \(target >= 5x\) (met|NOT met)", lines[3]), lines[3]
    assert len(lines) == 4
