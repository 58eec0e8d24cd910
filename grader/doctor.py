"""The `doctor` verb: gather what this machine offers the grader, and decide what `grader grade` will do with it.

Three steps, each its own function, so deciding stays apart from probing and printing:

1. :func:`gather` probes the machine once and returns frozen :class:`Facts`: the Python
   that runs the grader (and every submission: ``sys.executable``), who the grader runs
   as and whether uid 65534 can be used, bubblewrap (installed, version, usable and why
   not: ``grader.sandbox.bwrap_probe``), cgroups (``grader.cgroup.detect``), the network
   namespace (``grader.sandbox.netns_usable``), the GPUs nvidia-smi lists with their
   device files (``grader.gpus.inventory``, or why they cannot be mapped), where each split of each dataset
   is (``tunekit.data.search_plan``/``locate_split``, with the loader's own one-line
   remedy when it is missing), which of torch, tensorflow, keras, keras_tuner, nbclient
   and ipykernel import, the Keras cache and the shipped rubrics. The frameworks are
   imported in child processes with a time limit (one each, side by side, in a cleared
   environment like a submission's: HOME and the Keras cache in a temp dir, no user
   site-packages), never in the grader's own process.
2. :func:`decide` turns Facts into a :class:`Plan`, without probing anything: the
   isolation ``grader grade`` picks (``choose_isolation("auto")``'s rule, and the
   fallback's one-line note from ``grader.sandbox.describe_fallback``), what caps memory
   and processes, the slots (``grader.scheduler.plan_slots`` over the GPUs found), the
   datasets and backends that can be graded and run, whether notebooks can run, the
   warnings an instructor should read, and the blockers: grading cannot run here when no
   dataset has both splits, torch or keras does not import, or (with ``--gpus`` other
   than ``none``) the GPUs cannot be mapped to their device files.
3. :func:`render` gives plain lines, grouped (machine, sandbox, GPUs, data, backends,
   so grader grade will); every text a probe returned goes through
   ``grader.text.terminal_text``. :func:`to_json` gives the versioned document
   (``doctor_version`` 1, schema ``grader/schemas/doctor.schema.json``) and
   :func:`from_json` reads it back.

:func:`main` prints one or the other and returns 0 when grading can run here, 1 when it
cannot (the verdict line names each reason).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import cgroup, sandbox, scheduler
from grader.errors import GraderError
from grader.gpus import GpuError, inventory
from grader.jsonio import schema_errors
from grader.rubric import SHIPPED, RubricError, load_rubric, shipped_rubrics
from grader.sandbox import SANDBOX_GID, SANDBOX_UID, RunAs
from grader.session import cleared_env
from grader.text import terminal_text
from tunekit import data

# ---------------------------------------------------------------------------
# Constants (one commented block)
# ---------------------------------------------------------------------------
DOCTOR_VERSION = 1  # of the --json document
# The modules imported in child processes, in the order they are shown. torch is the default backend,
# tensorflow the other; keras and keras_tuner run every submission; nbclient and ipykernel run notebooks.
MODULES = ("torch", "tensorflow", "keras", "keras_tuner", "nbclient", "ipykernel")
BACKENDS = ("torch", "tensorflow")  # grader grade --backend
NOTEBOOK_MODULES = ("nbclient", "ipykernel")
IMPORT_TIMEOUT_S = 120.0  # per module (tensorflow takes tens of seconds on a busy machine)
TOOL_TIMEOUT_S = 10.0  # `bwrap --version`
OUTPUT_CAP = 64 * 1024  # bytes of a child's stdout/stderr looked at
MARK = "DOCTOR-IMPORT "  # the child's one result line starts with this

# Run in a child: import one module and print what it is, as one JSON line after MARK.
_IMPORT_SCRIPT = """
import importlib, json, sys
name = sys.argv[1]
try:
    module = importlib.import_module(name)
    info = {"version": str(getattr(module, "__version__", "") or "")}
    if name == "torch":
        info["cuda"] = bool(module.cuda.is_available())
        info["devices"] = int(module.cuda.device_count()) if info["cuda"] else 0
    elif name == "tensorflow":
        gpus = module.config.list_physical_devices("GPU")
        info["cuda"] = bool(gpus)
        info["devices"] = len(gpus)
