"""The `export` verb: turn each OUT/<student>/result.json into what Gradescope or GitHub Classroom reads.

``gradescope``: ``OUT/<student>/gradescope/results.json`` (or ``DEST/<student>/results.json``,
or ``DEST/results.json`` for one ``--student``) in Gradescope's autograder results format:
every check becomes a test with its own visibility (Gradescope itself holds hidden and
after-due-date tests back from students), the grader's verified test accuracies become the
leaderboard.

``classroom``: the version-1 result that GitHub Classroom's
``classroom-resources/autograding-grading-reporter`` reads. The reporter takes, for each
runner id ``ID`` in its ``runners`` input, the environment variable ``ID_RESULTS`` (the id
upper-cased), base64-decodes it and parses the JSON; the workflow fills that variable from
``steps.<id>.outputs.result``, which this verb sets by appending ``result=<base64>`` to the
file named by ``$GITHUB_OUTPUT``. Students see it, so hidden checks are left out entirely
and after-due-date ones until the due date (as in the student's feedback). The points the
reporter sends to Classroom are the sum of the tests' ``score`` over ``max_score``.
See docs/feedback-and-exports.md.

Student text in the exports. Both formats are JSON written by ``json.dumps`` (quotes,
control characters and non-ASCII escaped), so no byte of it can break the file. What a
reader then does with the strings is guarded here: the Gradescope summary (Markdown) has
the run's message escaped (:func:`markdown_text`), so a crash message cannot become a
link, an image or HTML; the Classroom messages are printed by the reporter into a GitHub
Actions log, so each is one line without terminal escapes or control characters and
never starts with ``::`` (which the Actions runner would take as a workflow command).
A folder of OUT whose name cannot be a student id (grader.staging.student_id_problem)
is not exported, and is reported like an unreadable result.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TextIO

from grader.feedback import visible_checks
from grader.jsonio import write_json_atomic
from grader.result import RESULT_FILE, CheckResult, Result, read_result, read_results
from grader.staging import student_id_problem
from grader.text import display_name, markdown_text, one_line
from grader.errors import GraderError

Format = Literal["gradescope", "classroom"]
FORMATS: tuple[str, ...] = ("gradescope", "classroom")

GRADESCOPE_DIR = "gradescope"
GRADESCOPE_FILE = "results.json"
CLASSROOM_DIR = "classroom"
CLASSROOM_FILE = "result.json"
CLASSROOM_VERSION = 1
GITHUB_OUTPUT_ENV = "GITHUB_OUTPUT"
CLASSROOM_OUTPUT_NAME = "result"
MAX_MESSAGE_CHARS = 1000  # the payload travels in an environment variable: keep each message short
LEADERBOARD_SEARCHES = (("grid", "test accuracy (grid)"), ("random", "test accuracy (random)"))

# Our check visibility -> Gradescope's (Gradescope also knows "after_published", which we never produce).
GRADESCOPE_VISIBILITY = {"visible": "visible", "hidden": "hidden", "after_due_date": "after_due_date"}


class ExportError(GraderError, ValueError):
    """An export that cannot be done as asked (unknown format or student, unreadable results); one line."""


# ---------------------------------------------------------------- Gradescope


def gradescope_results(result: Result) -> dict[str, Any]:
    """result in Gradescope's results.json format (every check as a test, visibility mapped one to one)."""
    tests = [
        {
            "name": _name(c),
            "score": c.points,
            "max_score": c.max_points,
            "status": "passed" if c.status == "pass" else "failed",
            "visibility": GRADESCOPE_VISIBILITY[c.visibility],
            "output": c.message,
            "output_format": "text",
        }
        for c in result.checks
    ]
    score = result.score.earned if result.score is not None else sum(c.points for c in result.checks)
    leaderboard = [
        {"name": label, "value": accuracy}
        for search, label in LEADERBOARD_SEARCHES
        if (accuracy := _accuracy(result, search)) is not None
    ]
    return {
        "score": score,
        "execution_time": int(round(result.timings.run_s + result.timings.evaluation_s)),
        "output": summary(result),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {
            "student_id": result.student_id,
            "status": result.status,
            "suspect": any(c.suspect for c in result.checks),
            "grader_version": result.grader_version,
            "rubric_hash": result.rubric_hash,
        },
        "tests": tests,
        "leaderboard": leaderboard,
    }


def summary(result: Result) -> str:
    """A short Markdown summary a student may see: the run's status and message, and the verified test accuracies.

    It names no check, so it says nothing about hidden ones.
    """
    lines = [f"**Status:** {result.status}: {markdown_text(one_line(result.message, MAX_MESSAGE_CHARS))}"]
    accuracies = [
        f"{e.search} {e.test_accuracy:.4f} ({e.n_test} images)" if e.test_accuracy is not None
        else f"{e.search} not evaluated"
        for e in result.evaluations
    ]
    if accuracies:
        lines.append(f"**Verified test accuracy:** {', '.join(accuracies)}")
    return "\n\n".join(lines)


# ---------------------------------------------------------------- GitHub Classroom


