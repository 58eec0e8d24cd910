"""Grade the one submission in Gradescope's container with the grader's engine and always leave a results.json.

`grader gradescope-run [--root DIR] [--rubric R] [--time-limit SECONDS]` (:func:`run_main`) is
what the autograder zip's ``run_autograder`` calls (grader/gradescope.py builds the zip). The
root (default ``/autograder``; run_autograder passes ``$GRADER_AUTOGRADER_ROOT``) is laid out
as Gradescope lays it out:

| path under the root | what |
| --- | --- |
| ``source/rubric.json`` | the instructor's full rubric, from the zip (the default ``--rubric``) |
| ``submission/`` | the student's files as Gradescope put them there: an upload or a GitHub-linked repository |
| ``submission_metadata.json`` | Gradescope's facts about the submission; only the first user's email (or name) is read |
| ``results/results.json`` | written here, atomically, in Gradescope's format (export.gradescope_results) |
| ``work/run-*/`` | this run's own folder: ``in/`` the staged submission, ``out/`` grade.main's output folder |

Which files are the submission. The folder itself when it holds one of the rubric's entry
points at its top (a repository or an upload of tuning.py / the notebook); else its one
child folder, zip, notebook or script when there is exactly one (an upload of a folder or
of a lone notebook); else the folder itself, and the engine then says which entry point it
expected. The choice is staged (grader.staging: bounded, no link followed) under the
student's id and graded by grade.main exactly as `grader grade` grades it (CPU, one slot,
always afresh).

Student id: the first user's email in submission_metadata.json, else their name, when it
passes grader.staging's student id rules; else ``submission``. The file is read only when
it is a regular file (no link followed) of at most 8 MiB.

What results.json holds when grading could not happen. A submission that cannot be staged
(an oversized or unsafe zip) is the student's: score 0, every rubric check as a failed test
saying why, exit status 0. A fault of the autograder itself (no readable rubric, no
submission folder, grading raised, a sandbox error, a result that does not fit Gradescope's
format) gives score 0 and a one-line ``output`` saying what went wrong, as plain text, and
exit status 1. Nothing a student wrote reaches the output unescaped: the engine's messages
go through export (Markdown-escaped), and these lines through grader.text.one_line.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from grader import grade
from grader.export import GRADESCOPE_VISIBILITY, gradescope_results
from grader.jsonio import schema_errors, write_json_atomic
from grader.parse import load_json
from grader.result import RESULT_FILE, read_result
from grader.rubric import Rubric, RubricError, load_rubric
from grader.staging import (
    MIB,
    DuplicateStudentError,
    InvalidSubmissionError,
    Submission,
    discover,
    stage,
    student_id_problem,
)
from grader.text import one_line
from grader.validate import FileProblem, open_regular

DEFAULT_ROOT = Path("/autograder")
RUBRIC_FILE = Path("source") / "rubric.json"
SUBMISSION_DIR = "submission"
METADATA_FILE = "submission_metadata.json"
RESULTS_FILE = Path("results") / "results.json"
WORK_DIR = "work"
DEFAULT_STUDENT = "submission"
MAX_METADATA_BYTES = 8 * MIB
MAX_OUTPUT_CHARS = 1000
SCHEMA = "gradescope_results"

EXIT_GRADED = 0  # results.json holds the grade, whatever the score
EXIT_FAULT = 1  # the autograder itself failed; results.json says so, with score 0


def run_main(*, root: Path = DEFAULT_ROOT, rubric: Path | None = None, time_limit: float | None = None,
             console: Console | None = None) -> int:
    """Grade root/submission and write root/results/results.json (see the module docstring); the exit status."""
    root = Path(root)
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 110)
    try:
        doc, code = _grade(root, Path(rubric) if rubric is not None else root / RUBRIC_FILE, time_limit, console)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the student gets a results.json saying so
        traceback.print_exc()
        doc, code = fault_results(f"the autograder failed: {type(exc).__name__}: {exc}"), EXIT_FAULT
    problems = schema_errors(doc, SCHEMA)
    if problems:
        doc, code = fault_results(f"the autograder's results do not fit Gradescope's format: {problems[0]}"), EXIT_FAULT
    target = root / RESULTS_FILE
    try:
        write_json_atomic(target, doc)
    except ValueError as exc:  # a number JSON cannot hold (NaN, infinity)
        doc, code = fault_results(f"the autograder's results could not be written as JSON: {exc}"), EXIT_FAULT
        write_json_atomic(target, doc)
    print(f"gradescope-run: score {doc.get('score')}; {target} written (exit status {code})")
    return code


def fault_results(message: str) -> dict[str, Any]:
    """results.json for a fault of the autograder: score 0 and the message as one line of plain text."""
    return {
        "score": 0,
        "output": "The autograder could not grade this submission: " + one_line(message, MAX_OUTPUT_CHARS),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"status": "autograder_error"},
        "tests": [],
    }


def refused_results(spec: Rubric, message: str) -> dict[str, Any]:
    """results.json for a submission that could not be staged: score 0, every check a failed test saying why."""
    line = one_line(message, MAX_OUTPUT_CHARS)
    return {
        "score": 0,
        "output": line,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"status": "invalid_submission"},
        "tests": [
            {"name": check.title or check.id, "score": 0, "max_score": check.points, "status": "failed",
             "visibility": GRADESCOPE_VISIBILITY[check.visibility], "output": line, "output_format": "text"}
            for check in spec.checks
        ],
    }


def student_id_from_metadata(path: Path) -> str:
    """The first user's email (else name) in Gradescope's submission_metadata.json when it is a safe student id."""
    try:
        with open_regular(path) as fh:  # no link followed, never a FIFO or device
            doc = load_json(fh.read(MAX_METADATA_BYTES + 1), max_bytes=MAX_METADATA_BYTES)
    except (FileProblem, OSError, ValueError):
        return DEFAULT_STUDENT
    users = doc.get("users") if isinstance(doc, dict) else None
    user = users[0] if isinstance(users, list) and users else None
    if isinstance(user, dict):
        for key in ("email", "name"):
            value = user.get(key)
            if isinstance(value, str) and student_id_problem(value.strip()) is None:
                return value.strip()
    return DEFAULT_STUDENT


def _grade(root: Path, rubric: Path, time_limit: float | None, console: Console) -> tuple[dict[str, Any], int]:
    try:
        spec = load_rubric(rubric)
    except RubricError as exc:
        return fault_results(f"its rubric cannot be used: {exc}"), EXIT_FAULT
    source = root / SUBMISSION_DIR
    if not source.is_dir() or source.is_symlink():
        return fault_results(f"there is no submission folder at {source}"), EXIT_FAULT
    student = student_id_from_metadata(root / METADATA_FILE)
    work = _fresh_run_dir(root / WORK_DIR)
    try:
        target = _stage_input(source, spec.entry_points, student, work / "in")
    except InvalidSubmissionError as exc:
        return refused_results(spec, f"the submission could not be read: {exc}"), EXIT_GRADED
    out = work / "out"
    summary = grade.main(submissions=[target], rubric=rubric, out=out, time_limit=time_limit, gpus="none", jobs=1,
                         force=True, console=console)
    if len(summary.graded) != 1:
        return fault_results(f"expected to grade one submission, graded {len(summary.graded)}"), EXIT_FAULT
    try:
        result = read_result(out / summary.graded[0] / RESULT_FILE)
    except ValueError as exc:
        return fault_results(str(exc)), EXIT_FAULT
    if result is None:
        return fault_results("grading left no result"), EXIT_FAULT
    doc = gradescope_results(result)
    if result.status == "sandbox_error":  # the grader's fault, not the student's: no points stand, and say so
        doc["score"] = 0
        for test in doc["tests"]:
            test["score"] = 0
        return doc, EXIT_FAULT
    return doc, EXIT_GRADED


def _fresh_run_dir(parent: Path) -> Path:
    """A new folder for this run under parent, both open to the sandbox's uid (the rlimits fallback needs the way)."""
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(0o755)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    run.chmod(0o755)
    return run


def _stage_input(source: Path, entry_points: tuple[str, ...], student: str, into: Path) -> Path:
    """Stage the submission under the student's id inside `into`; the path to hand grade.main.

    A folder or zip is staged as ``into/<student>/`` and `into` is returned (its one child is
    then the one submission, named for the student); a lone notebook or script becomes
    ``into/<student><suffix>`` and that file is returned.
    """
    try:
        found = discover(source, entry_points=entry_points)
    except DuplicateStudentError:
        found = None
    if found is not None and len(found.submissions) == 1 and not found.refused:
        picked = found.submissions[0]
    else:
        picked = Submission(student, source, "dir")
    into.mkdir(parents=True, exist_ok=True)
    if picked.kind in ("notebook", "script"):
        lone = stage(picked, into / ".lone")
        target = into / f"{student}{picked.source.suffix.lower()}"
        os.replace(lone.workdir / picked.source.name, target)
        return target
    stage(picked, into / student)
    return into
