"""Classroom 50: grade the student's checkout into the runner's ``result.json`` (classroom50/result/v1) and release body.

The contract (foundation50/classroom50, "Advanced Autograding"): for each submission the
Classroom 50 runner runs the assignment's ``autograder.py`` (from the teacher's bundle,
``CLASSROOM/autograders/ASSIGNMENT/``; students never get it) with the student's checkout
as working directory and ``CLASSROOM``, ``ASSIGNMENT``, ``USERNAME``, ``SUBMISSION_TAG``,
``COMMIT_URL``, ``RELEASE_URL``, ``REVIEW_URL`` in the environment. The autograder must
leave ``./result.json``; ``./release-body.md`` (the submission release's text) is optional.
Exit 0 when it ran to the end, whatever the grade; a non-zero exit is an infrastructure
error, for which the runner records a ``status=error`` submission of its own.

``result.json``, field by field (hyphenated keys, as the runner's validator reads them)::

    schema      "classroom50/result/v1"
    classroom   $CLASSROOM          assignment  $ASSIGNMENT
    owner       $USERNAME (only when set: the runner stamps owner itself)
    submission  $SUBMISSION_TAG     commit      $COMMIT_URL
    release     $RELEASE_URL        review      $REVIEW_URL, or $COMMIT_URL when unset/empty
    datetime    now, UTC, %Y-%m-%dT%H:%M:%SZ (the runner replaces it with the commit's instant)
    score, max-score   integers: the sums of the tests'
    tests       [{"test-name", "passed", "score", "max-score"}], one per visible check

Points: a check's points are fractions (1.5 of 4); the contract wants integers. The
checks' ``max_points`` are rounded by largest remainder so they add up to the rounded
total possible; then their points likewise to the rounded total earned, never past a
test's own max-score. ``passed`` is the check's own verdict (``pass``). Students read the
release, so only the checks a student may see count: hidden and after-due-date checks are
left out of the tests and of both totals (as in ``grader check``).

Exit codes of :func:`main`: 0 graded (a failing grade included); 3 when the grader could
not run the submission in its sandbox (``sandbox_error``: the runner then records an error
rather than a grade the student did not earn; result.json is still written, for the log);
a missing variable, a bad rubric or an unsafe output folder raise :class:`Classroom50Error`
or another GraderError (the CLI prints one line, exit 2). A ``result.json`` or
``release-body.md`` already in the checkout (the student's own, say) is removed before
grading and never followed if it is a link.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from grader.errors import GraderError
from grader.export import isolation_line, markdown_cell, markdown_table
from grader.feedback import visible_checks
from grader.jsonio import write_json_atomic, write_text_atomic
from grader.result import CheckResult, Result
from grader.selfcheck import grade_repo, score_table

SCHEMA = "classroom50/result/v1"
RESULT_FILE = "result.json"
RELEASE_BODY_FILE = "release-body.md"
AUTOGRADER_FILE = "autograder.py"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
REQUIRED_ENV = ("CLASSROOM", "ASSIGNMENT", "SUBMISSION_TAG", "COMMIT_URL", "RELEASE_URL")
EXIT_GRADED = 0
EXIT_SANDBOX_ERROR = 3  # as `grader grade`: the submission could not be run in its sandbox


class Classroom50Error(GraderError):
    """The Classroom 50 run cannot be done as asked (a variable the runner sets is missing); one line."""


@dataclass(frozen=True)
class Submission:
    """What the runner says about the submission being graded (from its environment)."""

    classroom: str
    assignment: str
    owner: str | None
    submission: str
    commit: str
    release: str
    review: str


def submission_from_env(environ: Mapping[str, str]) -> Submission:
    """The runner's variables; Classroom50Error names the first required one that is missing or empty."""
    for name in REQUIRED_ENV:
        if not environ.get(name):
            raise Classroom50Error(f"${name} is not set: run this inside the Classroom 50 runner, which sets "
                                   f"{', '.join(REQUIRED_ENV)}")
    return Submission(
        classroom=environ["CLASSROOM"], assignment=environ["ASSIGNMENT"], owner=environ.get("USERNAME") or None,
        submission=environ["SUBMISSION_TAG"], commit=environ["COMMIT_URL"], release=environ["RELEASE_URL"],
        review=environ.get("REVIEW_URL") or environ["COMMIT_URL"],
    )


