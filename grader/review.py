"""The review queue: ``grader review OUT`` lists the checks a person must look at in OUT/review.csv, and the overrides a
reviewer types there are merged back into result.json, the gradebook and the feedback.

The queue (:func:`write_queue`). One row per check marked ``review`` (the rubric's ``manual_review``) or ``suspect``,
for every OUT/<student>/result.json, in student then rubric order, with the columns of :data:`COLUMNS`:
``reason`` is ``review``, ``suspect`` or ``review+suspect``; ``evidence`` is the student's answer for an answer check
(read from the grader's copy of the output dir, ``collected/``, as grader.evidence reads it, cut to
:data:`EVIDENCE_CHARS`) and the check's message otherwise; ``automatic_points`` are the grader's own points. The
reviewer fills ``override_points`` (0 to ``max_points``), ``comment`` (the student reads it) and ``reviewer``. Every
text cell goes through grader.text.csv_cell: no terminal escape or control character, and a cell a spreadsheet would
read as a formula gets a leading ``'``.

Running it again keeps what was typed: rows are matched by (student_id, check_id); a matched row keeps its
override_points, comment, reviewer and any column a reviewer added, and gets fresh evidence and automatic points; new
flagged checks get new rows; a row whose check is no longer flagged (or whose student or check is gone) stays, with
``reason`` set to :data:`NO_LONGER_FLAGGED`, when anything was typed in it, and is dropped when nothing was. Such rows
come after the others, in their previous order. A review.csv that cannot be read is never overwritten.

The merge (:func:`apply_reviews`; ``grader grade`` at the end of a batch and ``grader export`` before exporting). Each
row with ``override_points`` filled sets that check's final ``points`` (its status follows them), keeps the grader's in
``automatic_points`` and records ``override`` (points, comment, reviewer, ``at``: when they were first applied, and the
grader's own status). A check with an override and no filled row in a readable review.csv gets its automatic points and
status back. The score is recomputed, result.json rewritten atomically, both feedback copies written again and the
gradebook rebuilt, for the results that changed only: applying the same file twice changes nothing. A bad row (points
that are not a number, negative or above the check's points, an unknown student or check, a second row for a check, a
comment too long) is reported as ``<file>:<line>: <what is wrong>`` and leaves that check as it was; the other rows
apply. A file that cannot be read at all (missing columns, not UTF-8, larger than :data:`MAX_REVIEW_BYTES`, a link, not
a regular file) is reported in one line and changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grader.checks import score
from grader.errors import GraderError
from grader.evidence import Evidence
from grader.jsonio import write_text_atomic
from grader.result import (
    CheckResult,
    Override,
    Result,
    read_results,
    write_result,
)
from grader.rubric import Rubric
from grader.text import csv_cell, one_line
from grader.validate import FileProblem, read_regular

REVIEW_FILE = "review.csv"
COLUMNS: tuple[str, ...] = ("student_id", "check_id", "check_title", "reason", "evidence", "automatic_points",
                            "max_points", "override_points", "comment", "reviewer")
TYPED: tuple[str, ...] = ("override_points", "comment", "reviewer")  # what a reviewer fills in
REQUIRED: tuple[str, ...] = ("student_id", "check_id", *TYPED)
NO_LONGER_FLAGGED = "no longer flagged"
MAX_REVIEW_BYTES = 64 * 2**20  # 1,000 students x 20 flagged checks x ~2 KiB of evidence, with room to spare
EVIDENCE_CHARS = 1000
MAX_COMMENT_CHARS = 2000  # the result schema's bound on override.comment
MAX_REVIEWER_CHARS = 200  # and on override.reviewer
ANSWER_KINDS_PREFIX = "answer_"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class ReviewFileError(GraderError):
    """OUT/review.csv cannot be read (one line naming it and why); `grader review` then leaves it as it is."""


@dataclass(frozen=True)
class ReviewQueue:
    """What ``grader review`` wrote: the file, its rows, how many are new, and how many are no longer flagged."""

    path: Path
    rows: int
    new: int
    no_longer_flagged: int
    skipped: tuple[str, ...]  # result files that could not be read


@dataclass(frozen=True)
class ReviewMerge:
    """What a merge did: the review file (None when there is none), the results it changed (as rewritten), and one
    line per row or file problem."""

    path: Path | None
    changed: tuple[Result, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """One usable row of review.csv for one check: the override points (None: left empty), comment and reviewer."""

    points: float | None
    comment: str
    reviewer: str


# ---------------------------------------------------------------- reading review.csv


def read_review(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the (line number, cells by column) of each non-empty row of the review file at path.

    ReviewFileError when it cannot be read as a review file: a link or not a regular file, larger than
    MAX_REVIEW_BYTES, not UTF-8, empty, or lacking a column of REQUIRED. A UTF-8 byte-order mark (a spreadsheet's) is
    allowed; the line number is the line the row starts on.
    """
    try:
        data = read_regular(path, MAX_REVIEW_BYTES)
    except FileProblem as exc:
        raise ReviewFileError(f"{path}: {exc}; no override was applied") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ReviewFileError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8 CSV; "
                              f"no override was applied") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ReviewFileError(f"{path}: the file is empty (expected the header {','.join(COLUMNS)}); "
                                  f"no override was applied")
        header = [cell.strip() for cell in header]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ReviewFileError(f"{path}:1: the header lacks the column(s) {', '.join(missing)}; "
                                  f"no override was applied")
        rows = []
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                row = {name: cells[i] if i < len(cells) else "" for i, name in enumerate(header) if name}
                rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise ReviewFileError(f"{path}:{reader.line_num}: not valid CSV ({exc}); no override was applied") from None
    return header, rows


