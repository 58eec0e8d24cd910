"""Tests for grader.export: Gradescope results.json and the GitHub Classroom reporter's base64 result."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import grader.jsonio
from grader import export
from grader.export import (
    ExportError,
    append_step_summary,
    classroom_outputs,
    classroom_payload,
    classroom_results,
    classroom_runners,
    emit_classroom_output,
    gradescope_results,
    isolation_line,
    step_summary,
)
from grader.result import (
    RESULT_SCHEMA_VERSION,
    CheckResult,
    Isolation,
    ModelEvaluation,
    Result,
    Score,
    Timings,
    write_result,
)

DUE = datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)
BEFORE_DUE = DUE - timedelta(hours=1)
AFTER_DUE = DUE + timedelta(hours=1)


def checks() -> tuple[CheckResult, ...]:
    return (
        CheckResult("artifacts", "Artifacts present", "artifacts", 2.0, 2.0, "pass", "visible", "All files there."),
        CheckResult("random_coverage", "Random coverage", "random_coverage", 1.5, 4.0, "partial", "visible",
                    "3 of 8 distinct trials: raise max_trials."),
        CheckResult("secret", "Secret answers", "answers", 0.0, 3.0, "fail", "hidden", "hidden message"),
        CheckResult("late", "Accuracy tier", "best_accuracy", 1.0, 5.0, "partial", "after_due_date",
                    "97.10% is below the 98% tier.", suspect=True),
    )


def make_result(student_id: str = "s001", *, status: str = "completed",
                check_list: tuple[CheckResult, ...] | None = None,
                evaluations: tuple[ModelEvaluation, ...] | None = None) -> Result:
    check_list = checks() if check_list is None else check_list
    if evaluations is None:
        evaluations = (ModelEvaluation("grid", "models/best_grid.keras", 0.9812, 10000, None, 1.2),
                       ModelEvaluation("random", "models/best_random.keras", 0.9755, 10000, None, 1.1))
    return Result(
        schema_version=RESULT_SCHEMA_VERSION,
        student_id=student_id,
        content_hash="sha256:" + "a" * 64,
        rubric_hash="sha256:" + "c" * 64,
        grader_version="0.1.0",
        profile="quick",
        status=status,  # type: ignore[arg-type]
        message="tuning.py finished" if status == "completed" else "tuning.py exited with code 1",
        exit_code=0,
        signal=None,
        entry_point="tuning.py",
        timings=Timings(3.0, 30.6, 2.2, "2026-11-26T19:40:01Z", "2026-11-26T19:40:34Z"),
        slot=None,
        isolation=None,
        evaluations=evaluations,
        checks=check_list,
        score=Score(sum(c.points for c in check_list), sum(c.max_points for c in check_list)),
    )


def graded(out: Path, *results: Result) -> Path:
    for result in results:
        write_result(out / result.student_id / "result.json", result)
    return out


def decode(payload: str) -> dict:
    return json.loads(base64.b64decode(payload, validate=True).decode("utf-8"))


def runner_results(environ: dict[str, str], runners: str) -> list[dict]:
    """As the reporter's dist/main.js: runners split on ",", each <ID>_RESULTS (id upper-cased) base64-decoded."""
    return [decode(environ[f"{runner.strip().upper()}_RESULTS"]) for runner in runners.split(",")]


def reporter_points(environ: dict[str, str], runners: str) -> tuple[float, float]:
    """The reporter's "Points X/Y" notice: tests' scores added over the max_scores, skipping a runner whose max is 0."""
    total = maximum = 0.0
    for results in runner_results(environ, runners):
        if not results["max_score"]:
            continue
        maximum += results["max_score"]
        for test in results["tests"]:
            total += test["score"]
    return total, maximum


def reporter_console_points(environ: dict[str, str], runners: str) -> tuple[float, float]:
    """The reporter's console table total: per runner, passed tests / tests times its max_score, added up."""
    total = maximum = 0.0
    for results in runner_results(environ, runners):
        passed = sum(1 for t in results["tests"] if t["status"] == "pass")
        total += passed / len(results["tests"]) * (results["max_score"] or 0)
        maximum += results["max_score"] or 0
    return total, maximum


