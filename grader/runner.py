"""Runs one submission end to end: stage it, run it sandboxed in its time box, collect its files, evaluate its models.

A tutorial-style notebook that ignores the contract is still graded, and its feedback says how
(``result.fallbacks``, which grader.feedback shows as "How your submission was
read"): a submission that imports tensorflow runs on the TensorFlow backend when it is installed
(``submission_backend``); keras.datasets' loaders answer from the grader's train split inside the
sandbox (grader/gpu_site/grader_fallbacks.py, which records it in ``.grader/fallbacks/``);
KerasTuner projects anywhere in the work dir are copied out (their oracle.json and trial.json
files only, through grader.harvest) and read by grader.evidence; and when
``models/best_<search>.keras`` is missing, the best trial's ``checkpoint.keras`` of that search's
project (saved whole by the same sandbox hook, at most max_model_mb) is evaluated instead.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from grader import __version__
from grader.checks import run_checks, score
from grader.contract import DATASETS, SEARCHES, TUNER_DIR, best_model_path
from grader.evidence import Evidence, TunerProject, find_tuner_projects, gather
from grader.gpus import MAX_REPORT_BYTES, MAX_REPORTS, GpuError, host_gpu, read_device, saw_no_gpu
from grader.harvest import Harvest, HarvestLimits, harvest, remove_tree
from grader.nbhtml import write_notebook_html
from grader.parse import BoundedParseError, load_json
from grader.protocol import EvalReport, RunSummary
from grader.result import Architecture, Artifact, Device, Isolation, ModelEvaluation, Result, Slot, Timings
from grader.rubric import Rubric
from grader.sandbox import SandboxResult, SandboxSpecError, SandboxUnavailableError, limit_message, run_sandboxed
from grader.session import (
    EVAL_MODEL,
    EVAL_PREDICTIONS,
    EVAL_REPORT,
    EXECUTED_NOTEBOOK,
    NOTEBOOK_SUBDIR,
    NOTEBOOK_SUMMARY,
    OUTPUT_SUBDIR,
    Layout,
    SessionSettings,
    plan_evaluation,
    plan_submission,
)
from grader.staging import InvalidSubmissionError, Submission, find_entry_point, stage
from grader.text import one_line
from grader.validate import FileProblem, read_regular
from grader.verify import VERIFICATION_FILE, read_verification

REQUIRED_MODELS = ("grid", "random")  # always reported, missing or not; other searches only when exported
NOTEBOOK_COPY = "notebook.executed.ipynb"  # next to result.json: the executed notebook, as copied out
NOTEBOOK_HTML = "notebook.html"  # next to result.json: the grader's own sanitised rendering of it
# What is copied out of the sandbox's tree, at most: the output dir, the notebook runner's two files, a child's report.
# (Every entry looked at counts towards max_files, those `keep` skips included.)
OUTPUT_LIMITS = HarvestLimits()
NOTEBOOK_LIMITS = HarvestLimits(max_files=100, max_depth=1, max_file_bytes=64 * 2**20, max_total_bytes=128 * 2**20)
CHILD_LIMITS = HarvestLimits(max_files=100, max_depth=1, max_total_bytes=64 * 2**20)
MAX_REPORT_FILE_BYTES = 256 * 1024  # an evaluation report: at most 200 class names of 100 characters, JSON-escaped
DEVICE_LIMITS = HarvestLimits(max_files=MAX_REPORTS, max_depth=1, max_file_bytes=MAX_REPORT_BYTES,
                              max_total_bytes=MAX_REPORTS * MAX_REPORT_BYTES)
# KerasTuner projects elsewhere in the work dir: only oracle.json and trial.json files, a project at most 3 folders down.
WORK_TUNER_LIMITS = HarvestLimits(max_files=5000, max_depth=6, max_file_bytes=4 * 2**20, max_total_bytes=64 * 2**20)
TUNER_FILES = ("oracle.json", "trial.json")
CHECKPOINT = "checkpoint.keras"  # a trial's best epoch, saved whole by grader/gpu_site/grader_fallbacks.py
FALLBACK_RECORDS = "fallbacks"  # .grader/fallbacks/<pid>.json: what the sandbox's hook intercepted
MAX_FALLBACK_RECORD_BYTES = 64 * 1024
MAX_IMAGES = 10**9  # a count of images a fallback record may claim, at most (more is not a count of MNIST images)
FALLBACK_LIMITS = HarvestLimits(max_files=MAX_REPORTS, max_depth=1, max_file_bytes=MAX_FALLBACK_RECORD_BYTES,
                                max_total_bytes=MAX_REPORTS * MAX_FALLBACK_RECORD_BYTES)
MAX_ENTRY_BYTES = 16 * 2**20  # an entry point read to see whether it imports tensorflow
TENSORFLOW = "tensorflow"
TF_MISSING = ("the submission imports tensorflow, which is not installed on the grading machine: "
              "pip install 'cnn-tuning-grader[tf]'")
_IMPORTS_TF = re.compile(r"^\s*(?:import\s+tensorflow\b|from\s+tensorflow\b)", re.MULTILINE)


@dataclass(frozen=True)
class TestSplit:
    """The held-out test split as the grader holds it: images on disk for the evaluation sandbox, labels in memory."""

    images: Path
    labels: np.ndarray


@dataclass(frozen=True)
class Job:
    """One submission to grade, and everything that does not depend on the slot it lands on."""

    submission: Submission
    content_hash: str
    layout: Layout
    settings: SessionSettings
    rubric: Rubric
    packages: Mapping[str, str]
    test: TestSplit
    max_model_bytes: int
    queued_at: float


@dataclass(frozen=True)
class Graded:
    """One graded submission: its Result, and the Evidence the checks judged (what feedback draws from)."""

    result: Result
    evidence: Evidence | None


def grade_submission(job: Job, slot: Slot) -> Graded:
    """Stage, run, collect and evaluate one submission; every failure of the submission becomes a Result.

    After the run nothing is read from the sandbox's tree but through grader.harvest, which copies
    what the grader needs (the output dir, the notebook runner's files) into ``layout.collected``
    without following any link; the evidence, the evaluations and the notebook page come from that copy.
    """
    started = time.monotonic()
    started_at = _now()
    queued_s = started - job.queued_at
    layout = job.layout
    reset_layout(layout)

    backend = BackendChoice(job.settings.backend)

    def finish(status: str, message: str, *, exit_code: int | None = None, signal: int | None = None,
               entry_point: str | None = None, run_s: float = 0.0, evaluation_s: float = 0.0,
               isolation: Isolation | None = None, collected: Collected | None = None,
               evaluations: tuple[ModelEvaluation, ...] = (), device: Device | None = None) -> Graded:
        notebook = layout.collected_notebook / EXECUTED_NOTEBOOK
        found = collected.outputs if collected is not None else None
        if backend.problem:
            message = f"{message}; {backend.problem}"
        evidence = gather(layout.collected_outputs, aliases=job.rubric.aliases, run_status=status,
                          run_message=message, evaluations=evaluations,
                          notebook=notebook if notebook.is_file() else None,
                          refused=[(r.display, r.reason) for r in found.refused] if found else (),
                          unread=found.problem if found else None,
                          work_projects=collected.work_projects if collected is not None else None,
                          run_seconds=run_s or None)  # 0.0: not run
        verified = read_verification(layout.root / VERIFICATION_FILE, job.content_hash, job.rubric)
        checks = run_checks(job.rubric, replace(evidence, verification=verified))
        result = Result(
            schema_version=1,
            student_id=job.submission.student_id,
            content_hash=job.content_hash,
            rubric_hash=job.rubric.hash,
            grader_version=__version__,
            profile=job.settings.profile,
            status=status,  # type: ignore[arg-type]
            message=message,
            exit_code=exit_code,
            signal=signal,
            entry_point=entry_point,
            timings=Timings(round(queued_s, 3), round(run_s, 3), round(evaluation_s, 3), started_at, _now()),
            slot=slot,
            isolation=isolation,
            packages=dict(job.packages),
            artifacts=inventory(collected.outputs) if collected is not None else (),
            evaluations=evaluations,
            logs=_log_paths(layout),
            checks=checks,
            score=score(checks),
            device=device,
            fallbacks=fallback_notes(backend, collected, evidence, evaluations),
        )
        return Graded(result, evidence)

    try:
        staged = stage(job.submission, layout.work)
    except InvalidSubmissionError as exc:
        return finish("invalid_submission", str(exc))
    lone = job.submission.kind in ("notebook", "script")
    entry = staged.files[0] if lone and staged.files else find_entry_point(layout.work, job.rubric.entry_points)
    if entry is None:
        return finish("invalid_submission", f"no entry point: expected one of {', '.join(job.rubric.entry_points)} "
                                            f"at the top of the submission")
    layout.outputs.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    remove_tree(layout.device_reports)  # only what this run's processes report counts, never a staged copy
    remove_tree(layout.notebook_files / FALLBACK_RECORDS)
    backend = submission_backend(layout.work / entry, job.settings.backend)
    if backend.backend != job.settings.backend:  # this run (and its models' evaluation) only
        job = replace(job, settings=replace(job.settings, backend=backend.backend))
    try:
        run = run_sandboxed(plan_submission(layout, entry, slot, job.settings))
    except (SandboxUnavailableError, SandboxSpecError, GpuError, OSError) as exc:  # GpuError: a slot's GPU is gone
        return finish("sandbox_error", f"the sandbox could not start: {exc}", entry_point=entry)
    isolation = Isolation(run.isolation, _isolation_details(job.settings, run))
    collected = collect(layout, notebook=entry.endswith(".ipynb"), disk_bytes=job.settings.limits.disk_bytes)
    status, message = _verdict(run, collected.summary, job.settings)
    device = collect_device(layout)
    status, message = _device_verdict(status, message, slot, device, _gpu_name(slot))
    if collected.summary_problem and status == "completed":
        message = f"{message}; {collected.summary_problem}"
    if collected.notebook_executed:
        _keep_notebook(layout)
    eval_started = time.monotonic()
    evaluations = tuple(evaluate_models(layout, slot, job, collected.outputs, collected.work_projects))
    return finish(status, message, exit_code=run.exit_code, signal=run.signal, entry_point=entry,
                  run_s=run.wall_seconds, evaluation_s=time.monotonic() - eval_started, isolation=isolation,
                  collected=collected, evaluations=evaluations,
                  device=device or Device("cpu", note=saw_no_gpu(None)))


# ---------------------------------------------------------------- collecting from the sandbox's tree


@dataclass(frozen=True)
class Collected:
    """What the grader copied out of the sandbox's tree: the output dir and the notebook runner's files."""

    outputs: Harvest
    summary: RunSummary | None
    summary_problem: str | None
    notebook_executed: bool
    work_projects: Path | None = None  # the grader's copy of the work dir's KerasTuner files (grader.evidence reads it)
    datasets: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # load_data() answered: (train, held back)


def _outputs_kept(rel: str) -> bool:
    """A KerasTuner project's checkpoints are not copied: only its trial.json and oracle.json files are read."""
    if not rel.startswith(f"{TUNER_DIR}/") or rel.endswith("/"):
        return True
    return rel.endswith(("/trial.json", "/oracle.json"))


def collect(layout: Layout, *, notebook: bool, disk_bytes: int | None = None) -> Collected:
    """Copy the output dir, and for a notebook the runner's two files, out of the sandbox's tree, never following a link.

    A script's run never has its ``.grader`` files read: whatever it wrote there is its own. At most
    ``disk_bytes`` (the work dir's cap) are copied, so a run stopped past its cap does not fill the disk twice.
    """
    limits = OUTPUT_LIMITS
    if disk_bytes is not None:
        limits = replace(limits, max_total_bytes=min(limits.max_total_bytes, disk_bytes))
    outputs = harvest(layout.outputs, layout.collected_outputs, limits=limits, keep=_outputs_kept, within=layout.root)
    kept: set[str] = set()
    if notebook:
        copied = harvest(layout.notebook_files, layout.collected_notebook, limits=NOTEBOOK_LIMITS,
                         keep=lambda rel: rel in (EXECUTED_NOTEBOOK, NOTEBOOK_SUMMARY), within=layout.root)
        kept = {f.rel for f in copied.files}
    summary, problem = None, None
    if NOTEBOOK_SUMMARY in kept:
        try:
            raw = (layout.collected_notebook / NOTEBOOK_SUMMARY).read_bytes()
            summary = RunSummary.from_json(load_json(raw))
        except (OSError, ValueError) as exc:
            problem = f"the notebook runner's summary is unreadable: {exc}"
    return Collected(outputs, summary, problem, EXECUTED_NOTEBOOK in kept, collect_work_projects(layout),
                     collect_datasets(layout))


def _work_tuner_kept(rel: str) -> bool:
    """In the work dir: folders but the output dir (copied on its own), the grader's and hidden ones; tuner JSON files."""
    if rel.endswith("/"):
        parts = rel.rstrip("/").split("/")
        return not (parts[0] in (OUTPUT_SUBDIR, NOTEBOOK_SUBDIR) or any(p.startswith(".") or p == "__pycache__"
                                                                          for p in parts))
    return rel.rsplit("/", 1)[-1] in TUNER_FILES


def collect_work_projects(layout: Layout) -> Path:
    """Copy the oracle.json and trial.json files found in the work dir, outside the output dir, out of the sandbox's
    tree (a tutorial's ``directory="my_dir"``); returns the copy, which grader.evidence walks for projects."""
    found = harvest(layout.work, layout.collected_work, limits=WORK_TUNER_LIMITS, keep=_work_tuner_kept,
                    within=layout.root)
    return found.root


def collect_datasets(layout: Layout) -> dict[str, tuple[int, int]]:
    """Which keras.datasets loaders the sandbox's hook answered, with the images given as train and as held back."""
    found = harvest(layout.notebook_files / FALLBACK_RECORDS, layout.collected / FALLBACK_RECORDS,
                    limits=FALLBACK_LIMITS, keep=lambda rel: rel.endswith(".json"), within=layout.root)
    out: dict[str, tuple[int, int]] = {}
    for f in found.files:
        try:
            doc = load_json((found.root / f.rel).read_bytes(), max_bytes=MAX_FALLBACK_RECORD_BYTES)
        except (OSError, BoundedParseError, ValueError):
            continue
        datasets = doc.get("datasets") if isinstance(doc, dict) else None
        for name, sizes in (datasets.items() if isinstance(datasets, dict) else ()):
            if name in DATASETS and isinstance(sizes, dict):
                train, held = sizes.get("train"), sizes.get("held_back")
                if _image_count(train) and _image_count(held):
                    out[name] = (train, held)
    return out


def _image_count(value: Any) -> bool:
    """Whether a record's value is a plausible count of images: an int (not a bool) from 0 to MAX_IMAGES."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_IMAGES


def collect_device(layout: Layout) -> Device | None:
    """What the job reported it saw (grader.gpus.read_device), copied out of its .grader/device folder; None without
    a report."""
    found = harvest(layout.device_reports, layout.collected_device, limits=DEVICE_LIMITS,
                    keep=lambda rel: rel.endswith(".json"), within=layout.root)
    return read_device(found.root, tuple(f.rel for f in found.files))


def _keep_notebook(layout: Layout) -> None:
    """Keep the executed notebook next to result.json, and the grader's own sanitised HTML page of it."""
    executed = layout.collected_notebook / EXECUTED_NOTEBOOK
    shutil.copyfile(executed, layout.root / NOTEBOOK_COPY)
    write_notebook_html(executed, layout.root / NOTEBOOK_HTML, title=f"{layout.root.name}: executed notebook")


def inventory(found: Harvest) -> tuple[Artifact, ...]:
    """Every entry the submission left in its output dir: the files the grader copied, and what it refused, and why."""
    artifacts = [Artifact(f.rel, f.bytes, _kind(f.rel)) for f in found.files]
    artifacts += [Artifact(r.display, 0, "refused", r.reason) for r in found.refused]
    return tuple(artifacts)


def _kind(rel: str) -> str:
    suffix = Path(rel).suffix.lower()
    return {".keras": "model", ".png": "plot", ".csv": "table", ".jsonl": "trials", ".yaml": "answers",
            ".yml": "answers", ".json": "json"}.get(suffix, "other")


# ---------------------------------------------------------------- the run's verdict


def _verdict(run: SandboxResult, notebook: RunSummary | None, settings: SessionSettings) -> tuple[str, str]:
    """The run's status and a one-line message saying what happened.

    The sandbox's own account (time box, limits, exit status) comes first; the notebook runner's
    summary, which the submission's code could have rewritten, only explains a run the sandbox saw end.
    """
    if run.timed_out:
        return "timed_out", (f"stopped at the time limit of {settings.time_limit_s:g} s; "
                             "the files written before then are still graded")
    if run.error:
        return "sandbox_error", run.error
    over = limit_message(run, settings.limits)
    if over is not None and (run.limit_exceeded in ("disk", "tree") or run.exit_code != 0):
        return "crashed", over
    if notebook is not None:
        if notebook.status == "kernel_died":
            return "crashed", f"the notebook's kernel died in cell {notebook.kernel_died_cell}"
        if notebook.status == "cell_timeout":
            return "timed_out", (f"cell {notebook.timed_out_cell} ran past the per-cell limit of "
                                 f"{settings.cell_timeout_s:g} s; the later cells still ran")
    if run.signal is not None:
        return "crashed", f"killed by signal {run.signal}" + _stderr_hint(run)
    if run.exit_code not in (0, None):
        return "crashed", f"exited with code {run.exit_code}" + _stderr_hint(run)
    if notebook is not None and notebook.errors:
        first = notebook.errors[0]
        return "completed", one_line(f"{len(notebook.errors)} notebook cell(s) raised an error, first cell "
                                     f"{first.cell_index}: {first.ename}: {first.evalue}", 300)
    if over is not None:  # a child hit a limit, the run itself still ended well
        return "completed", f"ran to the end, though part of it hit a limit: it {over}"
    return "completed", "ran to the end"


def _device_verdict(status: str, message: str, slot: Slot, device: Device | None, gpu_name: str) -> tuple[str, str]:
    """A job on a GPU slot that saw no GPU is the grader's failure (sandbox_error, retried), not a silent CPU run.

    A run that crashed or timed out without any report stands as it is: it stopped before it imported a framework,
    so it says nothing about the GPU. CPU slots are never judged on what they saw.
    """
    if slot.kind != "gpu" or status == "sandbox_error" or (device is not None and device.kind == "gpu"):
        return status, message
    if device is None and status != "completed":
        return status, message
    return "sandbox_error", (f"GPU slot {slot.index} (GPU {slot.gpu}, {gpu_name}): "
                             f"the job saw no GPU ({saw_no_gpu(device)})")


def _gpu_name(slot: Slot) -> str:
    if slot.kind != "gpu" or slot.gpu is None:
        return ""
    try:
        return host_gpu(slot.gpu).name
    except GpuError:
        return "unknown"


def _stderr_hint(run: SandboxResult) -> str:
    """': <last non-empty line of stderr>' (decoded leniently, control characters removed), or ''."""
    try:
        with open(run.stderr_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            tail = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("[...")]
    return f": {one_line(lines[-1], 240)}" if lines else ""


# ---------------------------------------------------------------- evaluating the exported models


def evaluate_models(layout: Layout, slot: Slot, job: Job, outputs: Harvest,
                    work_projects: Path | None = None) -> list[ModelEvaluation]:
    """Evaluate every exported best model on the held-out test split, each in its own sandbox and time box.

    A search whose models/best_<search>.keras was not written at all, but whose KerasTuner project
    has a completed trial, has that project's best trial's checkpoint.keras evaluated instead (its
    ModelEvaluation's path names the checkpoint, as the submission's tree shows it).
    """
    copied = {f.rel: f.bytes for f in outputs.files}
    refused = {r.display: r.reason for r in outputs.refused}
    unwritten = [best_model_path(s) not in copied and best_model_path(s) not in refused for s in SEARCHES]
    projects = (find_tuner_projects(outputs.root, work_projects, job.rubric.aliases)
                if any(unwritten) and not outputs.stopped else {})
    evaluations = []
    for search in SEARCHES:
        rel = best_model_path(search)
        project = projects.get(search)
        if project is not None and project.best_trial is not None and rel not in copied and rel not in refused:
            started = time.monotonic()
            source, shown, error = collect_checkpoint(layout, project, job.max_model_bytes)
            accuracy, architecture = None, None
            if source is not None:
                accuracy, error, architecture = _evaluate_one(layout, slot, job, search, source, shown)
            evaluations.append(ModelEvaluation(search, shown, accuracy, len(job.test.labels), error,
                                               round(time.monotonic() - started, 3), architecture))
            continue
        if search not in REQUIRED_MODELS and rel not in copied and rel not in refused:
            continue
        started = time.monotonic()
        accuracy, architecture, error = None, None, _refuse_model(rel, copied, refused, job.max_model_bytes,
                                                                  outputs.stopped)
        if error is None:
            accuracy, error, architecture = _evaluate_one(layout, slot, job, search, layout.collected_outputs / rel,
                                                          rel)
        evaluations.append(ModelEvaluation(search, rel, accuracy, len(job.test.labels), error,
                                           round(time.monotonic() - started, 3), architecture))
    return evaluations


def checkpoint_shown(project: TunerProject) -> str:
    """The best trial's checkpoint as the submission's folder shows it: 'my_dir/p/trial_3/checkpoint.keras'."""
    prefix = f"{OUTPUT_SUBDIR}/" if project.origin == "output" else ""
    return f"{prefix}{project.best_trial}/{CHECKPOINT}"


def collect_checkpoint(layout: Layout, project: TunerProject, max_bytes: int) -> tuple[Path | None, str, str | None]:
    """Copy the best trial's checkpoint.keras (at most max_bytes) out of the sandbox's tree: (copy, shown, error)."""
    shown = checkpoint_shown(project)
    base = layout.outputs if project.origin == "output" else layout.work
    found = harvest(base / str(project.best_trial), layout.collected / "checkpoints" / project.search,
                    limits=HarvestLimits(max_files=100, max_depth=1, max_file_bytes=max_bytes,
                                         max_total_bytes=max_bytes),
                    keep=lambda rel: rel == CHECKPOINT, within=layout.root)
    if any(f.rel == CHECKPOINT for f in found.files):
        return found.root / CHECKPOINT, shown, None
    reason = next((r.reason for r in found.refused if r.display == CHECKPOINT), None)
    if reason is not None:
        return None, shown, f"{shown} was not read: it {reason}"
    return None, shown, (f"{best_model_path(project.search)} was not written, and the best trial's folder "
                         f"{shown.rsplit('/', 1)[0]} holds no {CHECKPOINT} (KerasTuner itself saves only weights)")


def _refuse_model(rel: str, copied: Mapping[str, int], refused: Mapping[str, str], max_bytes: int,
                  stopped: bool = False) -> str | None:
    """Why a model file is not evaluated at all (missing, not copied, too large), or None."""
    if rel in refused:
        return f"{rel} was not read: it {refused[rel]}"
    folder = next((name for name in refused if rel.startswith(f"{name}/")), None)
    if folder is not None:
        return f"{rel} was not read: {folder} {refused[folder]}"
    if rel not in copied:
        if any(name.startswith(f"{rel}/") for name in copied):
            return f"{rel} is a folder, not a model file"
        if stopped:
            return f"{rel} was not read: the output dir holds more than the grader copies (see its refused entries)"
        return f"{rel} was not written"
    if copied[rel] > max_bytes:
        return f"{rel} is {copied[rel] / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit for a model"
    return None


def _evaluate_one(layout: Layout, slot: Slot, job: Job, search: str, source: Path, shown: str
                  ) -> tuple[float | None, str | None, Architecture | None]:
    """Run one model's evaluation child in its own sandbox on the grader's copy `source` of the model the submission
    shows as `shown`: its accuracy, or None and the reason; and the architecture the child reported (None when the
    model did not load, or when the report was refused)."""
    folder = layout.evaluation_of(search)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / EVAL_MODEL)
    spec = plan_evaluation(layout, search, slot, job.settings, job.test.images)
    try:
        run = run_sandboxed(spec)
    except (SandboxUnavailableError, SandboxSpecError, OSError) as exc:
        return None, f"the evaluation sandbox could not start: {exc}", None
    if run.timed_out:
        return None, f"evaluating the model took longer than its limit of {spec.time_limit_s:g} s", None
    over = limit_message(run, spec.limits)
    if over is not None:
        return None, f"evaluating the model {over}", None
    n_test = len(job.test.labels)
    found = harvest(folder, layout.collected / "eval" / search,
                    limits=replace(CHILD_LIMITS, max_file_bytes=max(n_test * 8, MAX_REPORT_FILE_BYTES) + 4096),
                    keep=lambda rel: rel in (EVAL_PREDICTIONS, EVAL_REPORT), within=layout.root)
    kept = {f.rel for f in found.files}
    if EVAL_REPORT not in kept:
        return None, _stderr_hint(run).removeprefix(": ") or f"the evaluation exited with code {run.exit_code}", None
    try:
        report = EvalReport.from_json(load_json(found.root.joinpath(EVAL_REPORT).read_bytes()))
    except (OSError, ValueError) as exc:
        return None, one_line(f"the evaluation report is unreadable: {exc}", 300), None
    if report.error is not None:  # the grader's own paths are no business of the student's
        return None, one_line(report.error.replace(str(folder / EVAL_MODEL), shown), 300), report.architecture
    if EVAL_PREDICTIONS not in kept:
        return None, "the evaluation left no predictions", report.architecture
    return *_accuracy(found.root / EVAL_PREDICTIONS, job.test.labels), report.architecture


