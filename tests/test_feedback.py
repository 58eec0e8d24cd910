"""Tests for grader.feedback: who sees which checks, and the Markdown/HTML feedback with plots and log excerpt."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_notebook

from grader.evidence import gather
from grader.feedback import (
    FeedbackFiles,
    clean_line,
    shown_score,
    visible_checks,
    write_feedback,
)
from grader.nbhtml import render_notebook_html
from grader.result import (
    RESULT_SCHEMA_VERSION,
    CheckResult,
    ModelEvaluation,
    Result,
    Score,
    Timings,
)

FIXTURES = Path(__file__).parent / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DUE = datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)
BEFORE_DUE = DUE - timedelta(days=1)
AFTER_DUE = DUE + timedelta(seconds=1)

VISIBLE_MESSAGE = "Grid covers 16 of 16 combinations; nothing to do."
PARTIAL_MESSAGE = "Random search ran 3 distinct trials; the rubric asks for 8: raise max_trials to 8 or more."
HIDDEN_MESSAGE = "Hidden: the answer about learning_rate disagrees with your trials."
LATER_MESSAGE = "After due: best model 97.10% vs tier 98%."


def checks() -> tuple[CheckResult, ...]:
    return (
        CheckResult("artifacts", "Artifacts present", "artifacts", 2.0, 2.0, "pass", "visible", VISIBLE_MESSAGE),
        CheckResult("random_coverage", "Random coverage", "random_coverage", 1.5, 4.0, "partial", "visible",
                    PARTIAL_MESSAGE),
        CheckResult("secret_answers", "Secret answers check", "answers", 0.0, 3.0, "fail", "hidden", HIDDEN_MESSAGE),
        CheckResult("late_accuracy", "Late accuracy tier", "best_accuracy", 1.0, 5.0, "partial", "after_due_date",
                    LATER_MESSAGE),
    )


def make_result(*, status: str = "completed", check_list: tuple[CheckResult, ...] | None = None,
                logs: dict[str, str] | None = None, message: str = "tuning.py finished") -> Result:
    check_list = checks() if check_list is None else check_list
    return Result(
        schema_version=RESULT_SCHEMA_VERSION,
        student_id="s001",
        content_hash="sha256:" + "a" * 64,
        rubric_hash="sha256:" + "c" * 64,
        grader_version="0.1.0",
        profile="quick",
        status=status,  # type: ignore[arg-type]
        message=message,
        exit_code=0 if status == "completed" else 1,
        signal=None,
        entry_point="tuning.py",
        timings=Timings(0.5, 30.2, 2.1, "2026-11-26T19:40:01Z", "2026-11-26T19:40:34Z"),
        slot=None,
        isolation=None,
        evaluations=(
            ModelEvaluation("grid", "models/best_grid.keras", 0.9812, 10000, None, 1.2),
            ModelEvaluation("random", "models/best_random.keras", None, 0, "model file is missing", 0.0),
        ),
        logs=logs or {},
        checks=check_list,
        score=Score(sum(c.points for c in check_list), sum(c.max_points for c in check_list)),
    )


def trial(search: str, trial_id: str, acc: float | None, status: str = "COMPLETED") -> dict:
    done = status == "COMPLETED"
    return {
        "contract_version": 1, "search": search, "trial_id": trial_id,
        "hyperparameters": {"learning_rate": 0.01, "batch_size": 32, "epochs": 1, "filters": 16,
                            "kernel_size": 3, "dropout": 0.0, "l2": 0.0},
        "status": status, "val_accuracy": acc if done else None, "val_loss": 0.2 if done else None,
        "history": ({"loss": [0.5], "accuracy": [0.8], "val_loss": [0.2], "val_accuracy": [acc]} if done
                    else {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}),
        "train_seconds": 1.0, "finished_at": "2026-11-26T19:40:01Z",
    }


def from_jsonl(trials: list[dict]) -> dict:
    """write_feedback's trial arguments for a run whose trials.jsonl held these trials."""
    return {"trials": trials, "trials_source": "trials.jsonl"}