def reporter_lines(environ: dict[str, str], runners: str) -> list[str]:
    """The line the reporter prints per test: "<name> - line N" (no line for 0), or the message of an error."""
    lines = []
    for results in runner_results(environ, runners):
        for t in results["tests"]:
            mark = "ok" if t["status"] == "pass" else "X"
            if t["status"] == "error":
                lines.append(f"Error: {t['message'] or t['name']}")
            else:
                lines.append(f"{mark} {t['name']} - line {t['line_no']}" if t["line_no"] != 0 else f"{mark} {t['name']}")
    return lines


# ---------------------------------------------------------------- Gradescope


def test_gradescope_results_structure_and_values():
    assert gradescope_results(make_result()) == {
        "score": 4.5,
        "execution_time": 33,
        "output": ("**Status:** completed: tuning.py finished\n\n"
                   "**Verified test accuracy:** grid 0.9812 (10000 images), random 0.9755 (10000 images)"),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"student_id": "s001", "status": "completed", "suspect": True, "grader_version": "0.1.0",
                       "rubric_hash": "sha256:" + "c" * 64,
                       "isolation": "isolation: not recorded (the submission did not run)"},
        "tests": [
            {"name": "Artifacts present", "score": 2.0, "max_score": 2.0, "status": "passed",
             "visibility": "visible", "output": "All files there.", "output_format": "text"},
            {"name": "Random coverage", "score": 1.5, "max_score": 4.0, "status": "failed",
             "visibility": "visible", "output": "3 of 8 distinct trials: raise max_trials.", "output_format": "text"},
            {"name": "Secret answers", "score": 0.0, "max_score": 3.0, "status": "failed",
             "visibility": "hidden", "output": "hidden message", "output_format": "text"},
            {"name": "Accuracy tier", "score": 1.0, "max_score": 5.0, "status": "failed",
             "visibility": "after_due_date", "output": "97.10% is below the 98% tier.", "output_format": "text"},
        ],
        "leaderboard": [{"name": "test accuracy (grid)", "value": 0.9812},
                        {"name": "test accuracy (random)", "value": 0.9755}],
    }


def test_gradescope_leaderboard_leaves_out_a_model_the_grader_could_not_evaluate():
    result = make_result(evaluations=(ModelEvaluation("grid", "models/best_grid.keras", None, 0, "missing", 0.0),
                                      ModelEvaluation("random", "models/best_random.keras", 0.97, 100, None, 1.0)))
    data = gradescope_results(result)
    assert data["leaderboard"] == [{"name": "test accuracy (random)", "value": 0.97}]
    assert data["output"].endswith("**Verified test accuracy:** grid not evaluated, random 0.9700 (100 images)")


def test_gradescope_summary_names_no_check():
    output = gradescope_results(make_result())["output"]
    assert "Secret" not in output and "hidden message" not in output


def test_export_gradescope_writes_one_results_json_per_student(tmp_path: Path):
    out = graded(tmp_path / "out", make_result("s001"), make_result("s002", status="crashed"))
    (out / ".data").mkdir()
    (out / "grades.csv").write_text("", "utf-8")
    written = export.main(out=out, format="gradescope")
    assert written == [out / "s001" / "gradescope" / "results.json", out / "s002" / "gradescope" / "results.json"]
    for path, student in zip(written, ("s001", "s002")):
        data = json.loads(path.read_text("utf-8"))
        assert data["extra_data"]["student_id"] == student
        assert [t["visibility"] for t in data["tests"]] == ["visible", "visible", "hidden", "after_due_date"]


