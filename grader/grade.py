"""The `grade` verb: grade every submission of a batch, skip what is unchanged, keep each result, rebuild the gradebook."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from grader import __version__
from grader.feedback import write_feedback
from grader.gradebook import LiveGradebook
from grader.result import (
    Result,
    Slot,
    Timings,
    needs_grading,
    read_result,
    write_result,
)
from grader.review import apply_reviews
from grader.rubric import Rubric, load_rubric
from grader.runner import Graded, Job, TestSplit, grade_submission
from grader.sandbox import (
    SandboxUnavailableError,
    bwrap_usable,
    choose_isolation,
    stop_all,
)
from grader.scheduler import Executor, LocalExecutor
from grader.session import (
    DEFAULT_EVAL_TIME_LIMIT_S,
    Layout,
    SessionSettings,
    limits_from_rubric,
)
from grader.staging import (
    DuplicateStudentError,
    InvalidSubmissionError,
    Submission,
    discover,
    hash_source,
)
from grader.text import one_line, rich_text
from tunekit import data

PACKAGES = ("keras", "keras-tuner", "torch", "tensorflow", "numpy", "nbclient")
DATA_DIR = ".data"  # under OUT: the train split handed to submissions, the test images for evaluation


@dataclass(frozen=True)
class BatchSummary:
    """What a grading run did; ``refused`` holds one line per entry of the submissions folder that was not graded."""

    graded: tuple[str, ...]
    skipped: tuple[str, ...]
    statuses: dict[str, str] = field(default_factory=dict)
    gradebook: Path | None = None
    refused: tuple[str, ...] = ()

    @property
    def sandbox_errors(self) -> tuple[str, ...]:
        """The students graded now whose run ended in a sandbox error (the grader's fault; a re-run retries them)."""
        return tuple(student for student, status in self.statuses.items() if status == "sandbox_error")


def main(
    *,
    submissions: Sequence[Path],
    rubric: Path,
    out: Path,
    profile: str | None = None,
    time_limit: float | None = None,
    gpus: str = "auto",
    per_gpu: int = 1,
    jobs: int = 1,
    force: bool = False,
    require_sandbox: bool = False,
    backend: str = "torch",
    isolation: str = "auto",
    console: Console | None = None,
    executor: Executor | None = None,
) -> BatchSummary:
    """Grade the submissions found under the given paths into `out` (see the README's `grader grade`)."""
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 110)
    out, submissions = out.resolve(), [p.resolve() for p in submissions]
    spec = load_rubric(rubric)
    console.print(f"results go to {out} (rubric {spec.path})", markup=False, highlight=False, soft_wrap=True)
    if require_sandbox:
        usable, why = bwrap_usable()
        if not usable:
            raise SandboxUnavailableError(f"--require-sandbox: bubblewrap is not usable here: {why}")
        isolation = "bwrap"
    found, refused = _discover_all(submissions, spec)
    executor = executor or LocalExecutor.on_this_machine(gpus, per_gpu=per_gpu, jobs=jobs)
    placement = executor.place()
    out.mkdir(parents=True, exist_ok=True)
    train_dir, test = _prepare_data(out, spec.dataset, console)
    settings = SessionSettings(
        profile=profile or spec.profile,
        dataset=spec.dataset,
        searches=spec.searches,
        time_limit_s=float(time_limit or spec.time_limit_s),
        seed=0,
        backend=backend,
        isolation=isolation,
        limits=limits_from_rubric(spec.limits),
        cell_timeout_s=spec.limits.get("cell_timeout_s"),
        eval_time_limit_s=float(spec.limits.get("eval_time_limit_s", DEFAULT_EVAL_TIME_LIMIT_S)),
        data_dir=train_dir,
        threads=placement.threads,
        jobs_per_gpu=placement.jobs_per_gpu,
    )
    packages = _package_versions()
    todo, skipped = [], []
    for sub in found:
        layout = Layout(out / sub.student_id)
        digest = _content_hash(sub)
        try:
            existing = read_result(layout.result)
        except ValueError:
            existing = None
        grade, why = needs_grading(existing, content_hash=digest, rubric_hash=spec.hash, grader_version=__version__,
                                   force=force)
        if grade:
            todo.append(Job(sub, digest, layout, settings, spec, packages, test,
                            int(spec.limits.get("max_model_mb", 100)) * 2**20, time.monotonic()))
        else:
            skipped.append(sub.student_id)
    console.print(f"grading {len(todo)} of {len(found)} submissions ({len(skipped)} unchanged) on "
                  f"{placement.where}; profile {settings.profile}, {settings.time_limit_s:g} s each, "
                  f"isolation {_isolation_text(isolation)}", markup=False, highlight=False)
    statuses: dict[str, str] = {}
    book = LiveGradebook(out)
    counts = {"done": 0, "failed": 0, "timed_out": 0}
    with Progress(TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(_counts_text(counts), total=len(todo))

        def done(job: Job, graded: Graded) -> None:
            result = graded.result
            write_result(job.layout.result, result)
            evidence = graded.evidence
            trials = [t.as_record() for t in evidence.trials] if evidence is not None else []
            for audience in ("student", "instructor"):
                write_feedback(job.layout.root, result, trials=trials, audience=audience,
                               trials_source=evidence.trials_source if evidence is not None else None)
            statuses[result.student_id] = result.status
            key = {"completed": "done", "timed_out": "timed_out"}.get(result.status, "failed")
            counts[key] += 1
            progress.update(task, advance=1, description=_counts_text(counts))
            progress.console.print(rich_text(f"{result.student_id}: {result.status} - {result.message}"))
            book.update(result)

        try:
            executor.run(todo, _guarded, done, _lost)
        except BaseException:  # interrupted (or a grader bug): the runs still going end now, writing no result
            stop_all()
            raise
    # a reviewer's overrides (OUT/review.csv) stand over a regrade too
    merge = apply_reviews(out, gradebook=False)
    for merged in merge.changed:
        book.update(merged)
    written = book.write()
    console.print(score_table(book.results()))
    for problem in merge.problems:
        console.print(rich_text(problem, "yellow"))
    console.print(rich_text(f"gradebook: {written.csv_path} ({written.rows} students); "
                            f"feedback: {out}/<student>/feedback.html"))
    for problem in (*refused, *written.skipped):
        console.print(rich_text(problem, "yellow"))
    return BatchSummary(tuple(statuses), tuple(skipped), statuses, written.csv_path, tuple(refused))


def score_table(results: Sequence[Result]) -> Table:
    """The results as a terminal table, one row per student; every cell is plain text, never markup."""
    table = Table(title="grades")
    for column in ("student", "status", "score", "test acc (grid)", "test acc (random)", "suspect"):
        table.add_column(column, no_wrap=True)
    for result in sorted(results, key=lambda r: r.student_id):
        accuracy = {e.search: e.test_accuracy for e in result.evaluations}
        score = "-" if result.score is None else f"{result.score.earned:.1f}/{result.score.possible:g}"
        cells = (result.student_id, result.status, score, _accuracy(accuracy.get("grid")),
                 _accuracy(accuracy.get("random")), "yes" if any(c.suspect for c in result.checks) else "")
        table.add_row(*(rich_text(cell, limit=60) for cell in cells))
    return table


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _guarded(job: Job, slot: Slot) -> Graded:
    """grade_submission, with a grader bug turned into that student's sandbox_error result instead of a dead batch."""
    try:
        return grade_submission(job, slot)
    except Exception as exc:  # noqa: BLE001 - the batch must go on; the traceback is kept in the student's logs
        return _sandbox_error(job, slot, f"grader error: {type(exc).__name__}: {exc}", traceback.format_exc())


def _lost(job: Job, why: str, details: str | None) -> Graded:
    """The result of a job whose run was lost on a remote worker: a sandbox_error, so a re-run retries it."""
    return _sandbox_error(job, None, why, details)


def _sandbox_error(job: Job, slot: Slot | None, message: str, details: str | None) -> Graded:
    """A sandbox_error result saying message; details (a traceback) are kept in the student's logs/grader-error.log."""
    logs = {}
    if details is not None:
        job.layout.logs.mkdir(parents=True, exist_ok=True)
        (job.layout.logs / "grader-error.log").write_text(details, "utf-8")
        logs["grader-error"] = "logs/grader-error.log"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = Result(1, job.submission.student_id, job.content_hash, job.rubric.hash, __version__,
                    job.settings.profile, "sandbox_error", one_line(message, 500), None, None, None,
                    Timings(0.0, 0.0, 0.0, now, now), slot, None, dict(job.packages), logs=logs)
    return Graded(result, None)


def _counts_text(counts: dict[str, int]) -> str:
    return f"done {counts['done']}  failed {counts['failed']}  timed out {counts['timed_out']}"


def _discover_all(paths: Sequence[Path], spec: Rubric) -> tuple[list[Submission], list[str]]:
    """The submissions under paths, and one line for each entry refused for its name."""
    found: list[Submission] = []
    refused: list[str] = []
    for path in paths:
        discovery = discover(path, entry_points=spec.entry_points)
        found.extend(discovery.submissions)
        refused.extend(r.message for r in discovery.refused)
    ids = [s.student_id for s in found]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise DuplicateStudentError(f"more than one submission for student id(s): {', '.join(dupes)}")
    return found, refused


def _isolation_text(requested: str) -> str:
    """The isolation the runs will get, and why bubblewrap is not used when it is not (the probes are cached)."""
    chosen = choose_isolation(requested)
    if chosen == "bwrap" or requested != "auto":
        return chosen
    return f"{chosen} (bubblewrap not used: {bwrap_usable()[1]})"


def _content_hash(sub: Submission) -> str:
    """The submission's content hash; for one that cannot be read (a refused zip), the hash of its raw bytes."""
    try:
        return hash_source(sub)
    except (InvalidSubmissionError, OSError):
        digest = hashlib.sha256()
        if sub.source.is_file():
            with open(sub.source, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return "sha256:" + digest.hexdigest()


def _prepare_data(out: Path, dataset: str, console: Console) -> tuple[Path, TestSplit]:
    """Write the train split submissions get, and the test images the evaluation sandbox gets (labels stay here)."""
    found = data.locate_split(data.search_plan(dataset, allow_download=True), "test")
    where = found.describe() if found is not None else \
        f"{dataset} is not on this machine: downloading it into {data.keras_cache_dir()}"
    console.print(f"held-out data: {where}", markup=False, highlight=False, soft_wrap=True)
    train_dir = out / DATA_DIR / "train"
    train_file = train_dir / f"{dataset}.npz"
    if not train_file.exists():
        data.write_train_split(train_dir, dataset, allow_download=True)
    x_test, y_test = data.load_test(dataset, allow_download=True)
    images = out / DATA_DIR / "test" / f"{dataset}-images.npy"
    if not images.exists():
        images.parent.mkdir(parents=True, exist_ok=True)
        tmp = images.with_name(images.name + ".tmp.npy")
        np.save(tmp, x_test, allow_pickle=False)
        tmp.replace(images)
    for path in (train_file, images):  # read inside the sandbox by an unprivileged uid
        path.chmod(0o644)
        path.parent.chmod(0o755)
    return train_dir, TestSplit(images, y_test.astype(np.int64))


def _package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            try:
                versions[name] = importlib.metadata.version(f"{name}-cpu")
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions
