"""Tests for grader.scheduler: which slots --gpus/--per-gpu/--jobs give, and how LocalExecutor runs jobs on them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader.errors import GraderError
from grader.result import Slot
from grader.scheduler import (
    LocalExecutor,
    Placement,
    SlotError,
    detect_gpus,
    plan_slots,
    threads_per_slot,
)

# A stand-in for nvidia-smi: answers --query-gpu=<fields> (csv, noheader, nounits) and -L for the GPUs listed in
# FAKE_GPUS, the way the real one does; FAKE_MODE "empty" prints nothing, "fails" exits 6 as it does without a
# driver, "hangs" never answers.
FAKE_NVIDIA_SMI = f"""#!{sys.executable}
import os, sys, time
mode = os.environ.get("FAKE_MODE", "")
if mode == "hangs":
    time.sleep(3600)
if mode == "fails":
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    sys.exit(6)
if mode == "empty":
    sys.exit(0)
gpus = [g for g in os.environ.get("FAKE_GPUS", "").split(",") if g]
args = sys.argv[1:]
if "-L" in args:
    for g in gpus:
        print(f"GPU {{g}}: NVIDIA H200 (UUID: GPU-0000000{{g}}-aaaa-bbbb-cccc-dddddddddddd)")
    sys.exit(0)
query = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), "index")
nounits = any("nounits" in a for a in args)
values = {{"index": lambda g: g, "name": lambda g: "NVIDIA H200", "uuid": lambda g: f"GPU-0000000{{g}}-aaaa",
          "pci.bus_id": lambda g: f"00000000:0{{g}}:00.0", "memory.total": lambda g: "143771" if nounits else "143771 MiB",
          "memory.used": lambda g: "0" if nounits else "0 MiB", "memory.free": lambda g: "143771" if nounits else "143771 MiB",
          "utilization.gpu": lambda g: "0" if nounits else "0 %", "compute_mode": lambda g: "Default"}}
for g in gpus:
    print(", ".join(values.get(field.strip(), lambda g: "[N/A]")(g) for field in query.split(",")))
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Puts the stand-in nvidia-smi first on PATH; call it with the GPUs it lists, or a mode."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(FAKE_NVIDIA_SMI)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def use(gpus: str = "", mode: str = "") -> None:
        monkeypatch.setenv("FAKE_GPUS", gpus)
        monkeypatch.setenv("FAKE_MODE", mode)

    return use


# ---------------------------------------------------------------- detect_gpus


@pytest.mark.gpu
def test_detect_gpus_gives_the_indices_nvidia_smi_lists() -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi on this machine")
    listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                            text=True, timeout=60, check=True).stdout.split()
    assert listed, "nvidia-smi lists no GPU"
    assert detect_gpus() == listed
    assert plan_slots("auto", per_gpu=2) == [Slot("gpu", i, g) for i, g in enumerate(g for g in listed for _ in "ab")]


@pytest.mark.parametrize("mode", ["empty", "fails"])
def test_detect_gpus_is_empty_when_nvidia_smi_lists_nothing_or_fails(fake_nvidia_smi, mode: str) -> None:
    fake_nvidia_smi("0", mode=mode)
    assert detect_gpus() == []


def test_detect_gpus_is_empty_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []


@pytest.mark.slow
def test_a_hanging_nvidia_smi_is_given_up_on_within_half_a_minute(fake_nvidia_smi) -> None:
    fake_nvidia_smi("0", mode="hangs")
    started = time.monotonic()
    assert detect_gpus() == []
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- plan_slots


def test_no_gpus_gives_one_cpu_slot_per_job() -> None:
    assert plan_slots("none", jobs=3, available=["0", "1"]) == [Slot("cpu", 0), Slot("cpu", 1), Slot("cpu", 2)]


def test_auto_takes_every_gpu_listed_per_gpu_times_each_in_turn() -> None:
    assert plan_slots("auto", per_gpu=2, jobs=5, available=["0", "1"]) == [
        Slot("gpu", 0, "0"), Slot("gpu", 1, "0"), Slot("gpu", 2, "1"), Slot("gpu", 3, "1"),
    ]


def test_auto_without_gpus_falls_back_to_cpu_slots() -> None:
    assert plan_slots("auto", per_gpu=4, jobs=2, available=[]) == [Slot("cpu", 0), Slot("cpu", 1)]


def test_an_explicit_list_takes_those_gpus_in_the_order_given() -> None:
    assert plan_slots(" 2, 0 ", per_gpu=1, available=["0", "1", "2"]) == [Slot("gpu", 0, "2"), Slot("gpu", 1, "0")]


def test_auto_and_explicit_lists_ask_nvidia_smi_when_not_told_what_is_available(fake_nvidia_smi) -> None:
    fake_nvidia_smi(mode="empty")
    assert plan_slots("auto", jobs=2) == [Slot("cpu", 0), Slot("cpu", 1)]
    with pytest.raises(SlotError) as err:
        plan_slots("0")
    assert str(err.value) == "GPU 0 not found (nvidia-smi lists: none)"


@pytest.mark.parametrize("text", ["gpu0", "0;1", "-1", ",", "", "all", "0,x"])
def test_gpus_text_that_is_not_auto_none_or_indices_is_refused(text: str) -> None:
    with pytest.raises(SlotError) as err:
        plan_slots(text, available=["0"])
    assert str(err.value) == f"--gpus must be auto, none or a comma list of GPU indices, not {text!r}"


def test_gpus_that_are_not_there_are_named_with_what_is() -> None:
    with pytest.raises(SlotError) as err:
        plan_slots("0,2,5", available=["0", "1"])
    assert str(err.value) == "GPU 2, 5 not found (nvidia-smi lists: 0, 1)"
    with pytest.raises(SlotError) as err:
        plan_slots("0", available=[])
    assert str(err.value) == "GPU 0 not found (nvidia-smi lists: none)"