def _accuracy(predictions_path: Path, labels: np.ndarray) -> tuple[float | None, str | None]:
    """Accuracy of saved predictions against the labels the grader kept to itself."""
    try:  # the file is small (harvest capped it), but its header could still claim a huge shape
        predictions = np.load(io.BytesIO(predictions_path.read_bytes()), allow_pickle=False)
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        return None, one_line(f"the evaluation left no readable predictions: {exc}", 300)
    if predictions.shape != labels.shape or predictions.dtype.kind not in "iu":
        return None, f"the model gave {predictions.size} predictions for {len(labels)} test images"
    return round(float((predictions == labels).mean()), 6), None


def reset_layout(layout: Layout) -> None:
    """Remove what an interrupted earlier attempt left (result.json stays until the new one replaces it)."""
    for folder in (layout.work, layout.collected, layout.evaluation, layout.logs):
        remove_tree(folder)
    for name in (NOTEBOOK_COPY, NOTEBOOK_HTML):
        remove_tree(layout.root / name)
    layout.root.mkdir(parents=True, exist_ok=True)


def _log_paths(layout: Layout) -> dict[str, str]:
    """The grader's own files about the run (logs it wrote from the sandbox's pipes, the notebook copies)."""
    names = {}
    for path in sorted(layout.logs.glob("*.log")) if layout.logs.is_dir() else []:
        names[path.stem] = path.relative_to(layout.root).as_posix()
    for key, name in (("notebook", NOTEBOOK_COPY), ("html", NOTEBOOK_HTML)):
        if (layout.root / name).is_file():
            names[key] = name
    return names


