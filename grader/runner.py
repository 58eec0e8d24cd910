"""Runs one submission end to end: stage it, run it sandboxed in its time box, collect its files, evaluate its models."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np

from grader import __version__
from grader.contract import MODELS_DIR, SEARCHES
from grader.checks import run_checks, score
from grader.evidence import gather
from grader.result import Artifact, Isolation, ModelEvaluation, Result, Slot, Timings
from grader.rubric import Rubric
from grader.sandbox import SandboxResult, SandboxSpecError, SandboxUnavailableError, run_sandboxed
from grader.session import EVAL_REPORT, Layout, SessionSettings, plan_evaluation, plan_submission
from grader.staging import InvalidSubmissionError, Submission, find_entry_point, stage

REQUIRED_MODELS = ("grid", "random")  # always reported, missing or not; other searches only when exported


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


def grade_submission(job: Job, slot: Slot) -> Result:
    """Stage, run, collect and evaluate one submission; every failure of the submission becomes a Result."""
    started = time.monotonic()
    started_at = _now()
    queued_s = started - job.queued_at
    layout = job.layout
    _reset(layout)

    def finish(status: str, message: str, *, exit_code: int | None = None, signal: int | None = None,
               entry_point: str | None = None, run_s: float = 0.0, evaluation_s: float = 0.0,
               isolation: Isolation | None = None, artifacts: tuple[Artifact, ...] = (),
               evaluations: tuple[ModelEvaluation, ...] = ()) -> Result:
        notebook = layout.root / "notebook.executed.ipynb"
        evidence = gather(layout.outputs, aliases=job.rubric.aliases, run_status=status, run_message=message,
                          evaluations=evaluations, notebook=notebook if notebook.is_file() else None)
        checks = run_checks(job.rubric, evidence)
        return Result(
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
            artifacts=artifacts,
            evaluations=evaluations,
            logs=_log_paths(layout),
            checks=checks,
            score=score(checks),
        )

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
    try:
        run = run_sandboxed(plan_submission(layout, entry, slot, job.settings))
    except (SandboxUnavailableError, SandboxSpecError, OSError) as exc:
        return finish("sandbox_error", f"the sandbox could not start: {exc}", entry_point=entry)
    isolation = Isolation(run.isolation, _isolation_details(job.settings))
    status, message = _verdict(run, layout, job.settings)
    _keep_notebook_files(layout)
    artifacts = inventory(layout.outputs)
    eval_started = time.monotonic()
    evaluations = tuple(evaluate_models(layout, slot, job))
    return finish(status, message, exit_code=run.exit_code, signal=run.signal, entry_point=entry,
                  run_s=run.wall_seconds, evaluation_s=time.monotonic() - eval_started, isolation=isolation,
                  artifacts=artifacts, evaluations=evaluations)


def _verdict(run: SandboxResult, layout: Layout, settings: SessionSettings) -> tuple[str, str]:
    """The run's status and a one-line message saying what happened."""
    notebook = _notebook_summary(layout)
    if run.timed_out:
        return "timed_out", (f"stopped at the time limit of {settings.time_limit_s:g} s; "
                             "the files written before then are still graded")
    if run.error:
        return "sandbox_error", run.error
    if notebook is not None:
        if notebook.get("status") == "kernel_died":
            return "crashed", f"the notebook's kernel died in cell {notebook.get('kernel_died_cell')}"
        if notebook.get("status") == "cell_timeout":
            return "timed_out", (f"cell {notebook.get('timed_out_cell')} ran past the per-cell limit of "
                                 f"{settings.cell_timeout_s:g} s; the later cells still ran")
    if run.signal is not None:
        return "crashed", f"killed by signal {run.signal}" + _stderr_hint(run)
    if run.exit_code not in (0, None):
        return "crashed", f"exited with code {run.exit_code}" + _stderr_hint(run)
    if notebook is not None and notebook.get("errors"):
        errors = notebook["errors"]
        first = errors[0]
        return "completed", (f"{len(errors)} notebook cell(s) raised an error, first cell {first['cell_index']}: "
                             f"{first['ename']}: {first['evalue']}"[:300])
    return "completed", "ran to the end"


def _stderr_hint(run: SandboxResult) -> str:
    """': <last non-empty line of stderr>' (decoded leniently), or ''."""
    try:
        tail = Path(run.stderr_path).read_bytes()[-4096:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("[...")]
    return f": {lines[-1][:240]}" if lines else ""


def _notebook_summary(layout: Layout) -> dict | None:
    path = layout.work / ".grader" / "notebook.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _keep_notebook_files(layout: Layout) -> None:
    """Move the executed notebook and its HTML out of the work dir, next to result.json."""
    for name, target in (("executed.ipynb", "notebook.executed.ipynb"), ("executed.html", "notebook.html"),
                         ("notebook.json", "notebook.json")):
        source = layout.work / ".grader" / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, layout.root / target)


