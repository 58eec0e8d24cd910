"""The `check` and `classroom` verbs: grade one repository with a rubric's visible checks, for its student.

Both grade into ``<tempdir>/grader-check-<uid>/<repo name>`` (never inside the repository):
one folder per user, private (see check_dir), and refused (CheckDirError) when it exists but is
not a real directory owned by this user, so that on a shared machine another user can
neither read the results nor plant a link that sends them elsewhere.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader import export, grade
from grader.errors import GraderError
from grader.feedback import visible_checks
from grader.result import Result, read_result
from grader.text import display_name, terminal_text

CHECK_DIR = "grader-check"  # <tempdir>/grader-check-<uid>: never inside the repository being graded


class CheckDirError(GraderError, PermissionError):
    """The per-user check folder exists but is not this user's own real directory; one line."""


def check_dir(base: Path | None = None, *, name: str = CHECK_DIR) -> Path:
    """``<base>/<name>-<uid>`` (base: the system temp dir), created private or verified to be this user's own.

    Private is 0700; for root 0711, so that a fallback sandbox running as uid 65534 (no
    bubblewrap) can still reach its work dir inside, while nobody can list the folder.
    Refused when it is a link, not a directory or owned by another user (lstat: no link
    is followed).
    """
    folder = Path(tempfile.gettempdir() if base is None else base) / f"{name}-{os.getuid()}"
    mode = 0o711 if os.getuid() == 0 else 0o700
    try:
        folder.mkdir(mode=mode)
    except FileExistsError:
        pass
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CheckDirError(f"'{display_name(str(folder))}' is not a directory (a link or a file is there): remove it")
    if info.st_uid != os.getuid():
        raise CheckDirError(f"'{display_name(str(folder))}' belongs to uid {info.st_uid}, not to you "
                            f"(uid {os.getuid()}): remove it")
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(folder, mode, follow_symlinks=False)
    return folder


def grade_repo(path: Path, rubric: Path, *, time_limit: float | None, console: Console) -> tuple[Result, Path]:
    """Grade the repository at path with the quick engine (CPU, one slot, always afresh); its result and folder."""
    path = path.resolve()
    out = check_dir() / path.name
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
    console.print(export.isolation_line(result), markup=False, highlight=False)
    console.print(f"feedback: {folder / 'feedback.md'}", markup=False, highlight=False)
    checks = visible_checks(result, "student", None, None)
    return 0 if checks and all(c.status == "pass" for c in checks) else 1


def classroom_main(*, path: Path, rubric: Path, time_limit: float | None = None) -> int:
    """`grader classroom`: grade the checked-out repo, set the reporter's step outputs and write the step summary.

    Outputs (export.classroom_outputs): ``earned`` and ``missed`` for the workflow's two
    runners, ``result`` for workflows written before. The score table goes to stderr and,
    as Markdown, to $GITHUB_STEP_SUMMARY when that is set. Exit 0 whatever the grade: the
    reporter step fails the job when points are missing.
    """
    result, _ = grade_repo(path, rubric, time_limit=time_limit, console=Console(stderr=True))
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    err.print(score_table(result))
    err.print(export.isolation_line(result), markup=False, highlight=False)
    export.emit_classroom_output(export.classroom_outputs(result))
    export.append_step_summary(export.step_summary(result))
    return 0



