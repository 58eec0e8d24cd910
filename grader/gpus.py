"""What the host's GPUs are, what a job on one of them needs (devices, /proc, env), and what the job reports it saw.

A GPU slot names a GPU by its nvidia-smi index, but the device file's minor number need
not equal that index: the driver lists the minor per PCI bus id in
``/proc/driver/nvidia/gpus/<bus id>/information`` ("Device Minor: N"). ``inventory`` maps
index -> bus id -> minor; ``slot_binding`` decides (and does nothing else) what the sandbox
binds for one GPU, which of the host's /proc it hides, and the environment that makes CUDA
see exactly that GPU, as device 0, with its memory share. ``read_device`` turns the reports
that ``grader/gpu_site/sitecustomize.py`` wrote inside the sandbox (untrusted) into a
``Device`` for result.json.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from grader.errors import GraderError
from grader.parse import load_json
from grader.result import Device
from grader.text import one_line

SITE_DIR = Path(__file__).resolve().parent / "gpu_site"  # put first on the sandbox's PYTHONPATH
ENV_REPORT_DIR = "GRADER_DEVICE_REPORT_DIR"  # where sitecustomize writes <pid>.json at exit
ENV_MEMORY_FRACTION = "GRADER_GPU_MEMORY_FRACTION"  # the job's share of its GPU's memory (1/K)
ENV_MEMORY_MIB = "GRADER_GPU_MEMORY_MIB"  # the same share in MiB (TensorFlow's logical-device limit)
CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
QUERY = "--query-gpu=index,pci.bus_id,uuid,name,memory.total"
DEFAULT_MPS_PIPE_DIR = "/tmp/nvidia-mps"
MAX_REPORTS = 32  # report files read per job (one per Python process that imported a framework)
MAX_REPORT_BYTES = 16 * 1024
FRAMEWORKS = ("torch", "tensorflow", "jax")


class GpuError(GraderError, RuntimeError):
    """The host's GPUs cannot be mapped to their device files (one line naming what is missing)."""


@dataclass(frozen=True)
class Gpu:
    """One GPU of the host: nvidia-smi's index, its PCI bus id as the driver writes it, its device minor."""

    index: int
    bus_id: str  # e.g. 0000:3b:00.0 (4-digit domain, lower case: the name of its /proc/driver/nvidia/gpus folder)
    minor: int  # /dev/nvidia<minor>
    uuid: str  # GPU-xxxxxxxx-...
    name: str
    memory_mib: int


@dataclass(frozen=True)
class GpuBinding:
    """What a sandbox on one GPU gets: device nodes, the host /proc it hides and shows again, and variables."""

    devices: tuple[str, ...]
    masked_paths: tuple[Path, ...]  # the host's /proc/driver/nvidia/gpus: every GPU's folder hidden ...
    ro_paths: tuple[Path, ...]  # ... but this one's shown (and the MPS pipe dir when an MPS daemon runs)
    env: Mapping[str, str]


def normalise_bus_id(bus_id: str) -> str:
    """A PCI bus id as the driver names its /proc folder: nvidia-smi's 00000000:3B:00.0 -> 0000:3b:00.0."""
    text = bus_id.strip().lower()
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    if len(parts) != 3 or "." not in parts[2]:
        raise GpuError(f"nvidia-smi gave a PCI bus id the grader cannot read: {one_line(bus_id, 80)!r}")
    try:
        domain = int(parts[0], 16)
    except ValueError:
        raise GpuError(f"nvidia-smi gave a PCI bus id the grader cannot read: {one_line(bus_id, 80)!r}") from None
    return f"{domain & 0xFFFF:04x}:{parts[1]}:{parts[2]}"


def inventory(nvidia_smi: str = "nvidia-smi", proc_root: Path = Path("/proc"),
              dev_root: Path = Path("/dev")) -> tuple[Gpu, ...]:
    """The host's GPUs as nvidia-smi lists them, each with its device minor; () without nvidia-smi or GPUs.

    GpuError (one line) when a GPU's /proc information file or device file is missing or unreadable.
    """
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, QUERY, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        index, bus, uuid, name, memory = fields
        bus_id = normalise_bus_id(bus)
        minor = device_minor(proc_root, bus_id, int(index))
        node = dev_root / f"nvidia{minor}"
        if not node.exists():
            raise GpuError(f"GPU {index} ({bus_id}) has device minor {minor}, but {node} does not exist")
        gpus.append(Gpu(int(index), bus_id, minor, uuid, name, int(memory) if memory.isdigit() else 0))
    return tuple(gpus)


def _gpus_dir(proc_root: Path) -> Path:
    return proc_root / "driver" / "nvidia" / "gpus"


def proc_folder(proc_root: Path, bus_id: str) -> Path:
    """The driver's /proc folder of the GPU at bus_id (matched without regard to case or domain width)."""
    folder = _gpus_dir(proc_root)
    wanted = normalise_bus_id(bus_id)
    try:
        for entry in folder.iterdir():
            try:
                if normalise_bus_id(entry.name) == wanted:
                    return entry
            except GpuError:
                continue
    except OSError:
        pass
    return folder / wanted