def read(files: FeedbackFiles) -> tuple[str, str]:
    return files.md.read_text("utf-8"), files.html.read_text("utf-8")


# ---------------------------------------------------------------- deciding (pure)


def test_student_sees_visible_checks_only_before_the_due_date():
    shown = visible_checks(make_result(), "student", BEFORE_DUE, DUE)
    assert [c.id for c in shown] == ["artifacts", "random_coverage"]


def test_student_sees_after_due_date_checks_once_due_has_passed_but_never_hidden_ones():
    shown = visible_checks(make_result(), "student", AFTER_DUE, DUE)
    assert [c.id for c in shown] == ["artifacts", "random_coverage", "late_accuracy"]
    assert [c.id for c in visible_checks(make_result(), "student", DUE, DUE)][-1] == "late_accuracy"


def test_after_due_date_checks_stay_hidden_from_students_when_there_is_no_due_date():
    assert [c.id for c in visible_checks(make_result(), "student", AFTER_DUE, None)] == ["artifacts",
                                                                                          "random_coverage"]


def test_naive_datetimes_are_taken_as_utc():
    naive_due = DUE.replace(tzinfo=None)
    assert len(visible_checks(make_result(), "student", AFTER_DUE, naive_due)) == 3
    assert len(visible_checks(make_result(), "student", BEFORE_DUE.replace(tzinfo=None), DUE)) == 2


def test_instructor_sees_every_check():
    assert visible_checks(make_result(), "instructor", BEFORE_DUE, None) == checks()


def test_student_score_counts_only_the_shown_checks_and_the_instructor_gets_the_whole_score():
    result = make_result()
    shown = visible_checks(result, "student", BEFORE_DUE, DUE)
    assert shown_score(result, shown, "student") == Score(3.5, 6.0)
    assert shown_score(result, checks(), "instructor") == Score(4.5, 14.0)
    assert shown_score(make_result(check_list=()), (), "student") is None


def test_an_unknown_audience_is_refused():
    with pytest.raises(ValueError) as err:
        visible_checks(make_result(), "parent", None, None)  # type: ignore[arg-type]
    assert str(err.value) == "unknown feedback audience 'parent': expected student or instructor"


def test_clean_line_strips_ansi_control_and_bidi_characters():
    assert clean_line("\x1b[31mred\x1b[0m\x07 ok\u202e\tend\r") == "red ok    end"
    assert clean_line("x" * 500, 10) == "x" * 9 + "\u2026"


# ---------------------------------------------------------------- the files


def test_student_copy_leaves_hidden_checks_out_entirely(tmp_path: Path):
    files = write_feedback(tmp_path, make_result(), now=BEFORE_DUE, due=DUE)
    assert files.md == tmp_path / "feedback.md" and files.html == tmp_path / "feedback.html"
    for text in read(files):
        assert "Secret answers check" not in text and "secret_answers" not in text
        assert HIDDEN_MESSAGE not in text
    md, _ = read(files)
    assert "**Score:** 3.5/6" in md  # the hidden check's 3 points are not in the total shown


def test_instructor_copy_shows_hidden_checks_with_their_visibility(tmp_path: Path):
    files = write_feedback(tmp_path, make_result(), now=BEFORE_DUE, due=DUE, audience="instructor")
    assert files.md == tmp_path / "feedback.instructor.md"
    assert files.html == tmp_path / "feedback.instructor.html"
    md, html = read(files)
    assert HIDDEN_MESSAGE in md and HIDDEN_MESSAGE in html
    assert "| Secret answers check | 0/3 | failed | hidden |  |" in md
    assert LATER_MESSAGE in md
    assert "**Score:** 4.5/14" in md
    assert not (tmp_path / "feedback.md").exists()


