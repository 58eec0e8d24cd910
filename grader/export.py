"""The `export` verb: turn each OUT/<student>/result.json into what Gradescope or GitHub Classroom reads.

``gradescope``: ``OUT/<student>/gradescope/results.json`` (or ``DEST/<student>/results.json``,
or ``DEST/results.json`` for one ``--student``) in Gradescope's autograder results format:
every check becomes a test with its own visibility (Gradescope itself holds hidden and
after-due-date tests back from students), the grader's verified test accuracies become the
leaderboard.

``classroom``: the version-1 results that GitHub Classroom's
``classroom-resources/autograding-grading-reporter`` reads. The reporter takes, for each
runner id ``ID`` in its ``runners`` input, the environment variable ``ID_RESULTS`` (the id
upper-cased), base64-decodes it and parses the JSON; the workflow fills those variables
from ``steps.<id>.outputs.<name>``, which this verb sets by appending ``<name>=<base64>``
lines to the file named by ``$GITHUB_OUTPUT``: ``earned`` and ``missed``, the two runners
the workflow reports (:func:`classroom_runners` says why two, and the rule), and
``result``, the same checks as one runner (:func:`classroom_results`, for workflows written
before). Students see them, so hidden checks are left out entirely and after-due-date ones
until the due date (as in the student's feedback). ``grader classroom`` also appends the
score table to ``$GITHUB_STEP_SUMMARY`` (:func:`step_summary`).
See docs/feedback-and-exports.md.

Student text in the exports. Both formats are JSON written by ``json.dumps`` (quotes,
control characters and non-ASCII escaped), so no byte of it can break the file. What a
reader then does with the strings is guarded here: the Gradescope summary (Markdown) has
the run's message escaped (:func:`markdown_text`), so a crash message cannot become a
link, an image or HTML; the Classroom messages are printed by the reporter into a GitHub
Actions log, so each is one line without terminal escapes or control characters and
never starts with ``::`` (which the Actions runner would take as a workflow command);
the step summary and Classroom 50's release body are Markdown tables whose cells go
through :func:`markdown_cell` (inert, one line, ``|`` escaped).
A folder of OUT whose name cannot be a student id (grader.staging.student_id_problem)
is not exported, and is reported like an unreadable result.

Reviewed checks. Before exporting, :func:`main` merges OUT/review.csv's overrides into the results
(grader.review.apply_reviews: result.json, feedback and gradebook), so both formats carry the final
points; a reviewer's comment follows the check's message. A bad row of review.csv is printed as one
line (``<file>:<line>: ...``) on stderr, the other rows and every export are still written, and the
verb then ends with an ExportError saying how many rows were not applied.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TextIO

from grader.contract import SEARCHES
from grader.errors import GraderError
from grader.feedback import review_lines, visible_checks
from grader.jsonio import write_json_atomic
from grader.result import RESULT_FILE, CheckResult, Result, read_result, read_results
from grader.staging import student_id_problem
from grader.text import display_name, markdown_text, one_line

Format = Literal["gradescope", "classroom"]
FORMATS: tuple[str, ...] = ("gradescope", "classroom")

GRADESCOPE_DIR = "gradescope"
GRADESCOPE_FILE = "results.json"
CLASSROOM_DIR = "classroom"
CLASSROOM_FILE = "result.json"
CLASSROOM_VERSION = 1
GITHUB_OUTPUT_ENV = "GITHUB_OUTPUT"
GITHUB_STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
NOTHING_EARNED = "No points earned yet"  # the placeholder tests of an empty runner (see classroom_runners)
NOTHING_MISSED = "Every point earned"
CLASSROOM_OUTPUT_NAME = "result"
MAX_MESSAGE_CHARS = 1000  # the payload travels in an environment variable: keep each message short
LEADERBOARD_SEARCHES = tuple((search, f"test accuracy ({search})") for search in SEARCHES)  # those evaluated

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
            "output": "\n\n".join((c.message, *review_lines(c, "student"))),
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
            "isolation": isolation_line(result),
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
    """One version-1 result with a test per check a student may see: the ``result`` output and ``result.json``.

    Tests: one per shown check, in rubric order; ``status`` is ``pass`` when the check passed,
    ``error`` when the grader could not run it, ``fail`` otherwise (partial credit, failed,
    skipped); ``score`` its points, ``line_no`` its number in the rubric. ``max_score`` is the
    shown checks' points possible, so the reporter's ``Points X/Y`` notice is the student's
    points. Its console total (passed tests / tests x ``max_score``) is not, under partial
    credit: :func:`classroom_runners` is what the workflow reports; this one stays for
    workflows written before it and for reading.

    Overall ``status``: ``error`` when the grader could not judge the submission (a
    sandbox error, or a check that errored); ``pass`` when the run completed and every
    shown check passed, i.e. every point was earned; ``fail`` otherwise. The reporter
    marks its step failed for ``fail`` and ``error`` (points are still reported).
    """
    shown = _shown(result, now, due)
    tests = [_test(c, line, _name(c), _classroom_status(c), c.points, c.max_points) for line, c in shown]
    return _v1(_overall_status(result, [c for _, c in shown]), round(sum(float(c.max_points) for _, c in shown), 6),
               result, tests)


def classroom_runners(result: Result, *, now: datetime | None = None,
                      due: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The two version-1 results the workflow reports, one per reporter runner: ``earned`` and ``missed``.

    Why two. The reporter (``autograding-grading-reporter@v1``, its built ``dist/main.js``)
    totals a runner twice: its console line and table take the share of tests whose
    ``status`` is ``pass`` times the runner's ``max_score``; its ``Points X/Y`` notice (what
    Classroom records) adds the tests' ``score`` over the runners' ``max_score``. One runner
    cannot make those agree under partial credit (1.5 of 4 points is neither a passed nor a
    failed test). Two runners can: every test of ``earned`` passes and its ``max_score`` is
    the sum of its scores; every test of ``missed`` fails (or errors) with score 0. Both
    totals are then the earned points over the points possible, to the last bit: each
    runner's ``max_score`` is computed in the same float order the reporter adds in.

    The rule, per check a student may see (hidden ones never, after-due-date ones only past
    ``due``), in rubric order:

    - points earned > 0: ``earned`` holds the test "<title>", ``pass``, score = max = points;
    - points missing > 0: ``missed`` holds "<title>" (when nothing was earned) or
      "<title> (not earned)" (partial credit), ``fail`` (``error`` when the grader could not
      run the check, its message then starting with the title, the only line the reporter
      prints for an error), score 0, max = the points missing;
    - a partial check so appears in both. A runner with no such test gets one placeholder
      ("No points earned yet", ``fail``; "Every point earned", ``pass``; both worth 0), as the
      reporter divides by its number of tests.

    ``line_no``: the check's 1-based position among the rubric's checks (``result.checks``,
    the order of the rubric file), stable across runs and due dates; the reporter prints
    "<name> - line N". Placeholders carry 0, which it prints as no line.

    ``status``: ``earned`` is ``pass`` when it holds earned points; ``missed`` carries the
    overall status of :func:`classroom_results` (``fail`` or ``error`` fail the step).
    """
    shown = _shown(result, now, due)
    checks = [c for _, c in shown]
    overall = _overall_status(result, checks)
    earned: list[dict[str, Any]] = []
    missed: list[dict[str, Any]] = []
    for line, c in shown:
        points = round(float(c.points), 6)
        missing = round(float(c.max_points) - points, 6)
        if points > 0:
            earned.append(_test(c, line, _name(c), "pass", points, points))
        if missing > 0:
            title = _name(c) if points <= 0 else f"{_name(c)} (not earned)"
            missed.append(_test(c, line, title, "error" if c.status == "error" else "fail", 0.0, missing))
    earned_max = _reporter_sum(t["score"] for t in earned)
    possible = round(sum(float(c.max_points) for c in checks), 6)
    missed_max = _rest(possible, earned_max)
    if not earned:
        earned.append(_placeholder(NOTHING_EARNED, "fail"))
    if not missed:
        missed.append(_placeholder(NOTHING_MISSED, "pass"))
    return {
        "earned": _v1("pass" if earned_max > 0 else overall, earned_max, result, earned),
        "missed": _v1(overall, missed_max, result, missed),
    }