def integer_points(values: list[float]) -> list[int]:
    """values rounded to integers that add up to their rounded sum (largest remainder; ties to the earlier one)."""
    return _apportion(values, [None] * len(values))


def classroom50_result(result: Result, submission: Submission, *, now: datetime) -> dict[str, Any]:
    """The result.json of one graded submission (see the module docstring)."""
    checks = visible_checks(result, "student", None, None)
    maxima = integer_points([float(c.max_points) for c in checks])
    scores = _apportion([min(float(c.points), float(c.max_points)) for c in checks], maxima)
    tests = [{"test-name": _name(c), "passed": c.status == "pass", "score": score, "max-score": maximum}
             for c, score, maximum in zip(checks, scores, maxima)]
    data: dict[str, Any] = {"schema": SCHEMA, "classroom": submission.classroom, "assignment": submission.assignment}
    if submission.owner is not None:
        data["owner"] = submission.owner
    data.update({
        "submission": submission.submission, "commit": submission.commit, "release": submission.release,
        "review": submission.review, "datetime": _utc(now).strftime(DATETIME_FORMAT),
        "score": sum(scores), "max-score": sum(maxima), "tests": tests,
    })
    return data


def release_body(result: Result, data: Mapping[str, Any]) -> str:
    """release-body.md: the whole points, then the visible checks' table (points as in result.json), all inert Markdown."""
    checks = visible_checks(result, "student", None, None)
    earned, possible = sum(c.points for c in checks), sum(c.max_points for c in checks)
    lines = [f"### Autograding: {data['score']}/{data['max-score']}", "",
             f"**Run:** {markdown_cell(f'{result.status}: {result.message}')}", ""]
    lines += markdown_table(("check", "points", "status", "what to do"),
                            [(_name(c), f"{t['score']}/{t['max-score']}", c.status, c.message)
                             for c, t in zip(checks, data["tests"])])
    lines += ["", f"Exact points: {earned:g}/{possible:g}, rounded above to whole points.", "",
              markdown_cell(isolation_line(result))]
    return "\n".join(lines) + "\n"


def main(*, path: Path, rubric: Path, time_limit: float | None = None, out_dir: Path | None = None,
         environ: Mapping[str, str] | None = None, now: datetime | None = None) -> int:
    """`grader classroom50`: grade the checkout at path, write result.json and release-body.md into out_dir.

    out_dir defaults to the current directory (the runner reads ``./result.json``). Returns
    the exit code (see the module docstring).
    """
    env = os.environ if environ is None else environ
    submission = submission_from_env(env)
    out = Path.cwd() if out_dir is None else Path(out_dir)
    for name in (RESULT_FILE, RELEASE_BODY_FILE):
        _remove_stale(out / name)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    result, _ = grade_repo(Path(path), Path(rubric), time_limit=time_limit, console=err)
    data = classroom50_result(result, submission, now=now or datetime.now(timezone.utc))
    write_json_atomic(out / RESULT_FILE, data)
    write_text_atomic(out / RELEASE_BODY_FILE, release_body(result, data))
    err.print(score_table(result))
    print(f"classroom50: {data['score']}/{data['max-score']} points ({result.status}); wrote "
          f"{out / RESULT_FILE} and {out / RELEASE_BODY_FILE}")
    return EXIT_SANDBOX_ERROR if result.status == "sandbox_error" else EXIT_GRADED