except BaseException as exc:
    info = {"error": f"{type(exc).__name__}: {exc}"}
print(sys.argv[2] + json.dumps(info), flush=True)
"""


class DoctorReportError(GraderError, ValueError):
    """A doctor JSON document that is not version 1 or does not match its schema."""


# ---------------------------------------------------------------------------
# Facts: what the machine offers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineFacts:
    """The Python that runs the grader and its submissions, the system, and who the grader runs as."""

    python_version: str
    python_executable: str
    system: str
    cpus: int
    uid: int
    gid: int
    user: str
    sandbox_user_usable: bool  # uid 65534 can be handed a folder and run a command (root only)
    sandbox_user_reason: str

    @property
    def root(self) -> bool:
        return self.uid == 0


@dataclass(frozen=True)
class SandboxFacts:
    """bubblewrap, cgroups and the network namespace, each with the probe's one-line reason."""

    bwrap_path: str | None
    bwrap_version: str | None
    bwrap_usable: bool
    bwrap_reason: str
    cgroup_version: str | None  # "v1", "v2"; None: no usable cgroup
    cgroup_memory: bool
    cgroup_pids: bool
    cgroup_reason: str  # why none is usable ("" when one is)
    netns_usable: bool

    def cgroup_line(self) -> str:
        """``v1 memory+pids``, or ``none: <reason>`` (as ``CgroupSupport.describe``)."""
        if self.cgroup_version is None:
            return f"none: {self.cgroup_reason}"
        controllers = [name for name, on in (("memory", self.cgroup_memory), ("pids", self.cgroup_pids)) if on]
        return f"{self.cgroup_version} " + "+".join(controllers)


@dataclass(frozen=True)
class GpuFact:
    """One GPU nvidia-smi lists (``grader.gpus.Gpu``); a record that knows only the index leaves the rest None."""

    index: str
    name: str | None = None
    memory_mib: int | None = None
    bus_id: str | None = None
    minor: int | None = None
    uuid: str | None = None

    def describe(self) -> str:
        parts = [self.name] if self.name is not None else []
        if self.memory_mib is not None:
            parts.append(f"{self.memory_mib} MiB")
        if self.bus_id is not None:
            parts.append(f"bus {self.bus_id}")
        if self.minor is not None:
            parts.append(f"minor {self.minor}")
        return f"GPU {self.index}" + (": " + ", ".join(parts) if parts else " (nvidia-smi gives its index only)")


@dataclass(frozen=True)
class GpuFacts:
    """Where nvidia-smi is (None: not on PATH), the GPUs it lists, or why they cannot be used (``GpuError``)."""

    nvidia_smi: str | None
    gpus: tuple[GpuFact, ...]
    problem: str | None = None

    def why_none(self) -> str | None:
        """Why there is no GPU here, or None when nvidia-smi lists one."""
        if self.nvidia_smi is None:
            return "no nvidia-smi on PATH"
        if self.problem is not None:
            return f"unusable: {self.problem}"
        return None if self.gpus else "nvidia-smi lists no GPU"


@dataclass(frozen=True)
class SplitFact:
    """One split of one dataset: where the loader finds it (``found``), or the loader's message saying why not."""

    dataset: str
    split: str
    found: str | None  # SplitFiles.describe()
    problem: str | None  # the loader's one-line not-found message (with its remedy), or the corrupt file's fault

    def line(self) -> str:
        return self.found if self.found is not None else self.problem or f"{self.dataset} {self.split}: not found"


@dataclass(frozen=True)
class ModuleFact:
    """Whether one module imports in a child process of this Python, its version, and CUDA as it sees it."""

    name: str
    importable: bool
    version: str | None = None
    cuda: bool | None = None  # torch: torch.cuda.is_available(); tensorflow: lists a GPU; None for the others
    devices: int | None = None
    error: str | None = None  # why it did not import (one line)

    def describe(self) -> str:
        if not self.importable:
            return f"not importable ({self.error or 'no reason given'})"
        text = self.version or "version unknown"
        if self.cuda is not None:
            text += f", CUDA available ({self.devices} device(s))" if self.cuda else ", CUDA not available"
        return text