def inventory(outputs: Path) -> tuple[Artifact, ...]:
    """Every regular file the submission left in its output dir (symlinks are listed as such, never followed)."""
    found = []
    if not outputs.is_dir():
        return ()
    for path in sorted(outputs.rglob("*")):
        rel = path.relative_to(outputs).as_posix()
        if rel.startswith("tuner/") and not rel.endswith(("trial.json", "oracle.json")):
            continue
        if path.is_symlink():
            found.append(Artifact(rel, 0, "symlink"))
        elif path.is_file():
            found.append(Artifact(rel, path.stat().st_size, _kind(rel)))
    return tuple(found)


def _kind(rel: str) -> str:
    suffix = Path(rel).suffix.lower()
    return {".keras": "model", ".png": "plot", ".csv": "table", ".jsonl": "trials", ".yaml": "answers",
            ".yml": "answers", ".json": "json"}.get(suffix, "other")


def evaluate_models(layout: Layout, slot: Slot, job: Job) -> list[ModelEvaluation]:
    """Evaluate every exported best model on the held-out test split, together in one sandboxed process."""
    n_test = len(job.test.labels)
    found = [s for s in SEARCHES if s in REQUIRED_MODELS or (layout.outputs / _model_rel(s)).exists()
             or (layout.outputs / _model_rel(s)).is_symlink()]
    errors = {s: _refuse_model(layout.outputs / _model_rel(s), job.max_model_bytes, s) for s in found}
    runnable = [s for s in found if errors[s] is None]
    started = time.monotonic()
    if runnable:
        layout.evaluation.mkdir(parents=True, exist_ok=True)
        for search in runnable:
            shutil.copyfile(layout.outputs / _model_rel(search), layout.evaluation / f"best_{search}.keras")
        errors.update(_run_evaluation(layout, slot, job, runnable))
    seconds = round(time.monotonic() - started, 3)
    evaluations = []
    for search in found:
        accuracy, error = None, errors[search]
        if error is None:
            accuracy, error = _accuracy(layout.evaluation / f"best_{search}.predictions.npy", job.test.labels)
        evaluations.append(ModelEvaluation(search, _model_rel(search), accuracy, n_test, error, seconds))
    return evaluations


def _model_rel(search: str) -> str:
    return f"{MODELS_DIR}/best_{search}.keras"


def _refuse_model(path: Path, max_bytes: int, search: str) -> str | None:
    """Why a model file is not evaluated at all (not a regular file, too large), or None."""
    if not path.exists() and not path.is_symlink():
        return f"{_model_rel(search)} was not written"
    if path.is_symlink() or not path.is_file():
        return f"{_model_rel(search)} is not a regular file"
    size = path.stat().st_size
    if size > max_bytes:
        return f"{_model_rel(search)} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit for a model"
    return None


def _run_evaluation(layout: Layout, slot: Slot, job: Job, searches: list[str]) -> dict[str, str | None]:
    """Run the evaluation child; per search, None or the reason it gave no predictions."""
    spec = plan_evaluation(layout, [f"best_{s}.keras" for s in searches], slot, job.settings, job.test.images)
    try:
        run = run_sandboxed(spec)
    except (SandboxUnavailableError, SandboxSpecError, OSError) as exc:
        return {s: f"the evaluation sandbox could not start: {exc}" for s in searches}
    if run.timed_out:
        return {s: f"evaluating the models took longer than {spec.time_limit_s:g} s" for s in searches}
    try:
        report = json.loads((layout.evaluation / EVAL_REPORT).read_text("utf-8"))
    except (OSError, ValueError):
        reason = _stderr_hint(run).removeprefix(": ") or f"the evaluation exited with code {run.exit_code}"
        return {s: reason for s in searches}
    out: dict[str, str | None] = {}
    for search in searches:
        entry = report.get(f"best_{search}.keras", "the evaluation did not report on this model")
        out[search] = entry if isinstance(entry, str) or entry is None else "the evaluation report is malformed"
    return out


def _accuracy(predictions_path: Path, labels: np.ndarray) -> tuple[float | None, str | None]:
    """Accuracy of saved predictions against the labels the grader kept to itself."""
    try:
        predictions = np.load(predictions_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, f"the evaluation left no readable predictions: {exc}"
    if predictions.shape != labels.shape:
        return None, f"the model gave {predictions.size} predictions for {len(labels)} test images"
    return round(float((predictions == labels).mean()), 6), None


def _reset(layout: Layout) -> None:
    """Remove what an interrupted earlier attempt left (result.json stays until the new one replaces it)."""
    for folder in (layout.work, layout.evaluation, layout.logs):
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    layout.root.mkdir(parents=True, exist_ok=True)


def _log_paths(layout: Layout) -> dict[str, str]:
    names = {}
    for path in sorted(layout.logs.glob("*.log")) if layout.logs.is_dir() else []:
        names[path.stem] = path.relative_to(layout.root).as_posix()
    for name in ("notebook.executed.ipynb", "notebook.html"):
        if (layout.root / name).is_file():
            names[name.split(".")[-1] if name.endswith(".html") else "notebook"] = name
    return names


def _isolation_details(settings: SessionSettings) -> str:
    lim = settings.limits
    return (f"memory {lim.memory_bytes // 2**20} MiB, file size {lim.file_size_bytes // 2**20} MiB, "
            f"{lim.max_processes} processes, {lim.max_open_files} open files, no core dumps")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
