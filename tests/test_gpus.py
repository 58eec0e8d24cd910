"""A GPU slot is a GPU: index -> bus id -> device minor, what its sandbox binds and sets, what the job saw.

No GPU is needed: a fake nvidia-smi and a fake /proc and /dev tree stand in for the host, whose
minors differ from nvidia-smi's indices (index 0 -> minor 1, index 1 -> minor 0); the report is
written by the real sitecustomize in a real child Python (on CPU, so it saw no GPU).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from grader.gpus import (
    ENV_REPORT_DIR,
    SITE_DIR,
    Gpu,
    GpuError,
    inventory,
    mps_pipe_dir,
    read_device,
    slot_binding,
)
from grader.result import Device, Slot
from grader.runner import _device_verdict
from grader.sandbox import SandboxSpec, build_bwrap_argv

from conftest import ROOT, child_env

H200 = "NVIDIA H200"
MEMORY = 143771
SMI_LINES = (
    f"0, 00000000:3B:00.0, GPU-aaaaaaaa-0000-0000-0000-000000000000, {H200}, {MEMORY}",
    f"1, 00000000:5E:00.0, GPU-bbbbbbbb-1111-1111-1111-111111111111, {H200}, {MEMORY}",
)
MINORS = {"0000:3b:00.0": 1, "0000:5e:00.0": 0}


@pytest.fixture
def host(tmp_path: Path) -> tuple[str, Path, Path]:
    """A fake nvidia-smi listing two GPUs, and /proc and /dev trees whose minors are the other way round."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(SMI_LINES) + "\nEOF\n")
    smi.chmod(0o755)
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    for bus, minor in MINORS.items():
        folder = proc / "driver" / "nvidia" / "gpus" / bus
        folder.mkdir(parents=True)
        (folder / "information").write_text(f"Model: \t\t {H200}\nIRQ:   \t\t 42\nDevice Minor: \t {minor}\n")
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (dev / name).touch()
    return str(smi), proc, dev


def test_each_index_maps_through_its_bus_id_to_the_minor_the_driver_lists(host: tuple[str, Path, Path]) -> None:
    smi, proc, dev = host
    assert inventory(smi, proc, dev) == (
        Gpu(0, "0000:3b:00.0", 1, "GPU-aaaaaaaa-0000-0000-0000-000000000000", H200, MEMORY),
        Gpu(1, "0000:5e:00.0", 0, "GPU-bbbbbbbb-1111-1111-1111-111111111111", H200, MEMORY),
    )


def test_no_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    assert inventory(str(tmp_path / "no-nvidia-smi"), tmp_path, tmp_path) == ()


def test_a_missing_information_file_is_a_one_line_error_naming_it(host: tuple[str, Path, Path]) -> None:
    smi, proc, dev = host
    info = proc / "driver" / "nvidia" / "gpus" / "0000:5e:00.0" / "information"
    info.unlink()
    with pytest.raises(GpuError) as caught:
        inventory(smi, proc, dev)
    assert str(caught.value) == (f"GPU 1 (0000:5e:00.0): cannot read its device minor from {info}: "
                                 "No such file or directory")


def test_the_binding_of_gpu_1_holds_only_its_own_device_node_and_proc_folder(host: tuple[str, Path, Path]) -> None:
    smi, proc, dev = host
    gpu1 = inventory(smi, proc, dev)[1]
    binding = slot_binding(gpu1, 1, proc_root=proc, dev_root=dev)
    gpus = proc / "driver" / "nvidia" / "gpus"
    assert binding.devices == (str(dev / "nvidia0"), str(dev / "nvidiactl"), str(dev / "nvidia-uvm"),
                               str(dev / "nvidia-uvm-tools"))
    assert binding.masked_paths == (gpus,)
    assert binding.ro_paths == (gpus / "0000:5e:00.0",)