@dataclass(frozen=True)
class RubricFact:
    """A rubric shipped with the grader: its dataset and profile, or why it does not load."""

    name: str
    dataset: str | None
    profile: str | None
    problem: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything ``gather`` found, in the groups ``render`` shows."""

    machine: MachineFacts
    sandbox: SandboxFacts
    gpus: GpuFacts
    data: tuple[SplitFact, ...]
    keras_cache: str
    modules: tuple[ModuleFact, ...]
    rubrics: tuple[RubricFact, ...]

    def module(self, name: str) -> ModuleFact:
        """The fact for module `name`; one that was not probed counts as not importable."""
        for fact in self.modules:
            if fact.name == name:
                return fact
        return ModuleFact(name, False, error="not probed")


def gather(*, import_timeout_s: float = IMPORT_TIMEOUT_S, modules: tuple[str, ...] = MODULES) -> Facts:
    """Probe this machine (the sandbox probes are the grader's own, cached per process) and return the Facts."""
    with ThreadPoolExecutor(max_workers=len(modules) or 1, thread_name_prefix="doctor-import") as pool:
        imports = [pool.submit(probe_module, name, timeout_s=import_timeout_s) for name in modules]
        facts = Facts(
            machine=_machine(),
            sandbox=_sandbox(),
            gpus=_gpus(),
            data=_data(),
            keras_cache=str(data.keras_cache_dir()),
            modules=tuple(future.result() for future in imports),
            rubrics=_rubrics(),
        )
    return facts


def _machine() -> MachineFacts:
    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    probe = sandbox.sandbox_user_probe()
    return MachineFacts(
        python_version=platform.python_version(),
        python_executable=sys.executable,
        system=f"{platform.system()} {platform.release()} {platform.machine()}",
        cpus=os.cpu_count() or 1,
        uid=uid,
        gid=gid,
        user=user,
        sandbox_user_usable=probe.usable,
        sandbox_user_reason=probe.reason,
    )


def _sandbox() -> SandboxFacts:
    bwrap = shutil.which("bwrap")  # where bwrap_probe looks
    version = None
    if bwrap is not None:
        try:
            done = subprocess.run([bwrap, "--version"], capture_output=True, timeout=TOOL_TIMEOUT_S, check=False,
                                  stdin=subprocess.DEVNULL)
            version = done.stdout[:OUTPUT_CAP].decode("utf-8", "replace").strip() or None
        except (OSError, subprocess.SubprocessError):
            version = None
    probe = sandbox.bwrap_probe()
    support = cgroup.detect()
    return SandboxFacts(
        bwrap_path=bwrap,
        bwrap_version=version,
        bwrap_usable=probe.usable,
        bwrap_reason=probe.reason,
        cgroup_version=support.version if support.available else None,
        cgroup_memory=support.memory,
        cgroup_pids=support.pids,
        cgroup_reason=support.reason,
        netns_usable=sandbox.netns_usable(),
    )


def _gpus() -> GpuFacts:
    nvidia_smi = shutil.which("nvidia-smi")  # where inventory looks
    try:
        found = inventory()
    except GpuError as exc:
        return GpuFacts(nvidia_smi, (), str(exc))
    return GpuFacts(nvidia_smi, tuple(GpuFact(str(gpu.index), gpu.name, gpu.memory_mib, gpu.bus_id, gpu.minor,
                                              gpu.uuid) for gpu in found))


def _data() -> tuple[SplitFact, ...]:
    facts = []
    for name in data.DATASETS:
        plan = data.search_plan(name)  # as grader grade searches (it may also download: not here)
        for split in data.SPLITS:
            try:
                found = data.locate_split(plan, split)
            except data.CorruptDatasetError as exc:
                facts.append(SplitFact(name, split, None, str(exc)))
                continue
            if found is None:
                facts.append(SplitFact(name, split, None, plan.not_found_message(split)))
            else:
                facts.append(SplitFact(name, split, found.describe(), None))
    return tuple(facts)


def _rubrics() -> tuple[RubricFact, ...]:
    facts = []
    for name in shipped_rubrics():
        try:
            rubric = load_rubric(SHIPPED / f"{name}.json")
        except RubricError as exc:
            facts.append(RubricFact(name, None, None, str(exc)))
        else:
            facts.append(RubricFact(name, rubric.dataset, rubric.profile))
    return tuple(facts)


def import_env(home: Path) -> dict[str, str]:
    """The environment a module is imported in: cleared like a submission's (``grader.session.base_env``), HOME and
    the caches in `home`, no user site-packages, the default backend; CUDA_VISIBLE_DEVICES kept (all GPUs seen)."""
    env = cleared_env(home)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "torch"})
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return env


