"""Tests for grader.report: `grader report OUT` writes the class report, and a real headless Chromium renders it.

A small class is written as the grader leaves it (result.json from the real dataclasses, the grader's copy of each
output dir with trials.jsonl and answers.yaml): two students who handed in the same files, a hostile one whose id,
answer and check message carry HTML and terminal escapes, one who crashed with no trials. Chromium (Debian's
`chromium` package) opens the page: the DOM it built has every section and the hostile text as text only, the console
stays silent, and a screenshot is taken. tests/test_report.py is tunekit's report; this is the instructor's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_export import make_result
from test_similarity import comparison, trial_lines, write_student

from grader.cli import main
from grader.evidence import png_problem
from grader.result import CheckResult, ModelEvaluation, Override, write_result

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary: apt-get install chromium")
SECTIONS = ("summary", "scores", "test-accuracy", "grid-vs-random", "checks", "importance", "suspects", "similarity",
            "review", "problems")
HOSTILE_ID = "<script>alert('id')</script>\x1b]0;pwned\x07"
HOSTILE_MESSAGE = "<img src=x onerror=alert(2)> claimed 0.99, the grader measured 0.91"
HOSTILE_PREFIX = "</td><script>alert(1)</script>\x1b[2J "
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def checks(*, suspect: str | None = None, override: bool = False) -> tuple[CheckResult, ...]:
    """A student's four checks, in rubric order: artifacts, grid coverage, best accuracy, and an answer for review."""
    answer = CheckResult("answer", "Compare the searches", "answer_text", 2.0, 4.0, "partial", "visible",
                         "search_comparison: marked for manual review", review=True)
    if override:
        answer = CheckResult("answer", "Compare the searches", "answer_text", 4.0, 4.0, "pass", "visible",
                             "search_comparison: marked for manual review", review=True, automatic_points=2.0,
                             override=Override(4.0, "good", "TA", "2026-11-27T10:00:00Z", "partial"))
    return (
        CheckResult("artifacts", "Artifacts present", "artifacts", 2.0, 2.0, "pass", "visible", "all files there"),
        CheckResult("grid_coverage", "Grid coverage", "grid_coverage", 4.0, 4.0, "pass", "visible", "8 of 8"),
        CheckResult("best_accuracy", "Best accuracy", "best_accuracy", 3.0 if suspect else 5.0, 5.0,
                    "partial" if suspect else "pass", "visible", suspect or "98.1 % clears the top tier",
                    suspect=suspect is not None),
        answer,
    )