def _isolation_details(settings: SessionSettings, run: SandboxResult) -> str:
    """One line for result.isolation.details: what isolated the run (for the fallback: why not bubblewrap, which uid,
    which network), the limits, and the cgroup that held them (or why none did, and what held them instead)."""
    lim = settings.limits
    disk = f", work dir {lim.disk_bytes // 2**20} MiB" if lim.disk_bytes else ""
    limits = (f"memory {lim.memory_bytes // 2**20} MiB, file size {lim.file_size_bytes // 2**20} MiB{disk}, "
              f"{lim.max_processes} processes, {lim.max_open_files} open files, no core dumps")
    if run.cgroup.startswith("none: "):
        held = (f"no cgroup ({run.cgroup.removeprefix('none: ')}): memory held by RLIMIT_DATA alone, "
                f"processes by {run.process_limit} per uid")
    else:
        held = f"cgroup {run.cgroup}"
    parts = [run.isolation_note, limits, held] if run.isolation_note else [limits, held]
    return one_line("; ".join(parts), 1000)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the contract's fallbacks


@dataclass(frozen=True)
class BackendChoice:
    """The KERAS_BACKEND one submission runs on; why it differs from the batch's, or what it lacks."""

    backend: str
    note: str | None = None  # the backend was switched for this submission, and why
    problem: str | None = None  # the submission needs a backend this machine lacks (added to result.message)