def autograder_script(rubric_name: str) -> str:
    """The text of the autograder.py an instructor puts in ``CLASSROOM/autograders/ASSIGNMENT/``.

    Standard library only. Beside it in that folder: the rubric (``rubric_name``: the bundle's
    copy, so a student cannot edit what grades them) and, optionally, a ``requirements.txt``
    (with any wheel it names) that installs this grader: the script pip-installs it first
    (from that folder) when it is there, and otherwise uses the grader already installed
    (a self-hosted runner's image). It then calls :func:`main` on the working directory
    (the student's checkout). The checkout is never put on ``sys.path``, so a ``grader``
    folder in it is not imported.
    """
    if Path(rubric_name).name != rubric_name or rubric_name in ("", ".", ".."):
        raise Classroom50Error(f"the rubric's name '{rubric_name}' must be a plain file name")
    return _SCRIPT.replace("@RUBRIC@", repr(rubric_name))


def write_autograder(dest: Path, rubric: Path, *, grader_requirement: str | None = None) -> list[Path]:
    """Write the bundle folder dest: autograder.py, a copy of the rubric, and a requirements.txt installing the grader.

    The grader comes as the wheel make-template would ship (written to dest/wheels/), or as
    the instructor's grader_requirement line. The files written, in that order.
    """
    from grader.template import grader_files

    dest = Path(dest)
    line, wheels = grader_files(grader_requirement)
    dest.mkdir(parents=True, exist_ok=True)
    script = dest / AUTOGRADER_FILE
    write_text_atomic(script, autograder_script(Path(rubric).name))
    copy = dest / Path(rubric).name
    if Path(rubric).resolve() != copy.resolve():
        shutil.copyfile(rubric, copy)
    written = [script, copy]
    for wheel in wheels:
        (dest / wheel.path).parent.mkdir(parents=True, exist_ok=True)
        (dest / wheel.path).write_bytes(wheel.content)
        written.append(dest / wheel.path)
    write_text_atomic(dest / "requirements.txt", line + "\n")
    return written + [dest / "requirements.txt"]


_SCRIPT = '''#!/usr/bin/env python3
"""Classroom 50 autograder: grade the student's checkout with the course's CNN tuning grader.

Written by `grader classroom50-autograder`. Keep beside it, in
CLASSROOM/autograders/ASSIGNMENT/: the rubric it names and, unless the runner already has
the grader, a requirements.txt that installs it (and torch). The runner runs this file in
the student's checkout; it writes ./result.json and ./release-body.md.
Exit 0: graded, whatever the grade. Non-zero: the grader could not run (an infrastructure
error for the runner).
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUBRIC = HERE / @RUBRIC@
REQUIREMENTS = HERE / "requirements.txt"


def main() -> int:
    if REQUIREMENTS.is_file():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)]
        if subprocess.run(pip, cwd=HERE, check=False).returncode != 0:
            print("autograder: could not install the grader from requirements.txt", file=sys.stderr)
            return 2
        importlib.invalidate_caches()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        from grader import classroom50
        from grader.errors import GraderError
    except ImportError as exc:
        print(f"autograder: the grader is not installed ({exc})", file=sys.stderr)
        return 2
    try:
        return classroom50.main(path=Path.cwd(), rubric=RUBRIC, out_dir=Path.cwd(), environ=os.environ)
    except GraderError as exc:
        print(f"autograder: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
'''


def _apportion(values: list[float], caps: list[int | None]) -> list[int]:
    """Integers, each floor(v) or more and at most its cap, adding up to round(sum): extra units by largest remainder."""
    clean = [max(round(v, 6), 0.0) for v in values]
    target = math.floor(round(sum(clean), 6) + 0.5)
    out = [min(math.floor(v), cap) if cap is not None else math.floor(v) for v, cap in zip(clean, caps)]
    order = sorted(range(len(clean)), key=lambda i: (-(clean[i] - math.floor(clean[i])), i))
    units = target - sum(out)
    while units > 0:
        placed = False
        for i in order:
            if units and (caps[i] is None or out[i] < caps[i]):
                out[i] += 1
                units -= 1
                placed = True
        if not placed:
            break
    return out


def _remove_stale(target: Path) -> None:
    """Remove a file (or a link: never followed) left where the runner reads; refuse to touch a directory."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise Classroom50Error(f"'{target}' is a directory: the runner needs a file there")
    target.unlink()


def _name(check: CheckResult) -> str:
    return check.title or check.id


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
