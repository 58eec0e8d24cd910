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
``score_earned``, ``score_possible`` (final points: a reviewer's overrides from review.csv, grader.review,
included), ``suspect`` (any check flagged), ``overrides`` (how many checks a reviewer's points replaced; their
automatic points and who changed them are in result.json and the instructor's feedback),
``test_accuracy_grid``, ``test_accuracy_random`` (and ``test_accuracy_<search>``
for any other search evaluated: the grader's own evaluation on the held-out test
split), ``run_seconds``, ``message``, then ``points_<check id>`` per check in
rubric order. A value that does not apply (no score, no such check) is empty.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from grader.jsonio import write_bytes_atomic, write_text_atomic
from grader.result import RESULT_FILE, Result, read_results
from grader.text import csv_cell, display_name, one_line

CSV_FILE = "grades.csv"
PARQUET_FILE = "grades.parquet"
SEARCH_COLUMNS = ("grid", "random")
LEADING_COLUMNS = ("student_id", "status", "score_earned", "score_possible", "suspect", "overrides")
TEXT_COLUMNS = ("student_id", "status", "message")


@dataclass(frozen=True)
class Gradebook:
    """Where the gradebook was written, how many students it holds, and the result files it could not read."""

    csv_path: Path
    parquet_path: Path
    rows: int
    skipped: tuple[str, ...]


def gradebook_columns(results: Iterable[Result]) -> tuple[list[str], list[str]]:
    """The searches (grid and random first, then any other in order of first appearance) and the check ids (in order
    of first appearance) that the gradebook's columns are made of."""
    return _union(_ids(result) for result in results)


def _ids(result: Result) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The searches a result evaluated and the checks it ran, in its order."""
    return tuple(e.search for e in result.evaluations), tuple(c.id for c in result.checks)


def _union(ids: Iterable[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[list[str], list[str]]:
    searches, check_ids = list(SEARCH_COLUMNS), []
    seen_searches, seen_checks = set(searches), set()
    previous = None
    for pair in ids:
        if pair == previous:  # a batch's results mostly share one rubric: the same ids again add nothing
            continue
        previous = pair
        for search in pair[0]:
            if search not in seen_searches:
                seen_searches.add(search)
                searches.append(search)
        for check_id in pair[1]:
            if check_id not in seen_checks:
                seen_checks.add(check_id)
                check_ids.append(check_id)
    return searches, check_ids


def gradebook_frame(results: Sequence[Result]) -> pd.DataFrame:
    """One row per result, sorted by student id, with the columns the module docstring lists."""
    searches, check_ids = gradebook_columns(results)
    rows = [_record(result, searches, check_ids) for result in sorted(results, key=lambda r: r.student_id)]
    return _frame(rows, searches, check_ids)


def _record(result: Result, searches: Sequence[str], check_ids: Sequence[str]) -> tuple[object, ...]:
    """One result's row, its values in column order (text exact, not yet made safe for a spreadsheet)."""
    accuracy = {e.search: e.test_accuracy for e in result.evaluations}
    points = {c.id: c.points for c in result.checks}
    return (
        _exact_id(result.student_id),
        result.status,
        None if result.score is None else result.score.earned,
        None if result.score is None else result.score.possible,
        any(c.suspect for c in result.checks),
        sum(1 for c in result.checks if c.override is not None),
        *(accuracy.get(s) for s in searches),
        result.timings.run_s,
        one_line(result.message, None),
        *(points.get(cid) for cid in check_ids),
    )


def _column_names(searches: Sequence[str], check_ids: Sequence[str]) -> list[str]:
    return [*LEADING_COLUMNS, *(f"test_accuracy_{s}" for s in searches), "run_seconds", "message",
            *(f"points_{cid}" for cid in check_ids)]


def _frame(rows: Sequence[tuple[object, ...]], searches: Sequence[str], check_ids: Sequence[str]) -> pd.DataFrame:
    """The gradebook frame of these rows, in this order, with the column types the gradebook always has."""
    names = _column_names(searches, check_ids)
    columns = list(zip(*rows)) if rows else [()] * len(names)
    data: dict[str, object] = {}
    for name, values in zip(names, columns):
        if name in TEXT_COLUMNS:
            data[name] = pd.array(values, dtype="string")
        elif name == "suspect":
            data[name] = np.array(values, dtype=bool)
        elif name == "overrides":
            data[name] = np.array(values, dtype="int64")
        else:
            data[name] = np.array(values, dtype="float64")  # None becomes NaN
    return pd.DataFrame(data)


def _csv_header(searches: Sequence[str], check_ids: Sequence[str]) -> str:
    return _csv_row(_column_names(searches, check_ids))


def _csv_line(row: tuple[object, ...], searches: Sequence[str], check_ids: Sequence[str]) -> str:
    """One row of grades.csv: text cells through csv_cell, numbers as Python writes them, an empty cell for none."""
    cells = []
    for name, value in zip(_column_names(searches, check_ids), row):
        if name in TEXT_COLUMNS:
            cells.append("" if value is None else csv_cell(value))
        elif name == "suspect":
            cells.append(str(bool(value)))
        elif name == "overrides":
            cells.append(str(int(value)))  # type: ignore[call-overload]
        else:
            cells.append("" if value is None or math.isnan(float(value)) else repr(float(value)))  # type: ignore[arg-type]
    return _csv_row(cells)


def _csv_row(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def write_gradebook(root: Path, results: Sequence[Result], skipped: Sequence[str] = ()) -> Gradebook:
    """Write root/grades.csv and root/grades.parquet for these results (each file atomically)."""
    columns = gradebook_columns(results)
    records = [_record(result, *columns) for result in sorted(results, key=lambda r: r.student_id)]
    csv_path = root / CSV_FILE
    parquet_path = root / PARQUET_FILE
    write_text_atomic(csv_path, _csv_header(*columns) + "".join(_csv_line(record, *columns) for record in records))
    _write_parquet_atomic(_frame(records, *columns), parquet_path)
    return Gradebook(csv_path=csv_path, parquet_path=parquet_path, rows=len(records), skipped=tuple(skipped))


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

    Each row is rendered once (its CSV line and its values) and kept until its student's
    result changes or the columns do (a result with a check or search no other has), so an
    update costs one row's rendering plus joining the CSV lines and writing the parquet file,
    not a rebuild of every row: the grader's own time per result stays flat at 1,000 students.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.root = _results_folder(out_dir)
        found, skipped = read_results(self.root)
        self._results: dict[str, Result] = {folder: result for folder, result in found}
        self._skipped = list(skipped)
        self._lock = threading.Lock()
        self._columns: tuple[list[str], list[str]] | None = None
        self._rows: dict[str, tuple[str, tuple[object, ...]]] = {}  # key -> (CSV line, values), for self._columns
        self._ids = {key: _ids(result) for key, result in self._results.items()}

    def update(self, result: Result) -> Gradebook:
        """Take result as its student's row and rewrite grades.csv and grades.parquet."""
        with self._lock:
            self._results[result.student_id] = result
            self._rows.pop(result.student_id, None)
            self._ids[result.student_id] = _ids(result)
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
        columns = _union(self._ids.values())
        if columns != self._columns:
            self._columns, self._rows = columns, {}
        for key, result in self._results.items():
            if key not in self._rows:
                record = _record(result, *columns)
                self._rows[key] = (_csv_line(record, *columns), record)
        order = [key for key, _ in sorted(self._results.items(), key=lambda item: item[1].student_id)]
        csv_path, parquet_path = self.root / CSV_FILE, self.root / PARQUET_FILE
        write_text_atomic(csv_path, _csv_header(*columns) + "".join(self._rows[key][0] for key in order))
        _write_parquet_atomic(_frame([self._rows[key][1] for key in order], *columns), parquet_path)
        return Gradebook(csv_path=csv_path, parquet_path=parquet_path, rows=len(order), skipped=tuple(self._skipped))


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