def classroom_results(result: Result, *, now: datetime | None = None, due: datetime | None = None) -> dict[str, Any]:
    """The version-1 result the Classroom reporter reads, holding the checks a student may see.

    Tests: one per shown check; ``status`` is ``pass`` when the check passed, ``error``
    when the grader could not run it, ``fail`` otherwise (partial credit, failed,
    skipped); ``score`` its points. ``max_score`` is the shown checks' points possible,
    so the reporter's ``sum(score)/max_score`` is the student's points.

    Overall ``status``: ``error`` when the grader could not judge the submission (a
    sandbox error, or a check that errored); ``pass`` when the run completed and every
    shown check passed, i.e. every point was earned; ``fail`` otherwise. The reporter
    marks its step failed for ``fail`` and ``error`` (points are still reported).
    """
    checks = visible_checks(result, "student", now, due)
    tests = [
        {
            "name": _name(c),
            "status": _classroom_status(c),
            "score": round(float(c.points), 6),
            "max_score": round(float(c.max_points), 6),
            "message": _log_line(c.message),
        }
        for c in checks
    ]
    if result.status == "sandbox_error" or any(t["status"] == "error" for t in tests):
        status = "error"
    elif result.status == "completed" and all(t["status"] == "pass" for t in tests):
        status = "pass"
    else:
        status = "fail"
    return {
        "version": CLASSROOM_VERSION,
        "status": status,
        "max_score": round(sum(float(c.max_points) for c in checks), 6),
        "message": _log_line(f"{result.status}: {result.message}"),
        "tests": tests,
    }


def classroom_payload(result: Result, *, now: datetime | None = None, due: datetime | None = None) -> str:
    """classroom_results as compact UTF-8 JSON, base64-encoded on one line (what `ID_RESULTS` must hold)."""
    text = json.dumps(classroom_results(result, now=now, due=due), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def emit_classroom_output(payload: str, *, environ: Mapping[str, str] | None = None,
                          stream: TextIO | None = None) -> Path | None:
    """Append ``result=<payload>`` to the file named by $GITHUB_OUTPUT; print it to stream when that is unset.

    Returns the file appended to, or None when the line was printed instead.
    """
    env = os.environ if environ is None else environ
    line = f"{CLASSROOM_OUTPUT_NAME}={payload}\n"
    target = env.get(GITHUB_OUTPUT_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line)
        return Path(target)
    (stream or sys.stdout).write(line)
    return None


# ---------------------------------------------------------------- the verb


def main(*, out: Path, format: Format, dest: Path | None = None, student: str | None = None,
         due: datetime | None = None, now: datetime | None = None) -> list[Path]:
    """Export the results under `out` (see the module docstring); returns the files written.

    ``classroom`` also emits ``result=<base64>`` (to $GITHUB_OUTPUT, or stdout) when
    exactly one result is exported; with $GITHUB_OUTPUT set it needs exactly one.
    ``due`` and ``now`` (default: the current time) decide whether after-due-date checks
    reach Classroom; Gradescope applies its own due date. A result file that cannot be
    read does not stop the others: they are written, then ExportError names it.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}': expected gradescope or classroom")
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    found, problems = _results(root, student)
    results = [result for _, result in found]
    moment = now if now is not None else datetime.now(timezone.utc)
    written: list[Path] = []
    for folder, result in found:
        if format == "gradescope":
            target = _target(root, dest, student, folder, GRADESCOPE_DIR, GRADESCOPE_FILE)
            write_json_atomic(target, gradescope_results(result))
        else:
            target = _target(root, dest, student, folder, CLASSROOM_DIR, CLASSROOM_FILE)
            write_json_atomic(target, classroom_results(result, now=moment, due=due))
        written.append(target)
    if format == "classroom":
        if os.environ.get(GITHUB_OUTPUT_ENV) and len(results) != 1:
            raise ExportError(f"--format classroom sets the step output for one student, but {len(results)} "
                              f"result(s) were exported: pass --student")
        if len(results) == 1:
            emitted = emit_classroom_output(classroom_payload(results[0], now=moment, due=due))
            if emitted is not None:
                written.append(emitted)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(f"{len(problems)} result file(s) could not be exported: {problems[0]}{more}")
    return written


def _results(root: Path, student: str | None) -> tuple[list[tuple[str, Result]], list[str]]:
    """The (folder name, result) pairs to export, one student's or every folder's, and why any result file failed."""
    if student is not None:
        if student_id_problem(student) is not None:
            raise ExportError(f"'{display_name(student)}' is not a student id")
        try:
            result = read_result(root / student / RESULT_FILE)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        if result is None:
            raise ExportError(f"no result for student '{student}' in '{root}'")
        return [(student, result)], []
    found, problems = read_results(root)
    kept = []
    for folder, result in found:
        why = student_id_problem(folder)
        if why is None:
            kept.append((folder, result))
        else:
            problems.append(f"folder '{display_name(folder)}' was not exported: its name {why}")
    return kept, problems


def _target(root: Path, dest: Path | None, student: str | None, folder: str, subdir: str, name: str) -> Path:
    """Where one student's export goes: OUT/<student>/<subdir>/<name>, DEST/<student>/<name>, or DEST/<name>."""
    if dest is None:
        return root / folder / subdir / name
    return Path(dest) / name if student is not None else Path(dest) / folder / name


def _classroom_status(check: CheckResult) -> str:
    if check.status == "pass":
        return "pass"
    return "error" if check.status == "error" else "fail"


def _accuracy(result: Result, search: str) -> float | None:
    for evaluation in result.evaluations:
        if evaluation.search == search:
            return evaluation.test_accuracy
    return None


def _name(check: CheckResult) -> str:
    return check.title or check.id


def _log_line(text: str) -> str:
    """text as one line fit for a GitHub Actions log: no escapes or controls, not a workflow command, cut short."""
    line = one_line(text, MAX_MESSAGE_CHARS)
    return "> " + line if line.startswith("::") else line