def imports_tensorflow(entry: Path) -> bool:
    """Whether the staged entry point (a script, or a notebook's code cells) imports tensorflow; read within bounds."""
    try:
        data = read_regular(entry, MAX_ENTRY_BYTES)
    except FileProblem:
        return False
    text = data.decode("utf-8", "replace")
    if entry.suffix == ".ipynb":
        try:
            doc = load_json(data, max_bytes=MAX_ENTRY_BYTES, max_int_digits=1000, max_depth=10_000)
        except BoundedParseError:
            return False
        cells = doc.get("cells") if isinstance(doc, dict) else None
        sources = [c.get("source", "") for c in (cells if isinstance(cells, list) else [])
                   if isinstance(c, dict) and c.get("cell_type") == "code"]
        text = "\n".join("".join(x for x in src if isinstance(x, str)) if isinstance(src, list)
                         else src if isinstance(src, str) else "" for src in sources)
    return _IMPORTS_TF.search(text) is not None


def tensorflow_installed() -> bool:
    """Whether tensorflow can be imported here (located, never imported: the grader imports no framework)."""
    import importlib.util

    try:
        return importlib.util.find_spec(TENSORFLOW) is not None
    except (ImportError, ValueError):
        return False


def submission_backend(entry: Path, default: str) -> BackendChoice:
    """The backend a submission runs on: TensorFlow when its entry point imports tensorflow and it is installed, the
    batch's --backend otherwise (with the line saying how to install it when it is missing)."""
    if default == TENSORFLOW or not imports_tensorflow(entry):
        return BackendChoice(default)
    if tensorflow_installed():
        return BackendChoice(TENSORFLOW, note=f"Ran on the TensorFlow backend instead of {default}: your code imports "
                                              "tensorflow (KERAS_BACKEND=tensorflow for this submission).")
    return BackendChoice(default, problem=TF_MISSING)