def probe_module(name: str, *, timeout_s: float = IMPORT_TIMEOUT_S) -> ModuleFact:
    """Import `name` in a child process of this Python (its own session, killed with its group at the time limit)."""
    with tempfile.TemporaryDirectory(prefix="grader-doctor-") as home:
        try:
            proc = subprocess.Popen([sys.executable, "-c", _IMPORT_SCRIPT, name, MARK], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=import_env(Path(home)),
                                    cwd=home, start_new_session=True)
        except OSError as exc:
            return ModuleFact(name, False, error=f"cannot start {sys.executable}: {exc.strerror or exc}")
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return ModuleFact(name, False, error=f"import did not finish within {timeout_s:g} s")
    return _module_fact(name, proc.returncode, out[-OUTPUT_CAP:], err[-OUTPUT_CAP:])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's session (it leads its own group and is not reaped yet, so the group is still its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def _module_fact(name: str, returncode: int, out: bytes, err: bytes) -> ModuleFact:
    """The fact from the child's output: its MARK line, else the last line it wrote to stderr."""
    for raw in reversed(out.decode("utf-8", "replace").splitlines()):
        if raw.startswith(MARK):
            try:
                info = json.loads(raw[len(MARK):])
            except json.JSONDecodeError:
                break
            if not isinstance(info, dict):
                break
            if "error" in info:
                return ModuleFact(name, False, error=terminal_text(info["error"], 300))
            cuda = info.get("cuda")
            devices = info.get("devices")
            return ModuleFact(name, True, version=terminal_text(info.get("version") or "", 100) or None,
                              cuda=cuda if isinstance(cuda, bool) else None,
                              devices=devices if isinstance(devices, int) and not isinstance(devices, bool) else None)
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if returncode < 0:
        why = f"the import was killed by signal {-returncode}"
    else:
        why = lines[-1] if lines else f"exit status {returncode}"
    return ModuleFact(name, False, error=terminal_text(why, 300))


