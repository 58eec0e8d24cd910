"""Runs one submission end to end: stage it, run it sandboxed in its time box, collect its files, evaluate its models."""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np

from grader import __version__
from grader.checks import run_checks, score
from grader.contract import SEARCHES, TUNER_DIR, best_model_path
from grader.evidence import Evidence, gather
from grader.gpus import MAX_REPORT_BYTES, MAX_REPORTS, GpuError, host_gpu, read_device, saw_no_gpu
from grader.harvest import Harvest, HarvestLimits, harvest, remove_tree
from grader.nbhtml import write_notebook_html
from grader.parse import load_json
from grader.protocol import EvalReport, RunSummary
from grader.result import Artifact, Device, Isolation, ModelEvaluation, Result, Slot, Timings
from grader.rubric import Rubric
from grader.sandbox import SandboxResult, SandboxSpecError, SandboxUnavailableError, limit_message, run_sandboxed
from grader.session import (
    EVAL_MODEL,
    EVAL_PREDICTIONS,
    EVAL_REPORT,
    EXECUTED_NOTEBOOK,
    NOTEBOOK_SUMMARY,
    Layout,
    SessionSettings,
    plan_evaluation,
    plan_submission,
)
from grader.staging import InvalidSubmissionError, Submission, find_entry_point, stage
from grader.text import one_line

REQUIRED_MODELS = ("grid", "random")  # always reported, missing or not; other searches only when exported
NOTEBOOK_COPY = "notebook.executed.ipynb"  # next to result.json: the executed notebook, as copied out
NOTEBOOK_HTML = "notebook.html"  # next to result.json: the grader's own sanitised rendering of it
# What is copied out of the sandbox's tree, at most: the output dir, the notebook runner's two files, a child's report.
# (Every entry looked at counts towards max_files, those `keep` skips included.)
OUTPUT_LIMITS = HarvestLimits()
NOTEBOOK_LIMITS = HarvestLimits(max_files=100, max_depth=1, max_file_bytes=64 * 2**20, max_total_bytes=128 * 2**20)
CHILD_LIMITS = HarvestLimits(max_files=100, max_depth=1, max_total_bytes=64 * 2**20)
DEVICE_LIMITS = HarvestLimits(max_files=MAX_REPORTS, max_depth=1, max_file_bytes=MAX_REPORT_BYTES,
                              max_total_bytes=MAX_REPORTS * MAX_REPORT_BYTES)


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

    def finish(status: str, message: str, *, exit_code: int | None = None, signal: int | None = None,
               entry_point: str | None = None, run_s: float = 0.0, evaluation_s: float = 0.0,
               isolation: Isolation | None = None, collected: Collected | None = None,
               evaluations: tuple[ModelEvaluation, ...] = (), device: Device | None = None) -> Graded:
        notebook = layout.collected_notebook / EXECUTED_NOTEBOOK
        found = collected.outputs if collected is not None else None
        evidence = gather(layout.collected_outputs, aliases=job.rubric.aliases, run_status=status,
                          run_message=message, evaluations=evaluations,
                          notebook=notebook if notebook.is_file() else None,
                          refused=[(r.display, r.reason) for r in found.refused] if found else (),
                          unread=found.problem if found else None)
        checks = run_checks(job.rubric, evidence)
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
    evaluations = tuple(evaluate_models(layout, slot, job, collected.outputs))
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
    return Collected(outputs, summary, problem, EXECUTED_NOTEBOOK in kept)


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


def evaluate_models(layout: Layout, slot: Slot, job: Job, outputs: Harvest) -> list[ModelEvaluation]:
    """Evaluate every exported best model on the held-out test split, each in its own sandbox and time box."""
    copied = {f.rel: f.bytes for f in outputs.files}
    refused = {r.display: r.reason for r in outputs.refused}
    evaluations = []
    for search in SEARCHES:
        rel = best_model_path(search)
        if search not in REQUIRED_MODELS and rel not in copied and rel not in refused:
            continue
        started = time.monotonic()
        accuracy, error = None, _refuse_model(rel, copied, refused, job.max_model_bytes, outputs.stopped)
        if error is None:
            accuracy, error = _evaluate_one(layout, slot, job, search)
        evaluations.append(ModelEvaluation(search, rel, accuracy, len(job.test.labels), error,
                                           round(time.monotonic() - started, 3)))
    return evaluations


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


def _evaluate_one(layout: Layout, slot: Slot, job: Job, search: str) -> tuple[float | None, str | None]:
    """Run one model's evaluation child in its own sandbox; its accuracy, or None and the reason."""
    folder = layout.evaluation_of(search)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(layout.collected_outputs / best_model_path(search), folder / EVAL_MODEL)
    spec = plan_evaluation(layout, search, slot, job.settings, job.test.images)
    try:
        run = run_sandboxed(spec)
    except (SandboxUnavailableError, SandboxSpecError, OSError) as exc:
        return None, f"the evaluation sandbox could not start: {exc}"
    if run.timed_out:
        return None, f"evaluating the model took longer than its limit of {spec.time_limit_s:g} s"
    over = limit_message(run, spec.limits)
    if over is not None:
        return None, f"evaluating the model {over}"
    n_test = len(job.test.labels)
    found = harvest(folder, layout.collected / "eval" / search,
                    limits=replace(CHILD_LIMITS, max_file_bytes=n_test * 8 + 4096),
                    keep=lambda rel: rel in (EVAL_PREDICTIONS, EVAL_REPORT), within=layout.root)
    kept = {f.rel for f in found.files}
    if EVAL_REPORT not in kept:
        return None, _stderr_hint(run).removeprefix(": ") or f"the evaluation exited with code {run.exit_code}"
    try:
        report = EvalReport.from_json(load_json(found.root.joinpath(EVAL_REPORT).read_bytes()))
    except (OSError, ValueError) as exc:
        return None, one_line(f"the evaluation report is unreadable: {exc}", 300)
    if report.error is not None:  # the grader's own paths are no business of the student's
        return None, one_line(report.error.replace(str(folder / EVAL_MODEL), best_model_path(search)), 300)
    if EVAL_PREDICTIONS not in kept:
        return None, "the evaluation left no predictions"
    return _accuracy(found.root / EVAL_PREDICTIONS, job.test.labels)


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
