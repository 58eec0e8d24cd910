"""The CLI's one error boundary and its exit codes, which scripts act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from grader import cli, grade
from grader.errors import GraderError
from grader.grade import BatchSummary


def test_a_batch_where_every_submission_has_a_result_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = BatchSummary(("ann", "bob"), ("cy",), {"ann": "completed", "bob": "crashed"})
    monkeypatch.setattr(grade, "main", lambda **kwargs: summary)
    assert cli.main(["grade", "subs"]) == cli.EXIT_OK == 0


def test_a_batch_with_a_sandbox_error_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = BatchSummary(("ann", "bob"), (), {"ann": "completed", "bob": "sandbox_error"})
    monkeypatch.setattr(grade, "main", lambda **kwargs: summary)
    assert cli.main(["grade", "subs"]) == cli.EXIT_SANDBOX_ERRORS == 3


def test_an_interrupted_batch_exits_130_saying_results_are_kept(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(**kwargs: object) -> BatchSummary:
        raise KeyboardInterrupt

    monkeypatch.setattr(grade, "main", interrupted)
    assert cli.main(["grade", "subs"]) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "grader: interrupted; results written so far are kept, re-run to resume\n"


def test_an_error_the_user_can_fix_is_one_clean_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def refused(**kwargs: object) -> BatchSummary:
        raise GraderError("no such thing \x1b]0;title\x07here\n[/]")

    monkeypatch.setattr(grade, "main", refused)
    assert cli.main(["grade", "subs"]) == cli.EXIT_USAGE == 2
    assert capsys.readouterr().err == "grader: error: no such thing here [/]\n"


def test_a_bad_rubric_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc["limits"]["disk_mb"] = 1
    rubric = tmp_path / "rubric.json"
    rubric.write_text(json.dumps(doc))
    subs = tmp_path / "subs"
    subs.mkdir()
    assert cli.main(["grade", str(subs), "--rubric", str(rubric), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"grader: error: invalid rubric {rubric}: $.limits.disk_mb: 1 is less than the minimum of 16\n"
    assert not (tmp_path / "out").exists()


def test_every_user_fixable_error_of_the_grader_shares_one_base() -> None:
    from grader.calibrate import CalibrationError
    from grader.export import ExportError
    from grader.rubric import RubricError
    from grader.sandbox import SandboxUnavailableError
    from grader.scheduler import SlotError
    from grader.staging import DuplicateStudentError
    from grader.template import TemplateError

    for error in (CalibrationError, ExportError, RubricError, SandboxUnavailableError, SlotError,
                  DuplicateStudentError, TemplateError):
        assert issubclass(error, GraderError), error


def test_an_installed_grader_grades_in_any_folder_with_its_shipped_rubric_and_says_first_where_results_go(
        tmp_path: Path) -> None:
    """The project installed as pip builds it (not this checkout on the path), run where there is no rubrics/."""
    import subprocess
    import sys

    from conftest import child_env

    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", str(ROOT), "-w", str(tmp_path / "dist")], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").iterdir()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=300)
    work = tmp_path / "anywhere"
    (work / "submissions" / "ann").mkdir(parents=True)
    (work / "submissions" / "ann" / "tuning.py").write_text("print('no search here')\n")
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", "submissions/", "--time-limit", "30"], cwd=work,
                          env=child_env(tmp_path / "home", PYTHONPATH=str(site)), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert lines[0] == f"results go to {work / 'grading-out'} (rubric {site / 'grader' / 'rubrics' / 'quick.json'})"
    assert lines[1].startswith("held-out data: mnist test split from ")
    assert json.loads((work / "grading-out" / "ann" / "result.json").read_text())["student_id"] == "ann"


def test_check_uses_the_repositorys_own_rubric_copy_else_the_shipped_quick(tmp_path: Path) -> None:
    from grader.rubric import SHIPPED

    assert cli._repo_rubric(tmp_path, None) == SHIPPED / "quick.json"
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "quick.json").write_text("{}")
    assert cli._repo_rubric(tmp_path, None) == tmp_path / "rubrics" / "quick.json"
    assert cli._repo_rubric(tmp_path, "full") == SHIPPED / "full.json"