def test_after_due_date_check_is_withheld_before_due_and_shown_after(tmp_path: Path):
    before = read(write_feedback(tmp_path / "a", make_result(), now=BEFORE_DUE, due=DUE))
    for text in before:
        assert LATER_MESSAGE not in text and "Late accuracy tier" not in text
    assert ("1 more check(s) will be shown after the due date; the score above does not include them yet."
            in before[0])
    after = read(write_feedback(tmp_path / "b", make_result(), now=AFTER_DUE, due=DUE))
    assert LATER_MESSAGE in after[0] and LATER_MESSAGE in after[1]
    assert "will be shown after the due date" not in after[0]
    assert "**Score:** 4.5/11" in after[0]


def test_markdown_holds_each_visible_check_message_exactly_with_its_points_and_status(tmp_path: Path):
    md, _ = read(write_feedback(tmp_path, make_result(), now=BEFORE_DUE, due=DUE))
    lines = md.splitlines()
    for message in (VISIBLE_MESSAGE, PARTIAL_MESSAGE):
        assert message in lines
    assert "| Artifacts present | 2/2 | passed |" in lines
    assert "| Random coverage | 1.5/4 | partial credit |" in lines
    assert "**Status:** completed. Your submission ran to the end." in lines
    assert "- grid: 98.12% on 10000 test images (models/best_grid.keras)" in lines
    assert "- random: not evaluated (model file is missing)" in lines


def test_html_escapes_student_content(tmp_path: Path):
    hostile = CheckResult("answers", "Answers <b>bold</b>", "answers", 0.0, 1.0, "fail", "visible",
                          "Your answer was: <script>alert('x')</script> & more")
    result = make_result(check_list=(hostile,), message="<img src=x onerror=alert(1)>")
    md, html = read(write_feedback(tmp_path, result, now=BEFORE_DUE, due=DUE))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    assert "Answers &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<img src=x" not in html
    # Markdown shows it literally: no tag, link or entity a renderer would act on
    assert "Your answer was: \\<script\\>alert('x')\\</script\\> &amp; more" in md.splitlines()
    assert "> \\<img src=x onerror=alert(1)\\>" in md.splitlines()


def test_html_is_self_contained(tmp_path: Path):
    given = from_jsonl([trial("grid", "00", 0.9), trial("grid", "01", 0.95)])
    _, html = read(write_feedback(tmp_path, make_result(), **given, now=BEFORE_DUE, due=DUE))
    assert html.startswith("<!DOCTYPE html>")
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert re.findall(r'<img src="([^"]{0,22})', html) == ["data:image/png;base64,"]


def test_suspect_check_is_flagged_and_explained(tmp_path: Path):
    flagged = CheckResult("accuracy_gap", "Claimed vs verified accuracy", "best_accuracy", 2.0, 2.0, "pass",
                          "visible", "Claimed 0.99, verified 0.91.", suspect=True)
    md, html = read(write_feedback(tmp_path, make_result(check_list=(flagged,))))
    line = ("\u26a0 **Flagged for review: Claimed vs verified accuracy. The grader found something in this check "
            "(marked \u26a0) that an instructor will look at before the grade is final.**")
    assert line in md.splitlines()
    assert "### Claimed vs verified accuracy \u26a0" in md.splitlines()
    assert 'class="suspect"' in html


def test_no_suspect_line_when_only_a_hidden_check_is_suspect(tmp_path: Path):
    hidden = CheckResult("gap", "Gap", "best_accuracy", 0.0, 1.0, "fail", "hidden", "gap", suspect=True)
    md, _ = read(write_feedback(tmp_path, make_result(check_list=(hidden,))))
    assert "Flagged for review" not in md


def test_table_cells_escape_pipes(tmp_path: Path):
    odd = CheckResult("odd", "a|b", "artifacts", 1.0, 1.0, "pass", "visible", "fine")
    md, _ = read(write_feedback(tmp_path, make_result(check_list=(odd,))))
    assert "| a\\|b | 1/1 | passed |" in md.splitlines()


