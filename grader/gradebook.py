"""The gradebook (grades.csv and grades.parquet), rebuilt from every result.json under the output folder.

It is never appended to: each rebuild reads all result files again, so a batch
that crashed midway and was resumed never leaves a student twice.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grader.jsonio import write_bytes_atomic, write_text_atomic
from grader.result import Result, read_results

CSV_FILE = "grades.csv"
PARQUET_FILE = "grades.parquet"
SEARCH_COLUMNS = ("grid", "random")
LEADING_COLUMNS = ("student_id", "status", "score_earned", "score_possible", "suspect")


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
                "student_id": result.student_id,
                "status": result.status,
                "score_earned": None if result.score is None else result.score.earned,
                "score_possible": None if result.score is None else result.score.possible,
                "suspect": any(c.suspect for c in result.checks),
                **{f"test_accuracy_{s}": accuracy.get(s) for s in searches},
                "run_seconds": result.timings.run_s,
                "message": result.message,
                **{f"points_{cid}": points.get(cid) for cid in check_ids},
            }
        )

    columns = [*LEADING_COLUMNS, *(f"test_accuracy_{s}" for s in searches), "run_seconds", "message"]
    columns += [f"points_{cid}" for cid in check_ids]
    frame = pd.DataFrame.from_records(records, columns=columns)
    text = ["student_id", "status", "message"]
    numbers = [c for c in columns if c not in text and c != "suspect"]
    frame[text] = frame[text].astype("string")
    frame[numbers] = frame[numbers].astype("float64")
    frame["suspect"] = frame["suspect"].astype("bool")
    return frame


def rebuild_gradebook(out_dir: str | os.PathLike[str]) -> Gradebook:
    """Read every out_dir/<student>/result.json and write out_dir/grades.csv and out_dir/grades.parquet afresh.

    A result file that cannot be read is left out and reported in ``skipped`` by
    its one-line error, which names the file.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    found, skipped = read_results(root)
    frame = gradebook_frame([result for _, result in found])
    csv_path = root / CSV_FILE
    parquet_path = root / PARQUET_FILE
    write_text_atomic(csv_path, frame.to_csv(index=False, lineterminator="\n"))
    _write_parquet_atomic(frame, parquet_path)
    return Gradebook(csv_path=csv_path, parquet_path=parquet_path, rows=len(frame), skipped=tuple(skipped))


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    write_bytes_atomic(path, buffer.getvalue())