def test_export_gradescope_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = graded(tmp_path / "out", make_result("s001"))
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(grader.jsonio.os, "replace", recording_replace)
    [path] = export.main(out=out, format="gradescope")
    [(src, dst)] = renames
    assert dst == str(path) and Path(src).parent == path.parent and Path(src).name.endswith(".tmp")
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_export_gradescope_to_dest(tmp_path: Path):
    out = graded(tmp_path / "out", make_result("s001"), make_result("s002"))
    assert export.main(out=out, format="gradescope", dest=tmp_path / "gs") == [
        tmp_path / "gs" / "s001" / "results.json", tmp_path / "gs" / "s002" / "results.json"]
    results_dir = tmp_path / "autograder" / "results"
    assert export.main(out=out, format="gradescope", dest=results_dir, student="s002") == [
        results_dir / "results.json"]
    assert json.loads((results_dir / "results.json").read_text("utf-8"))["extra_data"]["student_id"] == "s002"


def test_export_refuses_unknown_format_student_and_folder(tmp_path: Path):
    out = graded(tmp_path / "out", make_result("s001"))
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="moodle")
    assert str(err.value) == "unknown export format 'moodle': expected gradescope or classroom"
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="gradescope", student="s999")
    assert str(err.value) == f"no result for student 's999' in '{out}'"
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="gradescope", student="../s001")
    assert str(err.value) == "'../s001' is not a student id"
    with pytest.raises(FileNotFoundError) as missing:
        export.main(out=tmp_path / "nowhere", format="gradescope")
    assert str(missing.value) == f"results folder '{tmp_path / 'nowhere'}' does not exist"


def test_an_unreadable_result_does_not_stop_the_others(tmp_path: Path):
    out = graded(tmp_path / "out", make_result("s001"), make_result("s003"))
    (out / "s002").mkdir()
    (out / "s002" / "result.json").write_text("{not json", "utf-8")
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="gradescope")
    assert str(err.value) == (f"1 result file(s) could not be exported: result file "
                              f"'{out / 's002' / 'result.json'}' is not valid JSON "
                              f"(Expecting property name enclosed in double quotes at line 1)")
    assert (out / "s001" / "gradescope" / "results.json").is_file()
    assert (out / "s003" / "gradescope" / "results.json").is_file()


# ---------------------------------------------------------------- GitHub Classroom


def test_classroom_payload_decodes_to_version_1_without_hidden_checks():
    data = decode(classroom_payload(make_result(), now=BEFORE_DUE, due=DUE))
    assert data == {
        "version": 1,
        "status": "fail",
        "max_score": 6.0,
        "message": "completed: tuning.py finished",
        "tests": [
            {"name": "Artifacts present", "status": "pass", "score": 2.0, "max_score": 2.0, "line_no": 1,
             "message": "All files there."},
            {"name": "Random coverage", "status": "fail", "score": 1.5, "max_score": 4.0, "line_no": 2,
             "message": "3 of 8 distinct trials: raise max_trials."},
        ],
    }
    assert sum(t["score"] for t in data["tests"]) == 3.5


def test_classroom_shows_after_due_date_checks_only_after_due():
    after = classroom_results(make_result(), now=AFTER_DUE, due=DUE)
    assert [t["name"] for t in after["tests"]] == ["Artifacts present", "Random coverage", "Accuracy tier"]
    assert [t["line_no"] for t in after["tests"]] == [1, 2, 4]  # the place in the rubric, hidden check 3 left out
    assert after["max_score"] == 11.0 and sum(t["score"] for t in after["tests"]) == 4.5
    assert len(classroom_results(make_result(), now=AFTER_DUE, due=None)["tests"]) == 2


def test_classroom_test_scores_sum_to_the_points_for_awkward_fractions():
    thirds = tuple(CheckResult(f"c{i}", f"C{i}", "k", 1 / 3, 1.0, "partial", "visible", "m") for i in range(3))
    data = classroom_results(make_result(check_list=thirds))
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(1.0, abs=1e-5)
    assert data["max_score"] == 3.0


def test_classroom_status_is_pass_only_when_every_point_is_earned():
    full = tuple(c for c in checks() if c.status == "pass")
    assert classroom_results(make_result(check_list=full))["status"] == "pass"
    assert classroom_results(make_result())["status"] == "fail"  # partial credit is not a pass
    assert classroom_results(make_result(check_list=full, status="timed_out"))["status"] == "fail"
    assert classroom_results(make_result(check_list=(), status="sandbox_error"))["status"] == "error"
    errored = full + (CheckResult("e", "E", "k", 0.0, 1.0, "error", "visible", "check could not run"),)
    data = classroom_results(make_result(check_list=errored))
    assert data["status"] == "error" and data["tests"][-1]["status"] == "error"