# ---------------------------------------------------------------- plots


def test_plots_are_real_pngs_written_and_embedded(tmp_path: Path):
    given = from_jsonl([
        trial("grid", "00", 0.91), trial("grid", "01", 0.95), trial("grid", "02", 0.93),
        trial("random", "00", 0.90), trial("random", "01", None, status="FAILED"), trial("random", "02", 0.96),
    ])
    files = write_feedback(tmp_path, make_result(), **given, now=BEFORE_DUE, due=DUE)
    assert files.plots == (tmp_path / "feedback_plots" / "grid_trials.png",
                           tmp_path / "feedback_plots" / "random_trials.png")
    for plot in files.plots:
        assert plot.read_bytes().startswith(PNG_SIGNATURE)
    md, html = read(files)
    assert ("grid search: validation accuracy of its 3 completed trial(s); best is trial 01 at 0.9500."
            in md.splitlines())
    assert ("random search: validation accuracy of its 2 completed trial(s); best is trial 02 at 0.9600; "
            "1 trial(s) that did not complete are not shown." in md.splitlines())
    assert "](feedback_plots/grid_trials.png)" in md
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == 2
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in embedded)
    assert base64.b64decode(embedded[0]) == files.plots[0].read_bytes()


def test_plots_are_skipped_with_a_line_when_there_are_no_trials(tmp_path: Path):
    files = write_feedback(tmp_path, make_result(), trials=[], trials_source=None, now=BEFORE_DUE, due=DUE)
    md, html = read(files)
    assert files.plots == ()
    assert "No plots: no trials were recorded (in trials.jsonl or a KerasTuner project folder)." in md.splitlines()
    assert "<p>No plots: no trials were recorded (in trials.jsonl or a KerasTuner project folder).</p>" in html
    assert "<img" not in html
    assert not (tmp_path / "feedback_plots").exists()


def test_a_trials_file_with_no_valid_trial_gets_its_own_line(tmp_path: Path):
    files = write_feedback(tmp_path, make_result(), **from_jsonl([]), now=BEFORE_DUE, due=DUE)
    md, _ = read(files)
    assert files.plots == ()
    assert ("No plots: trials.jsonl holds no valid trial (`grader validate-output` on your output folder says why)."
            in md.splitlines())


def test_feedback_never_reads_the_output_dir(tmp_path: Path):
    """Trials come from the records passed in: a trials.jsonl lying in the student's tree is not read again."""
    out = tmp_path / "work" / "outputs"
    out.mkdir(parents=True)
    (out / "trials.jsonl").write_text(json.dumps(trial("grid", "00", 0.9)) + "\n", "utf-8")
    files = write_feedback(tmp_path, make_result(), trials=[], trials_source=None, now=BEFORE_DUE, due=DUE)
    assert files.plots == ()


def test_a_keras_tuner_only_run_gets_its_plots(tmp_path: Path):
    """Trials read from KerasTuner project folders (no trials.jsonl at all) are plotted like any others."""
    evidence = gather(FIXTURES / "outputs" / "keras_tuner_only")
    assert evidence.trials_source == "tuner" and evidence.trials
    files = write_feedback(tmp_path, make_result(), trials=[t.as_record() for t in evidence.trials],
                           trials_source=evidence.trials_source, now=BEFORE_DUE, due=DUE)
    md, _ = read(files)
    assert [p.name for p in files.plots] == ["grid_trials.png", "random_trials.png"]
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in files.plots)
    assert "No plots" not in md and "no trials were recorded" not in md
    done = [t for t in evidence.trials if t.search == "grid" and t.completed]
    assert f"grid search: validation accuracy of its {len(done)} completed trial(s)" in md