def classroom_outputs(result: Result, *, now: datetime | None = None,
                      due: datetime | None = None) -> dict[str, str]:
    """The step outputs ``grader classroom`` sets: ``earned`` and ``missed`` (the two runners) and ``result`` (one)."""
    runners = classroom_runners(result, now=now, due=due)
    return {CLASSROOM_OUTPUT_NAME: encode_classroom(classroom_results(result, now=now, due=due)),
            **{name: encode_classroom(data) for name, data in runners.items()}}


def classroom_payload(result: Result, *, now: datetime | None = None, due: datetime | None = None) -> str:
    """classroom_results, encoded as the reporter reads it (see encode_classroom)."""
    return encode_classroom(classroom_results(result, now=now, due=due))


def encode_classroom(data: Mapping[str, Any]) -> str:
    """A version-1 result as compact UTF-8 JSON, base64-encoded on one line (what `ID_RESULTS` must hold)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def emit_classroom_output(outputs: Mapping[str, str], *, environ: Mapping[str, str] | None = None,
                          stream: TextIO | None = None) -> Path | None:
    """Append one ``name=value`` line per output to the file named by $GITHUB_OUTPUT; print them when it is unset.

    Returns the file appended to, or None when the lines were printed instead. The values
    are base64 (no newline), so the one-line form of the file is safe.
    """
    env = os.environ if environ is None else environ
    lines = "".join(f"{name}={value}\n" for name, value in outputs.items())
    target = env.get(GITHUB_OUTPUT_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(lines)
        return Path(target)
    (stream or sys.stdout).write(lines)
    return None


# ---------------------------------------------------------------- the step summary


def isolation_line(result: Result) -> str:
    """One line saying how the submission was isolated: ``isolation: <method> (<details>)``.

    For a fallback the details begin with why bubblewrap was not used (grader.sandbox).
    """
    if result.isolation is None:
        return "isolation: not recorded (the submission did not run)"
    inner = f" ({result.isolation.details})" if result.isolation.details else ""
    return one_line(f"isolation: {result.isolation.method}{inner}", MAX_MESSAGE_CHARS)


def markdown_cell(text: Any) -> str:
    """text for one cell of a Markdown table: one line, inert (markdown_text) and with ``|`` escaped."""
    return markdown_text(one_line(text, MAX_MESSAGE_CHARS)).replace("|", "\\|")


def markdown_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """A Markdown table's lines, every cell through markdown_cell."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def step_summary(result: Result, *, now: datetime | None = None, due: datetime | None = None) -> str:
    """The Markdown `grader classroom` appends to $GITHUB_STEP_SUMMARY: the student's score table and the isolation.

    One row per check a student may see (hidden ones never; after-due-date ones only past
    ``due``): title, points, status, what to do; then the total and the isolation line.
    Every student-derived text is escaped (markdown_cell): no link, image, HTML or broken row.
    """
    checks = [c for _, c in _shown(result, now, due)]
    earned, possible = sum(c.points for c in checks), sum(c.max_points for c in checks)
    lines = [f"### Autograding: {markdown_cell(result.student_id)}", "",
             f"**Run:** {markdown_cell(f'{result.status}: {result.message}')}", ""]
    lines += markdown_table(("check", "points", "status", "what to do"),
                            [(_name(c), f"{c.points:g}/{c.max_points:g}", c.status, c.message) for c in checks])
    lines += ["", f"**Total:** {earned:g}/{possible:g} points on the visible checks", "",
              markdown_cell(isolation_line(result))]
    return "\n".join(lines) + "\n"