def graded(out: Path, student_id: str, *, folder: str | None = None, status: str = "completed",
           tests: tuple[float, float] | None = (0.97, 0.96), **check_options: object) -> None:
    evaluations = () if tests is None else (
        ModelEvaluation("grid", "models/best_grid.keras", tests[0], 10000, None, 1.0),
        ModelEvaluation("random", "models/best_random.keras", tests[1], 10000, None, 1.0))
    check_list = checks(**check_options)  # type: ignore[arg-type]
    result = make_result(student_id, status=status, check_list=check_list, evaluations=evaluations)
    write_result(out / (folder or student_id) / "result.json", result)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A class of five: s001 and s002 hand in the same files, s003 is honest, s004 is hostile, s005 crashed."""
    root = tmp_path / "out"
    write_student(root, "s001", trial_lines(1), comparison(1))
    graded(root, "s001", tests=(0.971, 0.955))
    write_student(root, "s002", None)
    for name in ("trials.jsonl", "answers.yaml"):
        shutil.copy(root / "s001/collected/outputs" / name, root / "s002/collected/outputs" / name)
    graded(root, "s002", tests=(0.971, 0.955), suspect="claimed 0.99 but the grader measured 0.955")
    write_student(root, "s003", trial_lines(3), comparison(3))
    graded(root, "s003", tests=(0.962, 0.968), override=True)
    hostile = comparison(3)
    hostile["search_comparison"] = HOSTILE_PREFIX + hostile["search_comparison"]
    write_student(root, "s004", trial_lines(4), hostile)
    graded(root, "s004", folder="s004", tests=(0.95, 0.94), suspect=HOSTILE_MESSAGE)
    hostile_result = root / "s004" / "result.json"
    hostile_result.write_text(hostile_result.read_text("utf-8").replace('"s004"', _json_string(HOSTILE_ID)), "utf-8")
    crashed = make_result("s005", status="crashed", check_list=checks(), evaluations=())
    write_result(root / "s005" / "result.json", crashed)
    return root


def _json_string(text: str) -> str:
    import json
    return json.dumps(text)


class Sections(HTMLParser):
    """The text of each <section id=...> of a page, and every start tag seen (as the browser serialised them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: dict[str, str] = {}
        self.tags: list[str] = []
        self.images: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handle_data(" ")  # cells and paragraphs read apart
        values = dict(attrs)
        if tag == "section":
            self._current = values.get("id") or ""
            self.text[self._current] = ""
        if tag == "img":
            self.images.append(values.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        self.handle_data(" ")
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.text[self._current] += data


def sections(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    for name, text in parser.text.items():
        parser.text[name] = " ".join(text.split())
    return parser


def chromium(page: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on page (as root it needs --no-sandbox), HOME and its profile inside home."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    return subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={home / 'profile'}", "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()],
        check=False, env=env, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the browser console (Chromium logs each message as a CONSOLE line on stderr)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line) or "Uncaught" in line]


def report(out: Path, *args: str) -> int:
    return main(["report", str(out), *args])


# ---------------------------------------------------------------- in a real browser


@needs_chromium
def test_the_class_report_renders_in_chromium_with_every_section_no_console_message_and_a_screenshot(
        out: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["review", str(out), "--rubric", "quick"]) == 0
    assert report(out) == 0
    page = out / "report" / "index.html"
    assert capsys.readouterr().out.splitlines()[-1] == str(page)

    dumped = chromium(page, tmp_path / "home", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert console_lines(dumped.stderr) == []
    dom = sections(dumped.stdout)
    assert tuple(dom.text) == SECTIONS
    assert "script" not in dom.tags  # the hostile id and answer stayed text
    assert "pwned" not in dumped.stdout  # the terminal-title escape in the id was dropped, not shown
    hostile_row = "<script>alert('id')</script> best_accuracy <img src=x onerror=alert(2)> claimed 0.99"
    assert hostile_row in dom.text["suspects"]
    assert "\x1b" not in dumped.stdout and "\x07" not in dumped.stdout
    assert "s002 best_accuracy claimed 0.99 but the grader measured 0.955" in dom.text["suspects"]

    assert ("s001 s002 trials 1.00 12 of 12 trials identical: grid 00..07, random 00..03 same accuracies to 4 "
            "decimals; train_seconds identical too in 12: the same log handed in twice") in dom.text["similarity"]
    assert "s001 s002 answers 1.00 search_comparison 1.00 similar: 'The grid search found" in dom.text["similarity"]
    assert ("<script>alert('id')</script> s003 answers" in dom.text["similarity"]
            and "similar: '</td><script>alert(1)</script> The grid search" in dom.text["similarity"])

    assert dom.text["summary"].startswith("The class 5 graded student(s): 4 completed, 1 crashed.")
    assert ("grid_coverage Grid coverage 5 5 0 0 0 0 100 % 4.00 / 4" in dom.text["checks"])
    assert "answer Compare the searches 5 1 4 0 0 0 20 % 2.40 / 4" in dom.text["checks"]
    assert ("students grid better random better equal median grid \u2212 random 4 3 1 0 +0.0130"
            in dom.text["grid-vs-random"])
    assert dom.text["review"].startswith("Review queue flagged reviewed pending 7 1 6 review.csv: 7 row(s), "
                                         "0 with override points typed, 0 no longer flagged")
    assert dom.text["problems"] == "Result files not read none"
    assert sorted(dom.images) == ["check_pass_rates.png", "grid_vs_random.png", "scores.png", "test_accuracy.png"]
    for image in dom.images:
        assert png_problem((page.parent / image).read_bytes()) is None, image

    shot = tmp_path / "report.png"
    taken = chromium(page, tmp_path / "home", f"--screenshot={shot}", "--window-size=1200,3000",
                     "--hide-scrollbars")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_lines(taken.stderr) == []
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and png_problem(data) is None
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1200, 3000)
    assert len(data) > 50_000  # tables and four plots, not a blank page


@needs_chromium
def test_the_console_capture_would_see_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction()</script></body></html>", "utf-8")
    shown = chromium(page, tmp_path / "home", "--dump-dom")
    (line,) = console_lines(shown.stderr)
    assert '"Uncaught ReferenceError: undefinedFunction is not defined"' in line


@needs_chromium
def test_an_empty_class_renders_as_a_whole_page_of_none_lines(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    assert report(root) == 0
    page = root / "report" / "index.html"
    shown = chromium(page, tmp_path / "home", "--dump-dom")
    assert console_lines(shown.stderr) == []
    dom = sections(shown.stdout)
    assert dom.text == {
        "summary": "The class none: no graded student in this folder",
        "scores": "Score distribution none: no student has a score",
        "test-accuracy": "Verified test accuracy per search none: no exported model was evaluated",
        "grid-vs-random": "Grid vs random across the class none: no student has both a grid and a random search result",
        "checks": "Per-check pass rates none: no check was run",
        "importance": "Hyperparameter importance across the class none: no student has two completed trials that "
                      "vary a hyperparameter",
        "suspects": "Suspect list none",
        "similarity": "Similar trial logs and answers none",
        "review": "Review queue none flagged: no check is marked for manual review or suspect flagged reviewed "
                  "pending 0 0 0 no review.csv",
        "problems": "Result files not read none",
    }
    assert dom.images == [] and sorted(p.name for p in page.parent.iterdir()) == ["index.html"]


# ---------------------------------------------------------------- the page's content


def test_a_class_where_nobody_completed_still_gets_scores_and_none_for_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "out"
    for student in ("s001", "s002"):
        write_result(root / student / "result.json",
                     make_result(student, status="crashed", check_list=checks(), evaluations=()))
    (root / "s002" / "collected" / "outputs").mkdir(parents=True)  # an output dir without trials
    assert report(root) == 0
    dom = sections((root / "report" / "index.html").read_text("utf-8"))
    assert dom.text["summary"].startswith("The class 2 graded student(s): 2 crashed.")
    assert dom.text["test-accuracy"].endswith("none: no exported model was evaluated")
    assert dom.text["grid-vs-random"].endswith("none: no student has both a grid and a random search result")
    assert dom.text["importance"].endswith("none: no student has two completed trials that vary a hyperparameter")
    assert dom.text["similarity"].endswith("none")
    assert dom.images == ["scores.png", "check_pass_rates.png"]


def test_a_plot_from_an_earlier_run_is_removed_when_its_data_is_gone(out: Path, tmp_path: Path) -> None:
    assert report(out) == 0
    assert (out / "report" / "test_accuracy.png").is_file()
    for student in ("s001", "s002", "s003", "s004"):
        shutil.rmtree(out / student)
    assert report(out) == 0
    assert not (out / "report" / "test_accuracy.png").exists()
    assert "test_accuracy.png" not in (out / "report" / "index.html").read_text("utf-8")


def test_hostile_text_reaches_the_page_only_escaped(out: Path) -> None:
    assert report(out) == 0
    page = (out / "report" / "index.html").read_text("utf-8")
    assert "&lt;script&gt;alert(&#x27;id&#x27;)&lt;/script&gt;" in page
    assert "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script" not in page and "<img src=x" not in page
    assert "\x1b" not in page and "\x07" not in page
    assert re.findall(r"<img [^>]*>", page) == [f'<img src="{name}" alt="{alt}">' for name, alt in (
        ("scores.png", "histogram of the scores"), ("test_accuracy.png", "test accuracy per search"),
        ("grid_vs_random.png", "grid against random"), ("check_pass_rates.png", "pass rate of each check"))]


def test_importance_averages_each_students_own_shares(out: Path) -> None:
    assert report(out) == 0
    dom = sections((out / "report" / "index.html").read_text("utf-8"))
    rows = re.findall(r"(learning_rate|batch_size|filters) (\d) (-?[\d.]+ %) (\d)", dom.text["importance"])
    assert [name for name, *_ in rows] and {name for name, *_ in rows} <= {"learning_rate", "batch_size", "filters"}
    assert all(n == "4" for _, n, _, _ in rows)  # the four students with trials; s005 has none
    assert sum(int(first) for *_, first in rows) <= 4  # a student whose trials show no effect ranks none first
    assert dom.text["importance"].endswith("1 student(s) without two completed trials that vary one are left out.")


def test_the_report_refuses_to_write_into_a_students_folder(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "out"
    write_result(root / "report" / "result.json", make_result("report"))
    assert report(root) == 2
    assert capsys.readouterr().err.strip() == (
        f"grader: error: '{root / 'report'}' is a student's folder or not a folder; write the report elsewhere "
        "with --dest")
    assert report(root, "--dest", str(tmp_path / "class")) == 0
    assert (tmp_path / "class" / "index.html").is_file()


def test_a_missing_results_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert report(tmp_path / "nowhere") == 2
    assert capsys.readouterr().err.strip() == f"grader: error: results folder '{tmp_path / 'nowhere'}' does not exist"


def test_the_score_section_counts_students_per_band(out: Path) -> None:
    assert report(out) == 0
    dom = sections((out / "report" / "index.html").read_text("utf-8"))
    # 15 points possible: s003 has all 15 with its override, s001 and s005 13, the two suspects 11
    assert dom.text["scores"] == ("Score distribution score students 90\u2013100 % 1 80\u201390 % 2 "
                                  "70\u201380 % 2")
