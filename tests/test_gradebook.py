"""Tests for grader.gradebook: grades.csv and grades.parquet rebuilt from the result files."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from grader.gradebook import CSV_FILE, PARQUET_FILE, LiveGradebook, rebuild_gradebook
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
        "student_id", "status", "score_earned", "score_possible", "suspect", "overrides",
        "test_accuracy_grid", "test_accuracy_random", "run_seconds", "message",
        "points_grid_coverage", "points_best_accuracy",
    ]
    assert list(frame["student_id"]) == ["007", "1e5", "zed"]
    assert list(frame["status"]) == ["completed", "completed", "crashed"]
    assert list(frame["score_earned"]) == [14.0, 14.0, 0.0]
    assert list(frame["suspect"]) == [False, True, False]
    assert list(frame["overrides"]) == [0, 0, 0]
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
        "student_id,status,score_earned,score_possible,suspect,overrides,"
        "test_accuracy_grid,test_accuracy_random,run_seconds,message\n"
    )


def test_missing_results_folder_says_which(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        rebuild_gradebook(tmp_path / "nope")
    assert str(info.value) == f"results folder '{tmp_path / 'nope'}' does not exist"


# ---------------------------------------------------------------- student text in the files


def hostile_result(student_id: str, message: str) -> Result:
    return replace(result_for(student_id), message=message)


def test_csv_cells_cannot_be_formulas_or_terminal_escapes_and_parquet_keeps_exact_ids(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = {
        "=1+2": "ok",
        "-5": "@SUM(A1)",
        "+x": "=HYPERLINK(\"http://evil\",\"x\")",
        "plain": "exited: \x1b]0;pwned\x07\x1b[31mred\x1b[0m\nsecond\tline\r",
    }
    for student_id, message in rows.items():
        write_result(out / student_id / "result.json", hostile_result(student_id, message))

    book = rebuild_gradebook(out)

    text = book.csv_path.read_text("utf-8")
    assert not any(ch in text for ch in "\x1b\x07\r\t")
    frame = pd.read_csv(book.csv_path, dtype=str, keep_default_na=False)
    assert list(frame["student_id"]) == ["'+x", "'-5", "'=1+2", "plain"]
    assert list(frame["message"]) == ["'=HYPERLINK(\"http://evil\",\"x\")", "'@SUM(A1)", "ok",
                                      "exited: red second line"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for column in frame.columns for cell in frame[column]
               if column in ("student_id", "status", "message"))
    from_parquet = pd.read_parquet(book.parquet_path)
    assert list(from_parquet["student_id"]) == ["+x", "-5", "=1+2", "plain"]
    assert list(from_parquet["message"])[3] == "exited: red second line"


def test_reserved_names_hold_the_gradebook_files() -> None:
    from grader.staging import RESERVED_NAMES

    assert {CSV_FILE, PARQUET_FILE} <= RESERVED_NAMES


# ---------------------------------------------------------------- updated per result


def test_live_gradebook_updates_per_result_and_matches_a_rebuild(out_dir: Path) -> None:
    live = LiveGradebook(out_dir)
    write_result(out_dir / "amy" / "result.json", result_for("amy"))
    book = live.update(result_for("amy"))
    assert book.rows == 4
    regraded = result_for("zed")
    write_result(out_dir / "zed" / "result.json", regraded)
    book = live.update(regraded)
    assert book.rows == 4
    frame = pd.read_csv(book.csv_path, dtype=str, keep_default_na=False)
    assert list(frame["student_id"]) == ["007", "1e5", "amy", "zed"]
    assert list(frame["status"]) == ["completed"] * 4
    live_csv, live_parquet = book.csv_path.read_bytes(), pd.read_parquet(book.parquet_path)
    rebuilt = rebuild_gradebook(out_dir)
    assert rebuilt.csv_path.read_bytes() == live_csv
    pd.testing.assert_frame_equal(pd.read_parquet(rebuilt.parquet_path), live_parquet)


def test_live_gradebook_drops_a_read_problem_once_that_student_is_regraded(out_dir: Path) -> None:
    broken = out_dir / "bob" / "result.json"
    broken.parent.mkdir()
    broken.write_text("{", "utf-8")
    live = LiveGradebook(out_dir)
    assert len(live.write().skipped) == 1
    write_result(broken, result_for("bob"))
    book = live.update(result_for("bob"))
    assert book.skipped == () and book.rows == 4


def test_an_old_result_with_an_id_that_is_not_utf8_does_not_break_the_gradebook(tmp_path: Path) -> None:
    out = tmp_path / "out"
    odd = os.fsdecode(b"caf\xe9")
    write_result(out / "old" / "result.json", result_for(odd))
    book = rebuild_gradebook(out)
    assert list(pd.read_csv(book.csv_path, dtype=str)["student_id"]) == ["caf\\xe9"]
    assert list(pd.read_parquet(book.parquet_path)["student_id"]) == ["caf\\xe9"]


def test_live_gradebook_matches_a_rebuild_when_a_result_adds_or_drops_a_column(out_dir: Path) -> None:
    live = LiveGradebook(out_dir)
    extra = replace(
        result_for("amy"),
        evaluations=(*result_for("amy").evaluations, ModelEvaluation("bayes", "models/best_bayes.keras", 0.9, 1000, None, 1.0)),
        checks=(*result_for("amy").checks, CheckResult("late", "Late", "late", 0.0, 1.0, "fail", "visible", "late")),
    )
    for result in (extra, replace(extra, message="regraded"), result_for("amy")):
        write_result(out_dir / "amy" / "result.json", result)
        book = live.update(result)
        live_csv, live_parquet = book.csv_path.read_bytes(), pd.read_parquet(book.parquet_path)
        rebuilt = rebuild_gradebook(out_dir)
        assert rebuilt.csv_path.read_bytes() == live_csv
        pd.testing.assert_frame_equal(pd.read_parquet(rebuilt.parquet_path), live_parquet)
    header = live_csv.decode().splitlines()[0]
    assert "test_accuracy_bayes" not in header and "points_late" not in header