def fallback_notes(backend: BackendChoice, collected: Collected | None, evidence: Evidence,
                   evaluations: Sequence[ModelEvaluation]) -> tuple[str, ...]:
    """One line per fallback the grading used, saying what the contract asks instead (for the feedback)."""
    notes = [n for n in (backend.note, backend.problem and f"{backend.problem[0].upper()}{backend.problem[1:]}.") if n]
    for name, (train, held) in sorted((collected.datasets if collected is not None else {}).items()):
        notes.append(f"keras.datasets.{name}.load_data() was answered by the grader (there is no network): "
                     f"{train} images of its train split to train on and {held} more held back from it as the "
                     f"\"test\" pair; the real test split stays with the grader. The contract: read the train "
                     f"split from GRADER_DATA_DIR (tunekit.data).")
    for search, project in sorted(evidence.tuner_projects.items()):
        if project.origin != "work":
            continue
        oracle = f" ({project.oracle}, graded as the {search} search)" if project.oracle else ""
        notes.append(f"The {search} search's trials were read from the KerasTuner folder {project.folder}{oracle}, "
                     f"found outside your output folder: the contract asks for trials.jsonl in it.")
    for ev in evaluations:
        if ev.path != best_model_path(ev.search):
            notes.append(f"The {ev.search} search's model was evaluated from {ev.path}, its best trial's "
                         f"checkpoint: the contract asks you to save it as {best_model_path(ev.search)}.")
    return tuple(one_line(n, 400) for n in notes)