@pytest.mark.parametrize("per_gpu, jobs", [(0, 1), (1, 0), (-1, 2)])
def test_per_gpu_and_jobs_below_one_are_refused(per_gpu: int, jobs: int) -> None:
    with pytest.raises(SlotError) as err:
        plan_slots("none", per_gpu=per_gpu, jobs=jobs, available=[])
    assert str(err.value) == "--per-gpu and --jobs must be at least 1"


def test_a_slot_error_is_a_grader_error_the_cli_prints_as_one_line() -> None:
    assert issubclass(SlotError, GraderError)


def test_each_slot_gets_its_share_of_the_cores_and_at_least_one() -> None:
    assert threads_per_slot(2, cores=8) == 4
    assert threads_per_slot(3, cores=8) == 2
    assert threads_per_slot(16, cores=4) == 1
    assert threads_per_slot(0, cores=4) == 4
    assert threads_per_slot(1) == (os.cpu_count() or 1)


# ---------------------------------------------------------------- LocalExecutor


def test_the_local_executor_places_jobs_on_this_machines_slots() -> None:
    assert LocalExecutor.on_this_machine("none", jobs=2).place() == Placement(
        "2 slot(s): cpu 0, cpu 1", threads_per_slot(2), 1)
    assert LocalExecutor([Slot("gpu", 0, "3"), Slot("gpu", 1, "3")], 2).place() == Placement(
        "2 slot(s): gpu 3, gpu 3", threads_per_slot(2), 2)


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.ray_executor import RayExecutor, RayUnavailableError

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(RayUnavailableError) as caught:
        RayExecutor().place()
    assert str(caught.value) == ("--executor ray needs Ray on this machine and every node: "
                                 "pip install 'cnn-tuning-grader[ray]'")


def cpu_slots(n: int) -> list[Slot]:
    return [Slot("cpu", i) for i in range(n)]


def test_every_job_runs_once_and_each_result_reaches_on_done() -> None:
    done: list[tuple[int, int]] = []
    LocalExecutor(cpu_slots(3)).run(list(range(20)), lambda job, slot: job * 10, lambda job, r: done.append((job, r)))
    assert sorted(done) == [(job, job * 10) for job in range(20)]


def test_a_slot_holds_one_job_at_a_time_and_every_slot_runs_at_once() -> None:
    slots = cpu_slots(3)
    in_use = {slot: threading.Lock() for slot in slots}
    all_busy = threading.Barrier(3, timeout=10)  # the first three jobs meet here: three run at the same time
    shared: list[Slot] = []
    used: set[Slot] = set()

    def work(job: int, slot: Slot) -> int:
        if not in_use[slot].acquire(blocking=False):
            shared.append(slot)
            return job
        try:
            used.add(slot)
            if job < 3:
                all_busy.wait()
            time.sleep(0.005)
        finally:
            in_use[slot].release()
        return job

    LocalExecutor(slots).run(list(range(30)), work, lambda job, r: None)
    assert shared == []
    assert used == set(slots)


def test_on_done_is_called_one_at_a_time_in_the_callers_process() -> None:
    busy = threading.Lock()
    overlaps, pids = [], set()

    def on_done(job: int, result: int) -> None:
        pids.add(os.getpid())
        if not busy.acquire(blocking=False):
            overlaps.append(job)
            return
        try:
            time.sleep(0.01)
        finally:
            busy.release()

    LocalExecutor(cpu_slots(4)).run(list(range(16)), lambda job, slot: job, on_done)
    assert overlaps == []
    assert pids == {os.getpid()}


def test_an_error_in_one_job_reaches_the_caller_and_the_queued_jobs_never_start() -> None:
    started: list[int] = []

    def work(job: int, slot: Slot) -> int:
        started.append(job)
        if job == 1:
            raise ValueError("job 1 broke")
        return job

    with pytest.raises(ValueError, match="^job 1 broke$"):
        LocalExecutor(cpu_slots(1)).run(list(range(10)), work, lambda job, r: None)
    time.sleep(0.2)  # a queued job that wrongly started would show by now
    assert started == [0, 1]


def test_an_error_in_on_done_stops_the_batch_too() -> None:
    started: list[int] = []

    def on_done(job: int, result: int) -> None:
        if job == 0:
            raise OSError("disk full")

    def work(job: int, slot: Slot) -> int:
        started.append(job)
        return job

    with pytest.raises(OSError, match="^disk full$"):
        LocalExecutor(cpu_slots(1)).run(list(range(10)), work, on_done)
    time.sleep(0.2)
    assert started == [0]


def test_an_interrupt_starts_no_queued_job_and_leaves_no_slot_thread_once_the_running_ones_end() -> None:
    release = threading.Event()  # what grade.main's stop_all() does to the jobs running at the interrupt
    two_running = threading.Barrier(3, timeout=10)
    started: list[int] = []

    def work(job: int, slot: Slot) -> int:
        started.append(job)
        if job < 2:
            two_running.wait()
        release.wait(10)
        return job

    def interrupt_when_both_slots_are_busy() -> None:
        two_running.wait()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C, as the terminal sends it

    # Ctrl-C as the grader's CLI gets it: Python's own handler, whatever an earlier test in this process left there
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_when_both_slots_are_busy, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            LocalExecutor(cpu_slots(2)).run(list(range(8)), work, lambda job, r: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name.startswith("grader-slot") for t in threading.enumerate()):
        time.sleep(0.02)
    assert [t.name for t in threading.enumerate() if t.name.startswith("grader-slot")] == []
    assert sorted(started) == [0, 1]