def device_minor(proc_root: Path, bus_id: str, index: int) -> int:
    """The "Device Minor: N" the driver lists for the GPU at bus_id."""
    info = proc_folder(proc_root, bus_id) / "information"
    try:
        text = info.read_text(errors="replace")
    except OSError as exc:
        raise GpuError(f"GPU {index} ({bus_id}): cannot read its device minor from {info}: "
                       f"{exc.strerror or exc}") from None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Device Minor" and value.strip().isdigit():
            return int(value.strip())
    raise GpuError(f"GPU {index} ({bus_id}): {info} has no 'Device Minor' line")


@functools.cache
def _host_inventory() -> tuple[Gpu, ...]:
    return inventory()


def host_gpu(index: str | int) -> Gpu:
    """The host's GPU with this nvidia-smi index (the inventory is taken once per grader process)."""
    for gpu in _host_inventory():
        if gpu.index == int(index):
            return gpu
    raise GpuError(f"GPU {index} not found (nvidia-smi lists: "
                   f"{', '.join(str(g.index) for g in _host_inventory()) or 'none'})")


def mps_pipe_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The pipe dir of a running CUDA MPS control daemon (its `control` socket is there), or None."""
    env = os.environ if env is None else env
    folder = Path(env.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_MPS_PIPE_DIR)
    try:
        return folder if stat.S_ISSOCK(os.stat(folder / "control").st_mode) else None
    except OSError:
        return None


def slot_binding(gpu: Gpu, share: int, *, proc_root: Path = Path("/proc"), dev_root: Path = Path("/dev"),
                 mps: Path | None = None) -> GpuBinding:
    """What a job on `gpu` gets when `share` jobs use it at once (--per-gpu): it decides, it does nothing.

    CUDA sees the GPU by its UUID (right whatever the numbering inside: with bwrap it is the only GPU
    whose device file exists, in the rlimits fallback every GPU's does), as device 0, PCI order.
    Each framework is capped to 1/share of the memory: JAX by its own variables, TensorFlow (grow,
    never grab) and torch by grader/gpu_site/sitecustomize.py from GRADER_GPU_MEMORY_*, and with
    an MPS control daemon running (``mps``, see ``mps_pipe_dir``) by MPS's pinned-memory limit too.
    """
    if share < 1:
        raise GpuError(f"--per-gpu must be at least 1, not {share}")
    devices = [str(dev_root / f"nvidia{gpu.minor}")]
    devices += [str(dev_root / name) for name in CONTROL_DEVICES if (dev_root / name).exists()]
    fraction = 1 / share
    share_mib = gpu.memory_mib // share
    env = {
        "CUDA_VISIBLE_DEVICES": gpu.uuid,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction * 0.95:.3f}",
        ENV_MEMORY_FRACTION: f"{fraction:.6g}",
        ENV_MEMORY_MIB: str(share_mib),
    }
    ro_paths = [proc_folder(proc_root, gpu.bus_id)]
    if mps is not None:
        ro_paths.append(mps)
        env["CUDA_MPS_PIPE_DIRECTORY"] = str(mps)
        if share > 1:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={share_mib}M"
    return GpuBinding(devices=tuple(devices), masked_paths=(_gpus_dir(proc_root),), ro_paths=tuple(ro_paths),
                      env=env)


# ---------------------------------------------------------------- what the job saw


def read_device(folder: Path, files: tuple[str, ...]) -> Device | None:
    """The device the job saw, from the reports the grader copied into folder (names in files); None without any.

    Each Python process that imported a framework wrote one report; a process that used CUDA
    speaks for the job, then one that saw a GPU, then any. Reports are the job's own words:
    parsed bounded, their text cut to one short line.
    """
    reports = []
    for name in sorted(files)[:MAX_REPORTS]:
        try:
            data = load_json((folder / name).read_bytes(), max_bytes=MAX_REPORT_BYTES)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            reports.append(data)
    if not reports:
        return None
    best = max(reports, key=lambda r: (r.get("cuda_used") is True, r.get("cuda_available") is True))
    frameworks: dict[str, str] = {}
    for report in reports:
        found = report.get("frameworks")
        if isinstance(found, dict):
            for key, value in list(found.items())[:8]:
                if key in FRAMEWORKS and isinstance(value, str):
                    frameworks[key] = one_line(value, 40)
    saw = best.get("cuda_available") is True
    name = best.get("device_name")
    memory = best.get("memory_mib")
    return Device(
        kind="gpu" if saw else "cpu",
        name=one_line(name, 120) if isinstance(name, str) and name else None,
        memory_mib=memory if isinstance(memory, int) and not isinstance(memory, bool) and 0 <= memory < 2**40 else None,
        frameworks=frameworks,
        cuda_used=saw and best.get("cuda_used") is True,
        note=_note(best),
    )


def _note(report: Mapping[str, Any]) -> str | None:
    problem = report.get("problem")
    return one_line(problem, 200) if isinstance(problem, str) and problem else None


def saw_no_gpu(device: Device | None) -> str:
    """What a job that saw no GPU saw instead, in a few words (the end of its sandbox_error message)."""
    if device is None:
        return "no report: it imported no torch, tensorflow or jax"
    seen = ", ".join(f"{k} {v}" for k, v in sorted(device.frameworks.items())) or "no framework"
    return f"{seen} found no CUDA device" + (f": {device.note}" if device.note else "")