# ---------------------------------------------------------------------------
# Plan: what grader grade will do with those facts
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What ``grader grade`` will do on this machine (with ``--gpus``, ``--per-gpu``, ``--jobs`` as given to decide).

    ``blockers`` are why grading cannot run here (empty: it can); ``warnings`` what an instructor should know.
    """

    isolation: str  # "bwrap", "rlimits+netns" or "rlimits"
    isolation_note: str
    memory_limit: str
    process_limit: str
    slots: tuple[str, ...]  # "gpu 0", "cpu 0", as grader grade prints them
    slot_note: str
    threads_per_slot: int
    datasets: tuple[str, ...]  # both splits found
    missing_datasets: tuple[str, ...]
    rubrics: tuple[str, ...]  # shipped rubrics whose dataset is here
    backends: tuple[str, ...]  # --backend values that can run submissions
    notebooks: bool
    notebook_note: str
    warnings: tuple[str, ...]
    blockers: tuple[str, ...]

    @property
    def can_grade(self) -> bool:
        return not self.blockers


def decide(facts: Facts, *, gpus: str = "auto", per_gpu: int = 1, jobs: int = 1) -> Plan:
    """What ``grader grade --gpus GPUS --per-gpu K --jobs N`` will do given `facts` (nothing is probed).

    Raises ``grader.scheduler.SlotError`` for a --gpus/--per-gpu/--jobs combination grader grade would refuse.
    """
    machine, box = facts.machine, facts.sandbox
    warnings: list[str] = []
    blockers: list[str] = []

    # Isolation: choose_isolation("auto")'s rule, and the fallback's note as the sandbox writes it.
    isolation = sandbox.isolation_for("auto", bwrap=box.bwrap_usable, netns=box.netns_usable)
    if isolation == "bwrap":
        note = box.bwrap_reason
    else:
        note = sandbox.describe_fallback(isolation, box.bwrap_reason, _fallback_run_as(machine))
        if not machine.root:
            warnings.append(f"not running as root, so no bubblewrap: student code runs as your own uid {machine.uid} "
                            "without a private file system and can read every file you can")
        elif machine.sandbox_user_usable:
            warnings.append(f"running as root without bubblewrap: student code runs as uid {SANDBOX_UID} without a "
                            "private file system")
        else:
            warnings.append(f"running as root without bubblewrap, and uid {SANDBOX_UID} cannot be used "
                            f"({machine.sandbox_user_reason}): student code runs as root without a private file system")
        if isolation == "rlimits":
            warnings.append("no network namespace here: student code can reach the network")

    # Memory and processes: a cgroup per run where the host offers one, else rlimits alone.
    why_not = f": {box.cgroup_reason}" if box.cgroup_reason else ""
    if box.cgroup_memory:
        memory = f"a memory cgroup ({box.cgroup_version}) and RLIMIT_DATA"
    else:
        memory = "RLIMIT_DATA only"
        warnings.append(f"no memory cgroup{why_not}: memory is capped by RLIMIT_DATA only, which does not count shared "
                        "memory or files written to /tmp")
    if box.cgroup_pids:
        processes = f"a pids cgroup ({box.cgroup_version})"
    else:
        processes = "RLIMIT_NPROC"
        warnings.append(f"no pids cgroup{why_not}: processes are capped by RLIMIT_NPROC, counted per uid across every "
                        "run at once")

    # Slots: the scheduler's own rule over the GPUs nvidia-smi listed.
    listed = [gpu.index for gpu in facts.gpus.gpus]
    unmapped = facts.gpus.problem is not None and gpus != "none"
    if unmapped:  # grader grade stops at its slot plan (GpuError): what --gpus none would do instead
        blockers.append(f"the GPUs cannot be used: {facts.gpus.problem}; grader grade --gpus {gpus} stops there "
                        "(--gpus none grades on CPU slots)")
    slots = scheduler.plan_slots("none" if unmapped else gpus, per_gpu=per_gpu, jobs=jobs, available=listed)
    gpu_slots = [slot for slot in slots if slot.kind == "gpu"]
    if unmapped:
        slot_note = f"--gpus none: {jobs} CPU slot(s) (--jobs), as --gpus {gpus} cannot use the GPUs"
    elif gpu_slots:
        used = sorted({slot.gpu for slot in gpu_slots if slot.gpu is not None}, key=int)
        slot_note = f"--gpus {gpus}: GPU {', '.join(used)}, {per_gpu} job(s) each (--per-gpu)"
        torch = facts.module("torch")
        if torch.importable and torch.cuda is False:
            warnings.append(f"nvidia-smi lists {len(listed)} GPU(s) but torch cannot use CUDA: runs on GPU slots "
                            "train on the CPU")
    elif gpus == "none":
        slot_note = f"--gpus none: {jobs} CPU slot(s) (--jobs)"
    else:
        slot_note = f"--gpus {gpus} finds no GPU: {facts.gpus.why_none()}; --jobs N sets the CPU slots"
    names = tuple(f"{s.kind} {s.gpu if s.gpu is not None else s.index}" for s in slots)

    # Data: a dataset can be graded when both of its splits are here.
    splits: dict[str, list[SplitFact]] = {}
    for fact in facts.data:
        splits.setdefault(fact.dataset, []).append(fact)
    ready = tuple(name for name, found in splits.items() if all(f.found is not None for f in found))
    missing = tuple(name for name in splits if name not in ready)
    rubrics = tuple(r.name for r in facts.rubrics if r.dataset in ready)
    waiting: dict[str, list[str]] = {}  # a dataset not here -> the shipped rubrics that grade it
    for rubric in facts.rubrics:
        if rubric.problem is not None:
            warnings.append(f"shipped rubric {rubric.name} does not load: {rubric.problem}")
        elif rubric.dataset not in ready:
            waiting.setdefault(rubric.dataset, []).append(rubric.name)
    for dataset, waiting_rubrics in waiting.items():
        many = len(waiting_rubrics) > 1
        warnings.append(f"shipped rubric{'s' if many else ''} {', '.join(waiting_rubrics)} grade{'' if many else 's'} "
                        f"{dataset}, which is not here: grader grade downloads it first, which needs internet")
    if not ready:
        first = next((f for f in facts.data if f.found is None), None)
        remedy = f": {first.problem}" if first is not None and first.problem else ""
        blockers.append(f"no dataset has both splits here{remedy}")

    # Backends: a framework and keras must import; KerasTuner is what the assignment uses.
    keras = facts.module("keras")
    backends = tuple(name for name in BACKENDS if facts.module(name).importable and keras.importable)
    torch = facts.module("torch")
    if not torch.importable:
        blockers.append(f"torch does not import ({torch.error}): it is grader grade's default backend")
    if not keras.importable:
        blockers.append(f"keras does not import ({keras.error}): every submission and the evaluation of its models "
                        "need it")
    tuner = facts.module("keras_tuner")
    if not tuner.importable:
        warnings.append(f"keras_tuner does not import ({tuner.error}): submissions that use KerasTuner crash")

    # Notebooks: nbclient runs them, in an ipykernel of this Python.
    missing_nb = [facts.module(name) for name in NOTEBOOK_MODULES if not facts.module(name).importable]
    if missing_nb:
        notebook_note = "; ".join(f"{m.name} does not import ({m.error})" for m in missing_nb)
        warnings.append(f"notebook submissions cannot run: {notebook_note}")
    else:
        notebook_note = ", ".join(f"{name} {facts.module(name).version or ''}".strip() for name in NOTEBOOK_MODULES)

    return Plan(
        isolation=isolation,
        isolation_note=note,
        memory_limit=memory,
        process_limit=processes,
        slots=names,
        slot_note=slot_note,
        threads_per_slot=scheduler.threads_per_slot(len(slots), machine.cpus),
        datasets=ready,
        missing_datasets=missing,
        rubrics=rubrics,
        backends=backends,
        notebooks=not missing_nb,
        notebook_note=notebook_note,
        warnings=tuple(warnings),
        blockers=tuple(blockers),
    )


def _fallback_run_as(machine: MachineFacts) -> RunAs:
    """Who the rlimits fallback runs a command as (``choose_run_as`` without a spec: the paths are not known yet)."""
    if not machine.root:
        return RunAs(machine.uid, machine.gid, "self", "the grader is not root")
    if not machine.sandbox_user_usable:
        return RunAs(machine.uid, machine.gid, "self", machine.sandbox_user_reason)
    return RunAs(SANDBOX_UID, SANDBOX_GID, "setpriv" if machine.sandbox_user_reason == "setpriv" else "child", "")


# ---------------------------------------------------------------------------
# Showing it
# ---------------------------------------------------------------------------
def render(facts: Facts, plan: Plan) -> list[str]:
    """Plain lines for a terminal, grouped; every probe's text is made inert by terminal_text."""
    t = terminal_text
    m, box = facts.machine, facts.sandbox
    if m.root:
        user = f"root (uid 0); uid {SANDBOX_UID} " + (f"usable ({m.sandbox_user_reason})" if m.sandbox_user_usable
                                                     else f"not usable ({m.sandbox_user_reason})")
    else:
        user = f"{m.user} (uid {m.uid}), not root; uid {SANDBOX_UID} not used ({m.sandbox_user_reason})"
    lines = [
        "machine:",
        f"  Python: {t(m.python_version)} ({t(m.python_executable)})",
        f"  system: {t(m.system)}, {m.cpus} CPU(s)",
        f"  runs as: {t(user)}",
        "sandbox:",
    ]
    if box.bwrap_path is None:
        lines.append(f"  bubblewrap: not usable ({t(box.bwrap_reason)})")
    else:
        installed = f"{t(box.bwrap_path)}" + (f", {t(box.bwrap_version)}" if box.bwrap_version else "")
        state = "usable" if box.bwrap_usable else "not usable"
        lines.append(f"  bubblewrap: {installed}: {state} ({t(box.bwrap_reason)})")
    lines.append(f"  cgroups: {t(box.cgroup_line())}")
    lines.append(f"  network namespace: {'usable' if box.netns_usable else 'not usable'}")
    none = facts.gpus.why_none()
    lines.append(f"GPUs: none ({t(none)})" if none else f"GPUs: {len(facts.gpus.gpus)} ({t(facts.gpus.nvidia_smi)})")
    lines += [f"  {t(gpu.describe())}" for gpu in facts.gpus.gpus]
    lines.append("data:")
    lines += [f"  {t(split.line())}" for split in facts.data]
    lines.append(f"  Keras cache: {t(facts.keras_cache)}")
    shipped = ", ".join(f"{r.name} ({r.dataset}, {r.profile} profile)" if r.problem is None
                        else f"{r.name} (does not load: {r.problem})" for r in facts.rubrics)
    lines.append(f"  shipped rubrics: {t(shipped) or 'none'}")
    lines.append("backends:")
    lines += [f"  {module.name}: {t(module.describe())}" for module in facts.modules]
    lines.append("so grader grade will:")
    if plan.isolation == "bwrap":
        lines.append(f"  isolate each run with bubblewrap ({t(plan.isolation_note)})")
    else:
        lines.append(f"  isolate each run with {plan.isolation}: {t(plan.isolation_note)}")
    lines.append(f"  limit each run's memory by {plan.memory_limit}, its processes by {plan.process_limit}")
    lines.append(f"  run {len(plan.slots)} slot(s): {', '.join(plan.slots)} ({t(plan.slot_note)}), "
                 f"{plan.threads_per_slot} math thread(s) each")
    grades = ", ".join(plan.datasets) or "no dataset"
    lacks = f"; not {', '.join(plan.missing_datasets)} (not here)" if plan.missing_datasets else ""
    lines.append(f"  grade {grades}{lacks}; shipped rubrics ready: {', '.join(plan.rubrics) or 'none'}")
    lines.append("  run submissions with --backend " + (", ".join(plan.backends) if plan.backends else "(none works)"))
    if plan.notebooks:
        lines.append(f"  run notebooks ({t(plan.notebook_note)})")
    else:
        lines.append("  not run notebooks (see the warning)")
    lines += [f"  warning: {t(warning)}" for warning in plan.warnings]
    if plan.can_grade:
        lines.append("verdict: grading can run here")
    else:
        lines.append("verdict: grading cannot run here:")
        lines += [f"  - {t(blocker)}" for blocker in plan.blockers]
    return lines