def test_classroom_payload_is_what_the_reporter_totals(monkeypatch: pytest.MonkeyPatch):
    payload = classroom_payload(make_result(), now=BEFORE_DUE, due=DUE)
    assert "\n" not in payload and payload.isascii()
    assert reporter_points({"AUTOGRADER_RESULTS": payload}, "autograder") == (3.5, 6.0)


def runners_env(result: Result, **when: datetime) -> dict[str, str]:
    outputs = classroom_outputs(result, **when)
    return {"EARNED_RESULTS": outputs["earned"], "MISSED_RESULTS": outputs["missed"]}


def test_classroom_runners_split_partial_credit_into_an_earned_pass_and_a_missed_fail():
    runners = classroom_runners(make_result(), now=BEFORE_DUE, due=DUE)
    assert runners == {
        "earned": {
            "version": 1, "status": "pass", "max_score": 3.5, "message": "completed: tuning.py finished",
            "tests": [
                {"name": "Artifacts present", "status": "pass", "score": 2.0, "max_score": 2.0, "line_no": 1,
                 "message": "All files there."},
                {"name": "Random coverage", "status": "pass", "score": 1.5, "max_score": 1.5, "line_no": 2,
                 "message": "3 of 8 distinct trials: raise max_trials."},
            ],
        },
        "missed": {
            "version": 1, "status": "fail", "max_score": 2.5, "message": "completed: tuning.py finished",
            "tests": [
                {"name": "Random coverage (not earned)", "status": "fail", "score": 0.0, "max_score": 2.5,
                 "line_no": 2, "message": "3 of 8 distinct trials: raise max_trials."},
            ],
        },
    }


def test_the_reporters_console_total_and_notice_agree_with_the_points_under_partial_credit():
    env = runners_env(make_result(), now=AFTER_DUE, due=DUE)  # 2 + 1.5 + 1 of 2 + 4 + 5
    assert reporter_console_points(env, "earned,missed") == (4.5, 11.0)
    assert reporter_points(env, "earned,missed") == (4.5, 11.0)
    # one runner cannot: its console counts passed tests, not points
    single = {"GRADE_RESULTS": classroom_payload(make_result(), now=AFTER_DUE, due=DUE)}
    assert reporter_points(single, "grade") == (4.5, 11.0)
    assert reporter_console_points(single, "grade") != (4.5, 11.0)


def test_the_reporter_totals_agree_for_awkward_fractions_to_the_last_bit():
    thirds = tuple(CheckResult(f"c{i}", f"C{i}", "k", i / 3, 1.0 + i / 7, "partial", "visible", "m")
                   for i in range(1, 6))
    env = runners_env(make_result(check_list=thirds))
    console, notice = reporter_console_points(env, "earned,missed"), reporter_points(env, "earned,missed")
    assert console == notice
    assert notice[0] == pytest.approx(sum(i / 3 for i in range(1, 6)), abs=1e-5)
    assert notice[1] == round(sum(1.0 + i / 7 for i in range(1, 6)), 6)


def test_every_test_the_reporter_prints_names_its_line_in_the_rubric():
    env = runners_env(make_result(), now=AFTER_DUE, due=DUE)
    assert reporter_lines(env, "earned,missed") == [
        "ok Artifacts present - line 1",
        "ok Random coverage - line 2",
        "ok Accuracy tier - line 4",
        "X Random coverage (not earned) - line 2",
        "X Accuracy tier (not earned) - line 4",
    ]