def unquote(cell: str) -> str:
    """A cell as typed before grader.text.csv_cell quoted it: the leading ``'`` it adds to a formula-like cell removed."""
    if cell.startswith("'") and csv_cell(cell[1:]) == cell:
        return cell[1:]
    return cell


def _key(cell: str) -> str:
    return unquote(cell.strip())


# ---------------------------------------------------------------- the queue


def write_queue(out: str | Path, rubric: Rubric | None = None) -> ReviewQueue:
    """Write OUT/review.csv from every result under out, keeping what a reviewer typed (see the module docstring).

    rubric says which answer each answer check reads (its params' ``key``), so the row shows the student's answer;
    without it, or for a check it does not have, the row shows the check's message.
    """
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    path = root / REVIEW_FILE
    header, old_rows = (list(COLUMNS), [])
    if path.exists() or path.is_symlink():
        header, old_rows = read_review(path)
    extra = [name for name in header if name and name not in COLUMNS]
    old: dict[tuple[str, str], dict[str, str]] = {}
    seconds: list[tuple[tuple[str, str], dict[str, str]]] = []  # a second row for a check (the merge reports it)
    for _, row in old_rows:
        key = (_key(row.get("student_id", "")), _key(row.get("check_id", "")))
        if key in old:
            seconds.append((key, row))
        else:
            old[key] = row
    found, skipped = read_results(root)
    keys = _answer_keys(rubric)
    rows: list[dict[str, str]] = []
    matched: set[tuple[str, str]] = set()
    new = 0
    for folder, result in found:
        flagged = [c for c in result.checks if c.review or c.suspect]
        if not flagged:
            continue
        answers = _answers(root / folder) if any(c.id in keys for c in flagged) else None
        for check in flagged:
            key = (result.student_id, check.id)
            previous = old.get(key)
            if previous is None:
                new += 1
            else:
                matched.add(key)
            rows.append(_queue_row(result, check, _evidence(check, keys, answers), previous))
    stale = 0
    for key, row in [*old.items(), *seconds]:
        if key in matched and row is old[key]:
            continue
        if not _typed(row):
            continue  # nothing a reviewer typed is lost
        if key not in matched:
            row = {**row, "reason": NO_LONGER_FLAGGED}
            stale += 1
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *extra])
    for row in rows:
        writer.writerow([_cell(row.get(name, "")) for name in (*COLUMNS, *extra)])
    write_text_atomic(path, buffer.getvalue())
    return ReviewQueue(path=path, rows=len(rows), new=new, no_longer_flagged=stale, skipped=tuple(skipped))


def _queue_row(result: Result, check: CheckResult, evidence: str, previous: Mapping[str, str] | None
               ) -> dict[str, str]:
    reason = "+".join(name for name, on in (("review", check.review), ("suspect", check.suspect)) if on)
    automatic = check.automatic_points if check.override is not None else check.points
    row = dict(previous or {})
    row.update({
        "student_id": result.student_id,
        "check_id": check.id,
        "check_title": check.title,
        "reason": reason,
        "evidence": evidence,
        "automatic_points": _points_text(automatic),
        "max_points": _points_text(check.max_points),
    })
    for name in TYPED:
        row.setdefault(name, "")
    return row


def _cell(value: str) -> str:
    """A cell as written to review.csv: through csv_cell once (a cell read back already quoted is not quoted again)."""
    return csv_cell(unquote(value))


def _typed(row: Mapping[str, str]) -> bool:
    """Whether a reviewer typed anything in the row: a filled TYPED column, or any column outside COLUMNS."""
    return any(value.strip() for name, value in row.items() if name in TYPED or name not in COLUMNS)


def _points_text(value: float | None) -> str:
    return "" if value is None else f"{float(value):g}"