def test_a_search_without_completed_trials_gets_a_line_instead_of_a_plot(tmp_path: Path):
    given = from_jsonl([trial("grid", "00", 0.9), trial("random", "00", None, status="FAILED")])
    files = write_feedback(tmp_path, make_result(), **given, now=BEFORE_DUE, due=DUE)
    assert [p.name for p in files.plots] == ["grid_trials.png"]
    md, _ = read(files)
    assert "No plot for the random search: none of its 1 trial(s) completed." in md.splitlines()


def test_student_trial_ids_cannot_break_the_plot(tmp_path: Path):
    given = from_jsonl([trial("grid", "$\\frac{", 0.9), trial("grid", "\x1b[2J" + "9" * 80, 0.95)])
    files = write_feedback(tmp_path, make_result(), **given, now=BEFORE_DUE, due=DUE)
    assert len(files.plots) == 1 and files.plots[0].read_bytes().startswith(PNG_SIGNATURE)
    md, _ = read(files)
    assert "best is trial " + "9" * 39 + "\u2026 at 0.9500." in md


# ---------------------------------------------------------------- log excerpt and notebook


def crashed_with_log(tmp_path: Path, raw: bytes, status: str = "crashed") -> Result:
    (tmp_path / "logs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "logs" / "stderr.log").write_bytes(raw)
    return make_result(status=status, logs={"stderr": "logs/stderr.log", "stdout": "logs/stdout.log"},
                       message="tuning.py exited with code 1")


def test_crashed_result_shows_the_last_lines_of_its_stderr_log(tmp_path: Path):
    raw = b"".join(f"line {i}\n".encode() for i in range(100)) + b"ValueError: bad filters\n"
    md, html = read(write_feedback(tmp_path, crashed_with_log(tmp_path, raw)))
    lines = md.splitlines()
    assert "## Log excerpt (logs/stderr.log)" in lines
    assert "The last 40 line(s) of the log (earlier lines left out):" in lines
    start = lines.index("```")
    assert lines[start + 1: start + 41] == [f"line {i}" for i in range(61, 100)] + ["ValueError: bad filters"]
    assert lines[start + 41] == "```"
    assert "line 60" not in md
    assert "<pre>line 61\n" in html and "ValueError: bad filters</pre>" in html


def test_log_excerpt_survives_bytes_that_are_not_utf8_and_control_characters(tmp_path: Path):
    raw = b"ok line\n\xff\xfe broken \x80 bytes\n\x1b[31mred\x1b[0m\x07 bell\x00nul\nTraceback: <script>x</script>\n"
    md, html = read(write_feedback(tmp_path, crashed_with_log(tmp_path, raw)))
    assert "\ufffd\ufffd broken \ufffd bytes" in md.splitlines()
    assert "red bellnul" in md.splitlines()
    for text in (md, html):
        assert "\x1b" not in text and "\x07" not in text and "\x00" not in text
    assert "Traceback: &lt;script&gt;x&lt;/script&gt;" in html


def test_log_with_backticks_cannot_close_the_code_fence(tmp_path: Path):
    md, _ = read(write_feedback(tmp_path, crashed_with_log(tmp_path, b"```\n# not a heading\n")))
    lines = md.splitlines()
    assert lines[lines.index("````") + 1: lines.index("````") + 3] == ["```", "# not a heading"]


def test_an_empty_log_says_so(tmp_path: Path):
    md, _ = read(write_feedback(tmp_path, crashed_with_log(tmp_path, b"")))
    assert "The log is empty." in md.splitlines()


def test_completed_result_has_no_log_excerpt(tmp_path: Path):
    result = crashed_with_log(tmp_path, b"a warning\n", status="completed")
    md, html = read(write_feedback(tmp_path, result))
    assert "Log excerpt" not in md and "Log excerpt" not in html


def test_timed_out_and_sandbox_error_results_show_the_log(tmp_path: Path):
    for status in ("timed_out", "sandbox_error"):
        md, _ = read(write_feedback(tmp_path / status, crashed_with_log(tmp_path / status, b"killed\n", status)))
        assert "## Log excerpt (logs/stderr.log)" in md.splitlines()


def test_grader_traceback_reaches_the_instructor_only(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "grader-error.log").write_text("Traceback: KeyError in grader.runner\n", "utf-8")
    result = make_result(status="sandbox_error", logs={"grader-error": "logs/grader-error.log"})
    student_md, _ = read(write_feedback(tmp_path, result))
    instructor_md, _ = read(write_feedback(tmp_path, result, audience="instructor"))
    assert "KeyError in grader.runner" not in student_md and "Log excerpt" not in student_md
    assert "Traceback: KeyError in grader.runner" in instructor_md.splitlines()


def test_a_log_path_outside_the_student_folder_is_ignored(tmp_path: Path):
    (tmp_path / "secret.log").write_text("TOP SECRET\n", "utf-8")
    student = tmp_path / "s001"
    student.mkdir()
    (student / "logs").mkdir()
    (student / "logs" / "stderr.log").symlink_to(tmp_path / "secret.log")
    for path in ("../secret.log", str(tmp_path / "secret.log"), "logs/stderr.log"):
        result = make_result(status="crashed", logs={"stderr": path})
        md, _ = read(write_feedback(student, result))
        assert "TOP SECRET" not in md and "Log excerpt" not in md


def test_notebook_html_is_linked_when_the_grader_rendered_it(tmp_path: Path):
    md, _ = read(write_feedback(tmp_path, make_result()))
    assert "notebook.html" not in md
    (tmp_path / "notebook.html").write_text(render_notebook_html(nbformat.writes(new_notebook()).encode(),
                                                                 title="s001"), "utf-8")
    result = make_result(logs={"html": "notebook.html", "notebook": "notebook.executed.ipynb"})
    md, html = read(write_feedback(tmp_path, result))
    assert "Your executed notebook: [notebook.html](notebook.html)" in md.splitlines()
    assert '<a href="notebook.html">notebook.html</a>' in html


@pytest.mark.parametrize("page", [
    "<html><script>alert(document.cookie)</script></html>",  # what a plain script can leave as executed.html
    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n",  # nbconvert's own page, not sanitised
])
def test_an_html_file_the_grader_did_not_render_is_never_linked(tmp_path: Path, page: str):
    (tmp_path / "notebook.html").write_text(page, "utf-8")
    (tmp_path / "student.html").write_text(page, "utf-8")
    for logs in ({"html": "notebook.html"}, {"html": "student.html"}, {}):
        md, html = read(write_feedback(tmp_path, make_result(logs=logs)))
        assert "notebook.html" not in md and "student.html" not in md and "<a " not in html


def test_a_symlinked_notebook_page_is_not_linked(tmp_path: Path):
    (tmp_path / "elsewhere.html").write_text(render_notebook_html(b"{}", title="x"), "utf-8")
    (tmp_path / "notebook.html").symlink_to(tmp_path / "elsewhere.html")
    md, _ = read(write_feedback(tmp_path, make_result(logs={"html": "notebook.html"})))
    assert "notebook.html" not in md


def test_terminal_escapes_never_reach_either_file(tmp_path: Path):
    hostile = CheckResult("answers", "Answers", "answers", 0.0, 1.0, "fail", "visible",
                          "You wrote: \x1b]0;pwned\x07\x1b[2Jhello\u202e\x9b31m\udcff")
    result = make_result(check_list=(hostile,), message="exited: \x1b[31mred\x1b[0m\r\x07")
    for audience in ("student", "instructor"):
        for text in read(write_feedback(tmp_path, result, audience=audience)):
            assert not any(ch in text for ch in "\x1b\x07\r\x9b\u202e\udcff")
            assert "pwned" not in text
    md, _ = read(write_feedback(tmp_path, result))
    assert "You wrote: hello\\xff" in md.splitlines()
