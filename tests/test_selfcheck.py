"""`grader check` and `grader classroom`: one repository graded with the quick rubric's visible checks."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, child_env

from grader.selfcheck import CheckDirError, check_dir

FIXTURE = ROOT / "tests" / "fixtures" / "submissions" / "good_script"


def run_cli(*args: str, cwd: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], cwd=cwd, env=child_env(home, **env),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_check_prints_the_visible_checks_with_what_to_do_and_fails_until_all_pass(tmp_path: Path) -> None:
    repo = tmp_path / "my-repo"
    shutil.copytree(FIXTURE, repo)
    proc = run_cli("check", "--rubric", str(ROOT / "grader" / "rubrics" / "quick.json"), cwd=repo, home=tmp_path / "home")
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert "my-repo: completed (ran to the end)" in out
    assert "Every combination of the grid was trained" in out and "search_spaces.json" in out
    assert "on the visible checks" in out and "feedback:" in out
    [isolation] = [line for line in proc.stdout.splitlines() if line.startswith("isolation: ")]
    assert isolation.startswith(("isolation: bwrap (", "isolation: rlimits (bubblewrap not used: "))
    assert f"grader-check-{os.getuid()}" in out


def decode(value: str) -> dict:
    return json.loads(base64.b64decode(value))


@pytest.mark.slow
def test_classroom_sets_the_reporters_outputs_and_the_step_summary(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE, repo)
    github_output, summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    proc = run_cli("classroom", "--rubric", str(ROOT / "grader" / "rubrics" / "quick.json"), cwd=repo,
                   home=tmp_path / "home", GITHUB_OUTPUT=str(github_output), GITHUB_STEP_SUMMARY=str(summary))
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
    assert list(outputs) == ["result", "earned", "missed"]
    payload, earned, missed = (decode(outputs[name]) for name in ("result", "earned", "missed"))
    assert payload["version"] == 1 and payload["status"] == "fail" and missed["status"] == "fail"
    rubric = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    visible = [c for c in rubric["checks"] if c.get("visibility", "visible") == "visible"]
    assert [t["name"] for t in payload["tests"]] == [c["title"] for c in visible]
    assert [t["line_no"] for t in payload["tests"]] == [i for i, c in enumerate(rubric["checks"], 1) if c in visible]
    assert payload["max_score"] == pytest.approx(sum(c["points"] for c in visible))
    points = sum(t["score"] for t in payload["tests"])
    assert 0 < points < payload["max_score"]
    assert all(t["status"] == "pass" for t in earned["tests"]) and earned["max_score"] == pytest.approx(points)
    assert all(t["status"] != "pass" and t["score"] == 0 for t in missed["tests"])
    assert earned["max_score"] + missed["max_score"] == pytest.approx(payload["max_score"])
    lines = summary.read_text().splitlines()
    assert lines[0] == "### Autograding: repo" and lines[4] == "| check | points | status | what to do |"
    assert [line.split(" | ")[0].removeprefix("| ") for line in lines[6:6 + len(visible)]] == [
        c["title"] for c in visible]
    assert lines[-3] == f"**Total:** {points:g}/{payload['max_score']:g} points on the visible checks"
    assert lines[-1].startswith("isolation: ")


def test_check_dir_is_per_user_and_private(tmp_path: Path) -> None:
    folder = check_dir(tmp_path)
    assert folder == tmp_path / f"grader-check-{os.getuid()}"
    private = 0o711 if os.getuid() == 0 else 0o700  # root's: the fallback sandbox's uid 65534 passes, lists nothing
    assert folder.is_dir() and not folder.is_symlink() and (folder.stat().st_mode & 0o777) == private
    folder.chmod(0o777)
    assert check_dir(tmp_path) == folder and (folder.stat().st_mode & 0o777) == private


def test_check_dir_refuses_a_planted_link_or_file(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / f"grader-check-{os.getuid()}")
    with pytest.raises(CheckDirError) as err:
        check_dir(tmp_path)
    assert str(err.value) == (f"'{tmp_path}/grader-check-{os.getuid()}' is not a directory (a link or a file is "
                              f"there): remove it")
    assert list(elsewhere.iterdir()) == []
    other = tmp_path / "other"
    other.mkdir()
    (other / f"grader-check-{os.getuid()}").write_text("x")
    with pytest.raises(CheckDirError):
        check_dir(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another user")
def test_check_dir_refuses_a_folder_another_user_owns(tmp_path: Path) -> None:
    folder = tmp_path / f"grader-check-{os.getuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(CheckDirError) as err:
        check_dir(tmp_path)
    assert str(err.value) == f"'{folder}' belongs to uid 65534, not to you (uid {os.getuid()}): remove it"
