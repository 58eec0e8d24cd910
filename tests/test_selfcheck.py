"""`grader check` and `grader classroom`: one repository graded with the quick rubric's visible checks."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, child_env

pytestmark = pytest.mark.slow
FIXTURE = ROOT / "tests" / "fixtures" / "submissions" / "good_script"


def run_cli(*args: str, cwd: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], cwd=cwd, env=child_env(home, **env),
                          capture_output=True, text=True, timeout=600)


def test_check_prints_the_visible_checks_with_what_to_do_and_fails_until_all_pass(tmp_path: Path) -> None:
    repo = tmp_path / "my-repo"
    shutil.copytree(FIXTURE, repo)
    proc = run_cli("check", "--rubric", str(ROOT / "rubrics" / "quick.json"), cwd=repo, home=tmp_path / "home")
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert "my-repo: completed (ran to the end)" in out
    assert "Every combination of the grid was trained" in out and "search_spaces.json" in out
    assert "on the visible checks" in out and "feedback:" in out


def test_classroom_writes_a_result_output_whose_scores_sum_to_the_points(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE, repo)
    github_output = tmp_path / "github_output"
    proc = run_cli("classroom", "--rubric", str(ROOT / "rubrics" / "quick.json"), cwd=repo, home=tmp_path / "home",
                   GITHUB_OUTPUT=str(github_output))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = github_output.read_text().strip()
    assert line.startswith("result=")
    payload = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert payload["version"] == 1 and payload["status"] == "fail"
    rubric = json.loads((ROOT / "rubrics" / "quick.json").read_text())
    visible = [c for c in rubric["checks"] if c.get("visibility", "visible") == "visible"]
    assert [t["name"] for t in payload["tests"]] == [c["title"] for c in visible]
    assert payload["max_score"] == pytest.approx(sum(c["points"] for c in visible))
    assert 0 < sum(t["score"] for t in payload["tests"]) < payload["max_score"]