def to_json(facts: Facts, plan: Plan) -> dict[str, Any]:
    """The versioned document ``grader doctor --json`` prints (schema: grader/schemas/doctor.schema.json)."""
    return {
        "doctor_version": DOCTOR_VERSION,
        "can_grade": plan.can_grade,
        "facts": _plain(dataclasses.asdict(facts)),
        "plan": _plain(dataclasses.asdict(plan)),
    }


def from_json(doc: Any) -> tuple[Facts, Plan]:
    """Facts and Plan back from a document ``to_json`` wrote; DoctorReportError when it is not a valid one."""
    if not isinstance(doc, dict) or doc.get("doctor_version") != DOCTOR_VERSION:
        version = doc.get("doctor_version") if isinstance(doc, dict) else None
        raise DoctorReportError(f"not a doctor report of version {DOCTOR_VERSION} (doctor_version is {version!r})")
    problems = schema_errors(doc, "doctor")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DoctorReportError(f"invalid doctor report: {problems[0]}{more}")
    return _build(Facts, doc["facts"]), _build(Plan, doc["plan"])


def _plain(value: Any) -> Any:
    """asdict's output with tuples as lists (what json.loads gives back)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _build(kind: Any, value: Any) -> Any:
    """A value of type `kind` (a frozen dataclass of this module, a tuple[X, ...], X | None, a scalar) from JSON."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _build(inner, value)
    if origin is tuple:
        return tuple(_build(typing.get_args(kind)[0], item) for item in value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)})
    return value


def main(*, json_output: bool = False, gpus: str = "auto", per_gpu: int = 1, jobs: int = 1) -> int:
    """Print what this machine offers and what grader grade will do (lines, or the JSON document with json_output).

    Returns 0 when grading can run here, 1 when it cannot (the verdict names why).
    """
    facts = gather()
    plan = decide(facts, gpus=gpus, per_gpu=per_gpu, jobs=jobs)
    if json_output:
        print(json.dumps(to_json(facts, plan), indent=2))  # ensure_ascii: control characters stay escaped
    else:
        print("\n".join(render(facts, plan)))
    return 0 if plan.can_grade else 1