def append_step_summary(text: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append text to the file named by $GITHUB_STEP_SUMMARY; None (nothing written) when it is unset."""
    env = os.environ if environ is None else environ
    target = env.get(GITHUB_STEP_SUMMARY_ENV)
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(text)
    return Path(target)


# ---------------------------------------------------------------- the verb


def main(*, out: Path, format: Format, dest: Path | None = None, student: str | None = None,
         due: datetime | None = None, now: datetime | None = None) -> list[Path]:
    """Export the results under `out` (see the module docstring); returns the files written.

    ``classroom`` also emits the outputs of classroom_outputs (``result``, ``earned``,
    ``missed``; to $GITHUB_OUTPUT, or stdout) when exactly one result is exported; with $GITHUB_OUTPUT set it needs exactly one.
    ``due`` and ``now`` (default: the current time) decide whether after-due-date checks
    reach Classroom; Gradescope applies its own due date. A result file that cannot be
    read does not stop the others: they are written, then ExportError names it.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}': expected gradescope or classroom")
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    from grader.review import apply_reviews, report_lines

    merge = apply_reviews(root, now=now)
    for line in report_lines(merge.problems):
        print(line, file=sys.stderr)
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
            emitted = emit_classroom_output(classroom_outputs(results[0], now=moment, due=due))
            if emitted is not None:
                written.append(emitted)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(f"{len(problems)} result file(s) could not be exported: {problems[0]}{more}")
    if merge.problems:
        raise ExportError(f"{len(merge.problems)} problem(s) in {merge.path} (listed above): those rows were not "
                          f"applied; every other override and every export was")
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