def test_a_runner_with_nothing_to_hold_gets_a_placeholder_worth_nothing():
    full = tuple(c for c in checks() if c.status == "pass")
    env = runners_env(make_result(check_list=full))
    assert reporter_lines(env, "earned,missed") == ["ok Artifacts present - line 1", "ok Every point earned"]
    assert reporter_points(env, "earned,missed") == reporter_console_points(env, "earned,missed") == (2.0, 2.0)
    assert [r["status"] for r in runner_results(env, "earned,missed")] == ["pass", "pass"]
    nothing = (CheckResult("a", "Artifacts present", "artifacts", 0.0, 2.0, "fail", "visible", "no files"),)
    env = runners_env(make_result(check_list=nothing, status="crashed"))
    assert reporter_lines(env, "earned,missed") == ["X No points earned yet", "X Artifacts present - line 1"]
    assert reporter_points(env, "earned,missed") == reporter_console_points(env, "earned,missed") == (0.0, 2.0)
    assert [r["status"] for r in runner_results(env, "earned,missed")] == ["fail", "fail"]


def test_an_errored_check_is_reported_with_its_title_in_the_one_line_the_reporter_prints():
    errored = (CheckResult("e", "Best accuracy", "best_accuracy", 0.0, 3.0, "error", "visible",
                           "the model could not be evaluated"),)
    env = runners_env(make_result(check_list=errored))
    assert reporter_lines(env, "earned,missed")[1] == "Error: Best accuracy: the model could not be evaluated"
    assert runner_results(env, "earned,missed")[1]["status"] == "error"


def small_result() -> Result:
    return replace(make_result(check_list=(
        CheckResult("artifacts", "Artifacts present", "artifacts", 2.0, 2.0, "pass", "visible", "All files there."),
        CheckResult("random", "Random | coverage", "random_coverage", 1.5, 4.0, "partial", "visible",
                    "a | b [x](http://evil) <b>\nnext"),
        CheckResult("secret", "Secret answers", "answers", 0.0, 3.0, "fail", "hidden", "hidden message"),
        CheckResult("late", "Accuracy tier", "best_accuracy", 1.0, 5.0, "partial", "after_due_date", "late one"),
    )), isolation=Isolation("rlimits", "memory 4096 MiB, 64 processes"))


def test_step_summary_is_the_students_score_table_in_markdown():
    assert step_summary(replace(small_result(), isolation=Isolation(
        "rlimits", "bubblewrap not used: bwrap is not installed; memory 4096 MiB, 64 processes"))).splitlines() == [
        "### Autograding: s001",
        "",
        "**Run:** completed: tuning.py finished",
        "",
        "| check | points | status | what to do |",
        "| --- | --- | --- | --- |",
        "| Artifacts present | 2/2 | pass | All files there. |",
        "| Random \\| coverage | 1.5/4 | partial | a \\| b \\[x\\](http://evil) \\<b\\> next |",
        "",
        "**Total:** 3.5/6 points on the visible checks",
        "",
        "isolation: rlimits (bubblewrap not used: bwrap is not installed; memory 4096 MiB, 64 processes)",
    ]


def test_step_summary_is_appended_to_the_file_github_names(tmp_path: Path):
    target = tmp_path / "summary.md"
    target.write_text("# earlier step\n", "utf-8")
    assert append_step_summary("new\n", environ={"GITHUB_STEP_SUMMARY": str(target)}) == target
    assert target.read_text("utf-8") == "# earlier step\nnew\n"
    assert append_step_summary("new\n", environ={}) is None


def test_isolation_line_says_the_method_and_why_not_bubblewrap():
    result = small_result()
    assert isolation_line(result) == "isolation: rlimits (memory 4096 MiB, 64 processes)"
    assert isolation_line(replace(result, isolation=Isolation("bwrap", "memory 1 MiB"))) == "isolation: bwrap (memory 1 MiB)"
    assert isolation_line(replace(result, isolation=None)) == "isolation: not recorded (the submission did not run)"


def test_emit_appends_one_line_per_output_to_github_output(tmp_path: Path):
    target = tmp_path / "github_output"
    target.write_text("earlier=1\n", "utf-8")
    assert emit_classroom_output({"earned": "eyJ2Ijox", "missed": "e30="},
                                 environ={"GITHUB_OUTPUT": str(target)}) == target
    assert target.read_text("utf-8") == "earlier=1\nearned=eyJ2Ijox\nmissed=e30=\n"