def _answer_keys(rubric: Rubric | None) -> dict[str, str]:
    """check id -> the answer key it reads, for the rubric's answer checks."""
    if rubric is None:
        return {}
    return {c.id: str(c.params["key"]) for c in rubric.checks
            if c.kind.startswith(ANSWER_KINDS_PREFIX) and isinstance((c.params or {}).get("key"), str)}


def _answers(student_dir: Path) -> Mapping[str, Any] | None:
    """The student's answers as grader.evidence reads them from the grader's own copy of the output dir: answers.yaml,
    else the executed notebook's ``answers`` cell; read within grader.parse's bounds, never through a link. None when
    there are none that can be read."""
    from grader.contract import ANSWERS_FILE
    from grader.evidence import notebook_answers
    from grader.parse import BoundedParseError
    from grader.session import EXECUTED_NOTEBOOK, Layout
    from grader.validate import MAX_YAML_BYTES, load_answers

    layout = Layout(student_dir)
    path = layout.collected_outputs / ANSWERS_FILE
    notebook = layout.collected_notebook / EXECUTED_NOTEBOOK
    if not (path.exists() or path.is_symlink()):
        if notebook.is_file() and not notebook.is_symlink():
            return notebook_answers(notebook)[0]
        return None
    try:
        doc = load_answers(read_regular(path, MAX_YAML_BYTES))
    except (FileProblem, BoundedParseError):
        return None
    return doc if isinstance(doc, dict) else None