@pytest.mark.parametrize(("share", "fraction", "mib", "xla"), [
    (1, "1", str(MEMORY), "0.950"),
    (2, "0.5", str(MEMORY // 2), "0.475"),
    (4, "0.25", str(MEMORY // 4), "0.237"),
])
def test_the_job_sees_its_gpu_as_device_0_with_its_memory_share(host: tuple[str, Path, Path], share: int,
                                                                fraction: str, mib: str, xla: str) -> None:
    smi, proc, dev = host
    gpu1 = inventory(smi, proc, dev)[1]
    env = slot_binding(gpu1, share, proc_root=proc, dev_root=dev).env
    assert env == {
        "CUDA_VISIBLE_DEVICES": "GPU-bbbbbbbb-1111-1111-1111-111111111111",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": xla,
        "GRADER_GPU_MEMORY_FRACTION": fraction,
        "GRADER_GPU_MEMORY_MIB": mib,
    }


def test_a_running_mps_daemon_caps_each_job_at_its_share_of_pinned_memory(host: tuple[str, Path, Path],
                                                                         tmp_path: Path) -> None:
    smi, proc, dev = host
    pipes = tmp_path / "mps"
    pipes.mkdir()
    assert mps_pipe_dir({"CUDA_MPS_PIPE_DIRECTORY": str(pipes)}) is None  # no daemon: no MPS
    with socket.socket(socket.AF_UNIX) as control:
        control.bind(str(pipes / "control"))
        assert mps_pipe_dir({"CUDA_MPS_PIPE_DIRECTORY": str(pipes)}) == pipes
    binding = slot_binding(inventory(smi, proc, dev)[0], 2, proc_root=proc, dev_root=dev, mps=pipes)
    assert binding.env["CUDA_MPS_PIPE_DIRECTORY"] == str(pipes)
    assert binding.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={MEMORY // 2}M"
    assert pipes in binding.ro_paths


def test_bwrap_shows_the_gpus_own_proc_folder_through_the_mask_over_the_others(host: tuple[str, Path, Path],
                                                                               tmp_path: Path) -> None:
    smi, proc, dev = host
    binding = slot_binding(inventory(smi, proc, dev)[1], 1, proc_root=proc, dev_root=dev)
    (tmp_path / "work").mkdir()
    spec = SandboxSpec(command=("python", "tune.py"), workdir=tmp_path / "work", env=binding.env, time_limit_s=10,
                       stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log",
                       ro_paths=binding.ro_paths, masked_paths=binding.masked_paths, devices=binding.devices)
    argv = build_bwrap_argv(spec)
    gpus, own = str(binding.masked_paths[0]), str(binding.ro_paths[0])
    mask = argv.index(gpus) if argv[argv.index(gpus) - 1] == "--tmpfs" else -1
    assert argv[mask - 1] == "--tmpfs"
    shown = [i for i in range(len(argv) - 2) if argv[i:i + 3] == ["--ro-bind", own, own]]
    assert len(shown) == 1 and shown[0] > mask
    assert str(dev / "nvidia1") not in argv and ["--dev-bind", str(dev / "nvidia0"), str(dev / "nvidia0")] == \
        argv[argv.index(str(dev / "nvidia0")) - 1:argv.index(str(dev / "nvidia0")) + 2]


# ---------------------------------------------------------------- what the job saw


def run_child(tmp_path: Path, code: str) -> Path:
    """Run code in a real child Python with the grader's site folder on its path, as the sandbox does; the report dir."""
    reports = tmp_path / "reports"
    env = child_env(tmp_path / "home", PYTHONPATH=f"{SITE_DIR}{os.pathsep}{ROOT}",
                    CUDA_VISIBLE_DEVICES="", GRADER_GPU_MEMORY_FRACTION="0.5", GRADER_GPU_MEMORY_MIB="1000",
                    **{ENV_REPORT_DIR: str(reports)})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    return reports


def test_a_job_on_cpu_reports_its_framework_and_that_it_saw_no_gpu(tmp_path: Path) -> None:
    import torch

    reports = run_child(tmp_path, "import torch; print(torch.ones(2).sum().item())")
    files = tuple(p.name for p in reports.iterdir())
    assert len(files) == 1 and files[0].endswith(".json")
    assert read_device(reports, files) == Device(kind="cpu", name=None, memory_mib=None,
                                                 frameworks={"torch": torch.__version__}, cuda_used=False, note=None)


def test_a_job_that_imports_no_framework_writes_no_report(tmp_path: Path) -> None:
    assert not run_child(tmp_path, "print(1 + 1)").exists()


def test_a_hostile_report_is_read_bounded_and_cut_to_one_line(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_text('{"cuda_available": true, "cuda_used": true, "device_name": "A\\u001b[31m\\nB",'
                                     ' "memory_mib": 1e999, "frameworks": {"torch": "2", "evil": "x"}}')
    (tmp_path / "2.json").write_text("[" * 10000)
    device = read_device(tmp_path, ("1.json", "2.json"))
    assert device is not None and device.kind == "gpu" and device.memory_mib is None
    assert device.frameworks == {"torch": "2"} and "\x1b" not in (device.name or "") and "\n" not in device.name


GPU_SLOT = Slot("gpu", 3, "1")


def test_a_gpu_slot_whose_job_saw_no_gpu_is_a_sandbox_error(tmp_path: Path) -> None:
    import torch

    reports = run_child(tmp_path, "import torch")
    device = read_device(reports, tuple(p.name for p in reports.iterdir()))
    assert _device_verdict("completed", "ran to the end", GPU_SLOT, device, H200) == (
        "sandbox_error", f"GPU slot 3 (GPU 1, {H200}): the job saw no GPU (torch {torch.__version__} found no CUDA "
                         "device)")


def test_a_gpu_slot_whose_completed_job_left_no_report_is_a_sandbox_error() -> None:
    assert _device_verdict("completed", "ran to the end", GPU_SLOT, None, H200) == (
        "sandbox_error", f"GPU slot 3 (GPU 1, {H200}): the job saw no GPU (no report: it imported no torch, "
                         "tensorflow or jax)")


def test_what_the_job_saw_changes_nothing_else() -> None:
    on_gpu = Device(kind="gpu", name=H200, memory_mib=MEMORY, frameworks={"torch": "2"}, cuda_used=True)
    on_cpu = Device(kind="cpu", frameworks={"torch": "2"})
    assert _device_verdict("completed", "ran to the end", GPU_SLOT, on_gpu, H200) == ("completed", "ran to the end")
    assert _device_verdict("completed", "ran to the end", Slot("cpu", 0), on_cpu, "") == ("completed", "ran to the end")
    assert _device_verdict("crashed", "exited with code 1", GPU_SLOT, None, H200) == ("crashed", "exited with code 1")


def test_device_reports_are_copied_out_without_links_fifos_huge_files_or_odd_names(tmp_path: Path) -> None:
    from grader.runner import collect_device
    from grader.session import Layout

    layout = Layout(tmp_path / "student")
    reports = layout.device_reports
    reports.mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"cuda_available": true, "device_name": "host file"}')
    os.symlink(secret, reports / "1.json")  # a link to a file outside: never followed
    os.mkfifo(reports / "2.json")  # a FIFO: never opened for reading (that would hang)
    with open(reports / "3.json", "wb") as fh:  # 5 GB, sparse: over the cap, never read
        fh.truncate(5 * 2**30)
    (reports / "4.json").write_text('{"cuda_available": true, "memory_mib": ' + "9" * 5000 + "}")  # refused whole
    with open(os.path.join(os.fsencode(reports), b"5-\xff.json"), "w") as fh:  # a name that is not UTF-8: refused
        fh.write('{"cuda_available": true, "device_name": "odd"}')
    (reports / "6.json").write_text('{"cuda_available": false, "problem": "no\\u001b[31m GPU\\nhere"}')
    device = collect_device(layout)
    assert device is not None
    assert (device.kind, device.name, device.memory_mib) == ("cpu", None, None)
    assert device.note is not None and "\x1b" not in device.note and "\n" not in device.note
    assert not (layout.collected_device / "1.json").exists() and secret.read_text().startswith('{"cuda')
