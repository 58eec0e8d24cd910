"""Tests for grader.gradebook: grades.csv and grades.parquet rebuilt from the result files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from grader.gradebook import rebuild_gradebook
from grader.result import (
    RESULT_SCHEMA_VERSION,
    CheckResult,
    ModelEvaluation,
    Result,
    Score,
    Timings,
    write_result,
)


def result_for(student_id: str, *, status: str = "completed", suspect: bool = False) -> Result:
    """A small result: two checks, grid and random models evaluated, unless the run crashed before them."""
    ran = status == "completed"
    return Result(
        schema_version=RESULT_SCHEMA_VERSION,
        student_id=student_id,
        content_hash="sha256:" + "a" * 64,
        rubric_hash="sha256:" + "c" * 64,
        grader_version="0.1.0",
        profile="quick",
        status=status,  # type: ignore[arg-type]
        message="ok" if ran else "tuning.py exited with code 1",
        exit_code=0 if ran else 1,
        signal=None,
        entry_point="tuning.py",
        timings=Timings(0.0, 30.5, 2.0, "2026-11-26T19:40:01Z", "2026-11-26T19:40:34Z"),
        slot=None,
        isolation=None,
        packages={},
        artifacts=(),
        evaluations=(
            ModelEvaluation("grid", "models/best_grid.keras", 0.97, 1000, None, 1.0),
            ModelEvaluation("random", "models/best_random.keras", 0.95, 1000, None, 1.0),
        ) if ran else (),
        logs={},
        checks=(
            CheckResult("grid_coverage", "Grid coverage", "grid_coverage", 10.0, 10.0, "pass", "visible", "all 8"),
            CheckResult("best_accuracy", "Best accuracy", "best_accuracy", 4.0, 5.0, "partial", "hidden",
                        "measured 0.97", suspect=suspect),
        ) if ran else (),
        score=Score(14.0, 15.0) if ran else Score(0.0, 15.0),
    )


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Results for three students whose ids look like numbers to a naive reader, one of them suspect."""
    out = tmp_path / "out"
    for student_id, status, suspect in [("1e5", "completed", True), ("007", "completed", False), ("zed", "crashed", False)]:
        write_result(out / student_id / "result.json", result_for(student_id, status=status, suspect=suspect))
    return out


def test_gradebook_has_one_row_per_student_sorted_with_scores_checks_and_accuracies(out_dir: Path) -> None:
    book = rebuild_gradebook(out_dir)

    assert (book.csv_path, book.parquet_path, book.rows, book.skipped) == (
        out_dir / "grades.csv", out_dir / "grades.parquet", 3, ()
    )
    frame = pd.read_csv(book.csv_path, dtype={"student_id": str, "status": str, "message": str})
    assert list(frame.columns) == [
        "student_id", "status", "score_earned", "score_possible", "suspect",
        "test_accuracy_grid", "test_accuracy_random", "run_seconds", "message",
        "points_grid_coverage", "points_best_accuracy",
    ]
    assert list(frame["student_id"]) == ["007", "1e5", "zed"]
    assert list(frame["status"]) == ["completed", "completed", "crashed"]
    assert list(frame["score_earned"]) == [14.0, 14.0, 0.0]
    assert list(frame["suspect"]) == [False, True, False]
    assert list(frame["test_accuracy_grid"][:2]) == [0.97, 0.97]
    assert math.isnan(frame["test_accuracy_random"][2])
    assert list(frame["points_best_accuracy"][:2]) == [4.0, 4.0]
    assert math.isnan(frame["points_grid_coverage"][2])
    assert list(frame["run_seconds"]) == [30.5, 30.5, 30.5]


def test_student_ids_stay_text_in_csv_and_parquet(out_dir: Path) -> None:
    book = rebuild_gradebook(out_dir)
    from_csv = pd.read_csv(book.csv_path, dtype=str)
    from_parquet = pd.read_parquet(book.parquet_path)
    assert list(from_csv["student_id"]) == ["007", "1e5", "zed"]
    assert list(from_parquet["student_id"]) == ["007", "1e5", "zed"]
    assert all(isinstance(v, str) for v in from_parquet["student_id"])


def test_rebuilding_twice_gives_no_duplicates_and_picks_up_new_results(out_dir: Path) -> None:
    rebuild_gradebook(out_dir)
    write_result(out_dir / "amy" / "result.json", result_for("amy"))
    book = rebuild_gradebook(out_dir)
    assert book.rows == 4
    assert list(pd.read_csv(book.csv_path, dtype=str)["student_id"]) == ["007", "1e5", "amy", "zed"]
    assert len(pd.read_parquet(book.parquet_path)) == 4
    assert sorted(p.name for p in out_dir.iterdir() if p.is_file()) == ["grades.csv", "grades.parquet"]


def test_corrupt_result_is_skipped_and_reported_by_path(out_dir: Path) -> None:
    broken = out_dir / "bob" / "result.json"
    broken.parent.mkdir()
    broken.write_text('{"schema_version": 1,')
    (out_dir / "carl").mkdir()  # graded folder without a result yet: nothing to report

    book = rebuild_gradebook(out_dir)

    assert book.rows == 3
    assert book.skipped == (f"result file '{broken}' is not valid JSON (Expecting property name enclosed in double quotes at line 1)",)
    assert "bob" not in list(pd.read_csv(book.csv_path, dtype=str)["student_id"])


def test_empty_results_folder_gives_a_gradebook_with_headers_only(tmp_path: Path) -> None:
    book = rebuild_gradebook(tmp_path)
    assert book.rows == 0
    assert book.csv_path.read_text() == (
        "student_id,status,score_earned,score_possible,suspect,"
        "test_accuracy_grid,test_accuracy_random,run_seconds,message\n"
    )


def test_missing_results_folder_says_which(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        rebuild_gradebook(tmp_path / "nope")
    assert str(info.value) == f"results folder '{tmp_path / 'nope'}' does not exist"