def _evidence(check: CheckResult, keys: Mapping[str, str], answers: Mapping[str, Any] | None) -> str:
    """What the reviewer reads: the answer an answer check judged (cut to EVIDENCE_CHARS), else the check's message."""
    key = keys.get(check.id)
    if key is not None and answers is not None and answers.get(key) not in (None, ""):
        value = answers[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return one_line(text, EVIDENCE_CHARS)
    return one_line(check.message, EVIDENCE_CHARS)


def main(*, out: Path, rubric: Rubric | None = None) -> ReviewQueue:
    """The ``review`` verb: write OUT/review.csv (see write_queue)."""
    return write_queue(out, rubric)


# ---------------------------------------------------------------- the merge


def apply_reviews(out: str | Path, *, now: datetime | None = None, feedback: bool = True,
                  gradebook: bool = True) -> ReviewMerge:
    """Merge OUT/review.csv's overrides into the results under out (see the module docstring); nothing when absent.

    Writes each changed result.json (atomically), and, unless told not to, both copies of its feedback and the
    gradebook. ``now`` (default: the current time) stamps overrides applied now.
    """
    root = Path(out)
    path = root / REVIEW_FILE
    if not (path.exists() or path.is_symlink()):
        return ReviewMerge(None, (), ())
    try:
        _, rows = read_review(path)
    except ReviewFileError as exc:
        return ReviewMerge(path, (), (str(exc),))
    found, _ = read_results(root)
    by_key: dict[str, tuple[str, Result]] = {}
    for folder, result in found:
        by_key.setdefault(csv_cell(result.student_id), (folder, result))
        by_key.setdefault(result.student_id, (folder, result))
    entries: dict[str, dict[str, Entry]] = {}
    untouched: dict[str, set[str]] = {}
    first_line: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for line, row in rows:
        where = f"{path}:{line}"
        sid_cell, cid_cell = row.get("student_id", "").strip(), row.get("check_id", "").strip()
        if not sid_cell or not cid_cell:
            if _typed(row):
                problems.append(f"{where}: the row has no {'student_id' if not sid_cell else 'check_id'}; "
                                f"its override was not applied")
            continue
        target = by_key.get(sid_cell) or by_key.get(_key(sid_cell))
        if target is None:
            if _typed(row):
                problems.append(f"{where}: there is no result for student '{_shown(_key(sid_cell))}'")
            continue
        result = target[1]
        checks = {c.id: c for c in result.checks}
        check = checks.get(cid_cell) or checks.get(_key(cid_cell))
        if check is None:
            if _typed(row):
                problems.append(f"{where}: student '{_shown(result.student_id)}' has no check "
                                f"'{_shown(_key(cid_cell))}'")
            continue
        name = f"{_shown(result.student_id)}/{_shown(check.id)}"
        key = (result.student_id, check.id)
        if key in first_line:
            problems.append(f"{where}: a second row for {name} (the first is line {first_line[key]}); "
                            f"only the first is applied")
            continue
        first_line[key] = line
        entry, why = _entry(row, check)
        if why is not None:
            problems.append(f"{where}: {why} for {name}; its points stay as they were")
            untouched.setdefault(result.student_id, set()).add(check.id)
            continue
        entries.setdefault(result.student_id, {})[check.id] = entry  # type: ignore[assignment]
    stamp = _stamp(now)
    changed: list[Result] = []
    for folder, result in found:
        merged = override_result(result, entries.get(result.student_id, {}),
                                 untouched.get(result.student_id, set()), stamp)
        if merged == result:
            continue
        write_result(root / folder / "result.json", merged)
        if feedback:
            rewrite_feedback(root / folder, merged)
        changed.append(merged)
    if changed and gradebook:
        from grader.gradebook import rebuild_gradebook

        rebuild_gradebook(root)
    return ReviewMerge(path, tuple(changed), tuple(problems))


def _entry(row: Mapping[str, str], check: CheckResult) -> tuple[Entry | None, str | None]:
    """The row's override for check, or why it cannot be applied."""
    comment = one_line(unquote(row.get("comment", "")), None)
    reviewer = one_line(unquote(row.get("reviewer", "")), None)
    if len(comment) > MAX_COMMENT_CHARS:
        return None, f"the comment is {len(comment)} characters, more than {MAX_COMMENT_CHARS}"
    if len(reviewer) > MAX_REVIEWER_CHARS:
        return None, f"the reviewer is {len(reviewer)} characters, more than {MAX_REVIEWER_CHARS}"
    text = unquote(row.get("override_points", "").strip()).strip()
    if not text:
        return Entry(None, comment, reviewer), None
    if not _NUMBER.fullmatch(text):
        return None, f"override_points '{_shown(text)}' is not a number"
    points = float(text)
    if not math.isfinite(points):
        return None, f"override_points '{_shown(text)}' is not a number"
    if points < 0:
        return None, f"override_points {text} is negative (0 to {check.max_points:g})"
    if points > check.max_points + 1e-9:
        return None, f"override_points {text} is above the check's {check.max_points:g} points"
    return Entry(points, comment, reviewer), None


def override_result(result: Result, entries: Mapping[str, Entry], untouched: set[str] | frozenset[str] = frozenset(),
                    at: str | None = None) -> Result:
    """result with the overrides of entries (check id -> Entry) applied and any other override removed, except on the
    checks in untouched; the score recomputed when a check changed. Pure: the same input gives an equal Result."""
    stamp = at or _stamp(None)
    checks = []
    for check in result.checks:
        entry = entries.get(check.id)
        if check.id in untouched:
            checks.append(check)
        elif entry is not None and entry.points is not None:
            checks.append(_overridden(check, entry, stamp))
        else:
            checks.append(_restored(check))
    if tuple(checks) == result.checks:
        return result
    return replace(result, checks=tuple(checks), score=score(checks))


def _overridden(check: CheckResult, entry: Entry, at: str) -> CheckResult:
    points = float(entry.points)  # type: ignore[arg-type]
    before = check.override
    if before is not None and (before.points, before.comment, before.reviewer) == (points, entry.comment,
                                                                                    entry.reviewer):
        return check
    automatic = check.automatic_points if before is not None else check.points
    automatic_status = before.automatic_status if before is not None else check.status
    status = "pass" if points >= check.max_points else ("fail" if points <= 0 else "partial")
    return replace(check, points=points, status=status, automatic_points=automatic,
                   override=Override(points=points, comment=entry.comment, reviewer=entry.reviewer, at=at,
                                     automatic_status=automatic_status))


def _restored(check: CheckResult) -> CheckResult:
    if check.override is None:
        return check
    points = check.automatic_points if check.automatic_points is not None else check.points
    return replace(check, points=points, status=check.override.automatic_status, automatic_points=None, override=None)


def _stamp(now: datetime | None) -> str:
    moment = now if now is not None else datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(text: str) -> str:
    return one_line(text, 80)


def rewrite_feedback(student_dir: Path, result: Result, evidence: Evidence | None = None) -> None:
    """Write both copies of a student's feedback again for result, with the trials read from the grader's own copy of
    the output dir (collected/, as at grading time; `evidence` when the caller has read it already), so the plots
    stay."""
    from grader.evidence import gather_graded
    from grader.feedback import write_feedback
    from grader.session import Layout

    layout = Layout(student_dir)
    evidence = evidence if evidence is not None else gather_graded(student_dir)
    trials = [t.as_record() for t in evidence.trials]
    source = evidence.trials_source if layout.collected_outputs.is_dir() else None
    for audience in ("student", "instructor"):
        write_feedback(student_dir, result, trials=trials, trials_source=source, audience=audience)  # type: ignore[arg-type]


def report_lines(problems: Sequence[str]) -> list[str]:
    """The problems as the lines printed to the terminal (escaped, one line each)."""
    return [one_line(problem, 1000) for problem in problems]
