"""The gradebook (grades.csv and grades.parquet), rebuilt from every result.json under the output folder.

It is never appended to: :func:`rebuild_gradebook` reads all result files again, so a
batch that crashed midway and was resumed never leaves a student twice. During a batch,
:class:`LiveGradebook` reads them once and then takes each new result in memory
(one row per student id, the newest wins), rewriting both files atomically each time.

Student text is neutralised where it lands. In ``grades.csv`` every text cell
(``student_id``, ``status``, ``message``) goes through ``grader.text.csv_cell``: terminal
escapes and control characters are removed, and a cell that a spreadsheet would read as a
formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a CR) gets a leading ``'``,
so ``=1+2`` is written as ``'=1+2``. ``grades.parquet`` is typed data for scripts, not for
spreadsheets: its ``student_id`` and ``status`` keep their exact values (staging only
lets safe names become student ids; an id that is not valid UTF-8, from an older
result.json, is written escaped), and its ``message`` has no quote added. In both,
``message`` is one line: terminal escapes and control characters removed, whitespace
collapsed (``grader.text.one_line``).

Columns, one row per student, sorted by student id:
``student_id`` (always text: ``007`` and ``1e5`` stay as they are), ``status``,
``score_earned``, ``score_possible``, ``suspect`` (any check flagged),
``test_accuracy_grid``, ``test_accuracy_random`` (and ``test_accuracy_<search>``
for any other search evaluated: the grader's own evaluation on the held-out test
split), ``run_seconds``, ``message``, then ``points_<check id>`` per check in
rubric order. A value that does not apply (no score, no such check) is empty.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grader.jsonio import write_bytes_atomic, write_text_atomic
from grader.result import RESULT_FILE, Result, read_results
from grader.text import csv_cell, display_name, one_line

CSV_FILE = "grades.csv"
PARQUET_FILE = "grades.parquet"
SEARCH_COLUMNS = ("grid", "random")
LEADING_COLUMNS = ("student_id", "status", "score_earned", "score_possible", "suspect")
TEXT_COLUMNS = ("student_id", "status", "message")


@dataclass(frozen=True)
class Gradebook:
    """Where the gradebook was written, how many students it holds, and the result files it could not read."""

    csv_path: Path
    parquet_path: Path
    rows: int
    skipped: tuple[str, ...]


def gradebook_frame(results: Sequence[Result]) -> pd.DataFrame:
    """One row per result, sorted by student id, with the columns the module docstring lists."""
    searches = list(SEARCH_COLUMNS)
    check_ids: list[str] = []
    for result in results:
        for evaluation in result.evaluations:
            if evaluation.search not in searches:
                searches.append(evaluation.search)
        for check in result.checks:
            if check.id not in check_ids:
                check_ids.append(check.id)

    records = []
    for result in sorted(results, key=lambda r: r.student_id):
        accuracy = {e.search: e.test_accuracy for e in result.evaluations}
        points = {c.id: c.points for c in result.checks}
        records.append(
            {
                "student_id": _exact_id(result.student_id),
                "status": result.status,
                "score_earned": None if result.score is None else result.score.earned,
                "score_possible": None if result.score is None else result.score.possible,
                "suspect": any(c.suspect for c in result.checks),
                **{f"test_accuracy_{s}": accuracy.get(s) for s in searches},
                "run_seconds": result.timings.run_s,
                "message": one_line(result.message, None),
                **{f"points_{cid}": points.get(cid) for cid in check_ids},
            }
        )

    columns = [*LEADING_COLUMNS, *(f"test_accuracy_{s}" for s in searches), "run_seconds", "message"]
    columns += [f"points_{cid}" for cid in check_ids]
    frame = pd.DataFrame.from_records(records, columns=columns)
    text = list(TEXT_COLUMNS)
    numbers = [c for c in columns if c not in text and c != "suspect"]
    frame[text] = frame[text].astype("string")
    frame[numbers] = frame[numbers].astype("float64")
    frame["suspect"] = frame["suspect"].astype("bool")
    return frame


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a gradebook frame with every text cell made safe for a spreadsheet (grader.text.csv_cell)."""
    safe = frame.copy()
    for column in TEXT_COLUMNS:
        safe[column] = safe[column].map(lambda v: v if pd.isna(v) else csv_cell(v)).astype("string")
    return safe


def write_gradebook(root: Path, results: Sequence[Result], skipped: Sequence[str] = ()) -> Gradebook:
    """Write root/grades.csv and root/grades.parquet for these results (each file atomically)."""
    frame = gradebook_frame(results)
    csv_path = root / CSV_FILE
    parquet_path = root / PARQUET_FILE
    write_text_atomic(csv_path, csv_frame(frame).to_csv(index=False, lineterminator="\n"))
    _write_parquet_atomic(frame, parquet_path)
    return Gradebook(csv_path=csv_path, parquet_path=parquet_path, rows=len(frame), skipped=tuple(skipped))


def rebuild_gradebook(out_dir: str | os.PathLike[str]) -> Gradebook:
    """Read every out_dir/<student>/result.json and write out_dir/grades.csv and out_dir/grades.parquet afresh.

    A result file that cannot be read is left out and reported in ``skipped`` by
    its one-line error, which names the file.
    """
    root = _results_folder(out_dir)
    found, skipped = read_results(root)
    return write_gradebook(root, [result for _, result in found], skipped)


class LiveGradebook:
    """The gradebook of a batch in progress: the result files are read once, then each new result is taken in memory.

    ``update(result)`` replaces that student's row (keyed by student id, which is the
    student's folder name) and rewrites both files; a problem reported at the start for
    that student's result file is dropped once a new result replaces it. Safe to call
    from several threads. The files it writes are the ones :func:`rebuild_gradebook`
    would write from the same results.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.root = _results_folder(out_dir)
        found, skipped = read_results(self.root)
        self._results: dict[str, Result] = {folder: result for folder, result in found}
        self._skipped = list(skipped)
        self._lock = threading.Lock()

    def update(self, result: Result) -> Gradebook:
        """Take result as its student's row and rewrite grades.csv and grades.parquet."""
        with self._lock:
            self._results[result.student_id] = result
            mine = f"'{self.root / result.student_id / RESULT_FILE}'"
            self._skipped = [problem for problem in self._skipped if mine not in problem]
            return self._write()

    def results(self) -> list[Result]:
        """The results held now, one per student."""
        with self._lock:
            return list(self._results.values())

    def write(self) -> Gradebook:
        """Rewrite both files from the results held now."""
        with self._lock:
            return self._write()

    def _write(self) -> Gradebook:
        return write_gradebook(self.root, list(self._results.values()), self._skipped)


def _results_folder(out_dir: str | os.PathLike[str]) -> Path:
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    return root


def _exact_id(student_id: str) -> str:
    """The student id as it is; escaped (grader.text.display_name) only when it cannot be written as UTF-8.

    Staging never lets such an id through, but a result.json from an older grader may hold one.
    """
    try:
        student_id.encode("utf-8")
    except UnicodeEncodeError:
        return display_name(student_id, 4096)
    return student_id


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    write_bytes_atomic(path, buffer.getvalue())