def test_emit_prints_when_github_output_is_unset(capsys: pytest.CaptureFixture[str]):
    assert emit_classroom_output({"result": "eyJ2Ijox"}, environ={}) is None
    assert capsys.readouterr().out == "result=eyJ2Ijox\n"


def test_export_classroom_in_ci_sets_the_step_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = graded(tmp_path / "out", make_result("s001"))
    github_output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(github_output))
    written = export.main(out=out, format="classroom", now=BEFORE_DUE, due=DUE)
    assert written == [out / "s001" / "classroom" / "result.json", github_output]
    outputs = dict(line.split("=", 1) for line in github_output.read_text("utf-8").splitlines())
    assert list(outputs) == ["result", "earned", "missed"]
    assert decode(outputs["result"]) == json.loads(written[0].read_text("utf-8"))
    assert reporter_points({"AUTOGRADER_RESULTS": outputs["result"]}, "autograder") == (3.5, 6.0)
    env = {"EARNED_RESULTS": outputs["earned"], "MISSED_RESULTS": outputs["missed"]}
    assert reporter_points(env, "earned,missed") == reporter_console_points(env, "earned,missed") == (3.5, 6.0)


def test_export_classroom_without_github_output_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    out = graded(tmp_path / "out", make_result("s001"))
    assert export.main(out=out, format="classroom", now=BEFORE_DUE, due=DUE) == [
        out / "s001" / "classroom" / "result.json"]
    printed = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert list(printed) == ["result", "earned", "missed"]
    assert all(decode(value)["version"] == 1 for value in printed.values())


def test_export_classroom_needs_one_student_for_github_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = graded(tmp_path / "out", make_result("s001"), make_result("s002"))
    github_output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(github_output))
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="classroom")
    assert str(err.value) == ("--format classroom sets the step output for one student, but 2 result(s) were "
                              "exported: pass --student")
    assert not github_output.exists()
    assert export.main(out=out, format="classroom", student="s002", dest=tmp_path / "cr") == [
        tmp_path / "cr" / "result.json", github_output]
    assert github_output.read_text("utf-8").count("result=") == 1
    assert github_output.read_text("utf-8").count("earned=") == 1


# ---------------------------------------------------------------- student text


HOSTILE_MESSAGE = "exited: ![x](http://evil/t.png) <img src=x onerror=alert(1)> [go](javascript:alert(1))\n\x1b[2J& more"


def test_gradescope_summary_shows_the_run_message_literally():
    result = replace(make_result(), message=HOSTILE_MESSAGE)
    first = gradescope_results(result)["output"].split("\n\n")[0]
    assert first == ("**Status:** completed: exited: !\\[x\\](http://evil/t.png) \\<img src=x onerror=alert(1)\\> "
                     "\\[go\\](javascript:alert(1)) &amp; more")


def test_classroom_messages_are_single_lines_that_are_never_workflow_commands():
    odd = CheckResult("artifacts", "Artifacts present", "artifacts", 0.0, 2.0, "fail", "visible",
                      "::add-mask::x\n::error::pwned\x1b[31m")
    result = replace(make_result(check_list=(odd,)), message="line one\n::stop-commands::tok\r")
    data = classroom_results(result, now=BEFORE_DUE, due=DUE)
    assert data["message"] == "completed: line one ::stop-commands::tok"
    assert data["tests"][0]["message"] == "> ::add-mask::x ::error::pwned"


def test_a_folder_whose_name_is_not_a_student_id_is_not_exported(tmp_path: Path):
    out = graded(tmp_path / "out", make_result("s001"))
    write_result(out / "bad\x1bname" / "result.json", make_result("bad\x1bname"))
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="gradescope")
    assert str(err.value) == ("1 result file(s) could not be exported: folder 'bad\\x1bname' was not exported: "
                              "its name holds a control, line-separator or invisible formatting character")
    assert (out / "s001" / "gradescope" / "results.json").is_file()
    assert not (out / "bad\x1bname" / "gradescope").exists()
    with pytest.raises(ExportError) as err:
        export.main(out=out, format="gradescope", student="bad\x1bname")
    assert str(err.value) == "'bad\\x1bname' is not a student id"