def _shown(result: Result, now: datetime | None, due: datetime | None) -> list[tuple[int, CheckResult]]:
    """The checks a student may see, each with its 1-based position among the rubric's checks."""
    shown = {id(c) for c in visible_checks(result, "student", now, due)}
    return [(line, c) for line, c in enumerate(result.checks, start=1) if id(c) in shown]


def _overall_status(result: Result, checks: list[CheckResult]) -> str:
    if result.status == "sandbox_error" or any(c.status == "error" for c in checks):
        return "error"
    if result.status == "completed" and all(c.status == "pass" for c in checks):
        return "pass"
    return "fail"


def _test(check: CheckResult, line: int, name: str, status: str, score: float, max_score: float) -> dict[str, Any]:
    message = check.message if status != "error" else f"{name}: {check.message}"
    message = " ".join((message, *review_lines(check, "student")))
    return {"name": _log_line(name), "status": status, "score": round(float(score), 6),
            "max_score": round(float(max_score), 6), "line_no": line, "message": _log_line(message)}


def _placeholder(name: str, status: str) -> dict[str, Any]:
    return {"name": name, "status": status, "score": 0.0, "max_score": 0.0, "line_no": 0, "message": name}


def _v1(status: str, max_score: float, result: Result, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": CLASSROOM_VERSION, "status": status, "max_score": max_score,
            "message": _log_line(f"{result.status}: {result.message}"), "tests": tests}


def _reporter_sum(values: Any) -> float:
    """values added left to right from 0, in binary floating point: exactly what the reporter's JavaScript computes."""
    total = 0.0
    for value in values:
        total += value
    return total


def _rest(possible: float, earned: float) -> float:
    """The missed runner's max_score: possible - earned, nudged (by at most a few ulps) so earned + it == possible."""
    rest = max(possible - earned, 0.0)
    for _ in range(4):
        if earned + rest == possible or rest == 0.0:
            break
        rest = math.nextafter(rest, math.inf if earned + rest < possible else -math.inf)
    return rest


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
