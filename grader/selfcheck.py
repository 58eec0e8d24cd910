"""The `check` and `classroom` verbs: grade one repository with a rubric's visible checks, for its student."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader import export, grade
from grader.feedback import visible_checks
from grader.result import Result, read_result
from grader.text import terminal_text

CHECK_DIR = "grader-check"  # under the system temp dir: never inside the repository being graded


def grade_repo(path: Path, rubric: Path, *, time_limit: float | None, console: Console) -> tuple[Result, Path]:
    """Grade the repository at path with the quick engine (CPU, one slot, always afresh); its result and folder."""
    path = path.resolve()
    out = Path(tempfile.gettempdir()) / CHECK_DIR / path.name
    summary = grade.main(submissions=[path], rubric=rubric, out=out, time_limit=time_limit, gpus="none", jobs=1,
                         force=True, console=console)
    student = summary.graded[0]
    result = read_result(out / student / "result.json")
    assert result is not None
    return result, out / student


def score_table(result: Result) -> Table:
    """The visible checks with their points and what to do next."""
    checks = visible_checks(result, "student", None, None)
    title = terminal_text(f"{result.student_id}: {result.status} ({result.message})", 300)
    table = Table(title=Text(title), show_lines=True)
    for column in ("check", "points", "status", "what to do"):
        table.add_column(column, overflow="fold")
    for check in checks:
        cells = (check.title, f"{check.points:g}/{check.max_points:g}", check.status, check.message)
        table.add_row(*(Text(terminal_text(cell, 2000)) for cell in cells))
    earned, possible = sum(c.points for c in checks), sum(c.max_points for c in checks)
    table.caption = f"score {earned:g}/{possible:g} on the visible checks"
    return table


def check_main(*, path: Path, rubric: Path, time_limit: float | None = None, console: Console | None = None) -> int:
    """`grader check [PATH]`: the student's self-check; exit 0 when every visible check passes."""
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    result, folder = grade_repo(path, rubric, time_limit=time_limit, console=Console(stderr=True))
    console.print(score_table(result))
    console.print(f"feedback: {folder / 'feedback.md'}", markup=False, highlight=False)
    checks = visible_checks(result, "student", None, None)
    return 0 if checks and all(c.status == "pass" for c in checks) else 1


def classroom_main(*, path: Path, rubric: Path, time_limit: float | None = None) -> int:
    """`grader classroom`: grade the checked-out repo and write the Classroom reporter's `result` step output."""
    result, _ = grade_repo(path, rubric, time_limit=time_limit, console=Console(stderr=True))
    Console(stderr=True, width=None if sys.stderr.isatty() else 200).print(score_table(result))
    export.emit_classroom_output(export.classroom_payload(result))
    return 0

