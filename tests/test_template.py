"""`grader make-template`: stubs from solution markers, the committed template in sync, and its self-checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from grader import template
from grader.cli import main as cli_main
from grader.wheel import build_wheel


def test_a_solution_region_becomes_a_todo_at_its_indentation_named_by_its_hint() -> None:
    source = ("def f(x):\n    \"\"\"Double x.\"\"\"\n    # BEGIN SOLUTION: return twice x\n    y = 2 * x\n"
              "    return y\n    # END SOLUTION\n")
    assert template.stub_python(source, where="t.py") == (
        "def f(x):\n    \"\"\"Double x.\"\"\"\n    raise NotImplementedError(\"TODO(student): return twice x\")\n")


def test_without_a_hint_the_todo_quotes_the_functions_docstring() -> None:
    source = "def g():\n    \"\"\"Build the grid.\n\n    More.\"\"\"\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n"
    assert 'raise NotImplementedError("TODO(student): g: Build the grid")' in template.stub_python(source, where="t.py")


@pytest.mark.parametrize(("source", "message"), [
    ("x = 1\n# BEGIN SOLUTION\ny = 2\n", "t.py:2: '# BEGIN SOLUTION' is never closed by '# END SOLUTION'"),
    ("# END SOLUTION\n", "t.py:1: '# END SOLUTION' without a '# BEGIN SOLUTION' before it"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "t.py:2: '# BEGIN SOLUTION' inside another solution region"),
])
def test_broken_markers_are_refused_with_file_and_line(source: str, message: str) -> None:
    with pytest.raises(template.TemplateError) as err:
        template.stub_python(source, where="t.py")
    assert str(err.value) == message


def test_the_committed_student_template_is_in_sync_with_the_reference() -> None:
    assert template.main(reference=ROOT / "reference", dest=ROOT / "student_template",
                         rubric=ROOT / "grader" / "rubrics" / "quick.json", check=True) == []


def test_check_names_a_stale_file_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "tpl"
    template.main(reference=ROOT / "reference", dest=dest, rubric=ROOT / "grader" / "rubrics" / "quick.json")
    (dest / "tuning.py").write_text("# edited by hand\n")
    (dest / "notes.txt").write_text("extra\n")
    code = cli_main(["make-template", str(ROOT / "reference"), str(dest), "--check"])
    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{dest / 'tuning.py'}: out of date",
        f"{dest / 'notes.txt'}: not generated from the reference (remove it or add it to the reference)",
        f"{dest} is out of date: run `grader make-template`",
    ]


def test_no_instructor_material_reaches_the_template() -> None:
    tpl = ROOT / "student_template"
    texts = {p.relative_to(tpl).as_posix(): p.read_text("utf-8") for p in tpl.rglob("*")
             if p.is_file() and p.suffix != ".whl"}  # the wheel: test_wheel.py
    assert not any("BEGIN SOLUTION" in text or "END SOLUTION" in text for text in texts.values())
    assert "rubrics/full.json" not in texts and not (tpl / "reference").exists()
    rubric = json.loads(texts["rubrics/quick.json"])
    assert "calibration" not in rubric
    assert all(c.get("visibility", "visible") != "hidden" for c in rubric["checks"])
    assert texts["tuning.py"].count("raise NotImplementedError(\"TODO(student): ") == 6
    notebook = json.loads(texts["assignment.ipynb"])
    assert all(c.get("outputs", []) == [] for c in notebook["cells"])


def test_the_starter_repo_installs_the_grader_from_the_wheel_it_ships() -> None:
    tpl = ROOT / "student_template"
    (wheel,) = (tpl / "wheels").iterdir()
    assert wheel.read_bytes() == build_wheel(ROOT).content
    lines = (tpl / "requirements.txt").read_text().splitlines()
    assert f"./wheels/{wheel.name}" in lines and "cnn-tuning-grader" not in lines


def test_a_grader_requirement_replaces_the_wheel(tmp_path: Path) -> None:
    url = "cnn-tuning-grader @ git+https://git.example.edu/course/grader.git@v1"
    template.main(reference=ROOT / "reference", dest=tmp_path / "tpl", grader_requirement=url)
    assert url in (tmp_path / "tpl" / "requirements.txt").read_text().splitlines()
    assert not (tmp_path / "tpl" / "wheels").exists()
    assert template.main(reference=ROOT / "reference", dest=tmp_path / "tpl", grader_requirement=url, check=True) == []


def test_a_starter_requirements_file_without_the_grader_line_is_refused(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(ROOT / "reference", reference, ignore=shutil.ignore_patterns("__pycache__"))
    (reference / "starter" / "requirements.txt").write_text("pytest>=8\n")
    with pytest.raises(template.TemplateError) as err:
        template.main(reference=reference, dest=tmp_path / "tpl")
    assert str(err.value) == (f"{reference / 'starter' / 'requirements.txt'}: needs exactly one line "
                              f"'cnn-tuning-grader' (replaced by how to install the grader)")
