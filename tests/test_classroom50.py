"""Tests for grader.classroom50: result.json against the classroom50/result/v1 contract, release-body.md, autograder.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import ROOT, child_env
from test_export import make_result

from grader.classroom50 import (
    Classroom50Error,
    autograder_script,
    classroom50_result,
    integer_points,
    release_body,
    submission_from_env,
    write_autograder,
)
from grader.result import CheckResult
from grader.wheel import build_wheel

ENV = {
    "CLASSROOM": "cs-ml",
    "ASSIGNMENT": "cnn-tuning",
    "USERNAME": "alice",
    "SUBMISSION_TAG": "submit/2026-06-01T14-32-05Z-a1b2c3d",
    "COMMIT_URL": "https://github.com/org/cs-ml-cnn-tuning-alice/commit/a1b2c3d",
    "RELEASE_URL": "https://github.com/org/cs-ml-cnn-tuning-alice/releases/tag/submit%2F2026",
    "REVIEW_URL": "https://github.com/org/cs-ml-cnn-tuning-alice/compare/base...a1b2c3d",
}
NOW = datetime(2026, 6, 1, 16, 33, 11, 123456, tzinfo=timezone(timedelta(hours=2)))
UTC_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
RUBRIC = ROOT / "grader" / "rubrics" / "quick.json"
FIXTURE = ROOT / "tests" / "fixtures" / "submissions" / "good_script"


def assert_contract(data: dict) -> None:
    """What the Classroom 50 runner's validator checks of an autograder's result.json (owner is stamped by it)."""
    assert data["schema"] == "classroom50/result/v1"
    for field in ("classroom", "assignment", "submission", "commit", "release", "review", "datetime"):
        assert isinstance(data[field], str) and data[field]
    assert UTC_DATETIME.fullmatch(data["datetime"])
    for field in ("score", "max-score"):
        assert type(data[field]) is int and data[field] >= 0
    assert data["score"] <= data["max-score"]
    assert sum(t["score"] for t in data["tests"]) == data["score"]
    assert sum(t["max-score"] for t in data["tests"]) == data["max-score"]
    for test in data["tests"]:
        assert set(test) == {"test-name", "passed", "score", "max-score"}
        assert isinstance(test["test-name"], str) and test["test-name"]
        assert type(test["passed"]) is bool
        assert type(test["score"]) is int and type(test["max-score"]) is int
        assert 0 <= test["score"] <= test["max-score"]


def test_result_json_field_by_field():
    data = classroom50_result(make_result(), submission_from_env(ENV), now=NOW)
    assert data == {
        "schema": "classroom50/result/v1",
        "classroom": "cs-ml",
        "assignment": "cnn-tuning",
        "owner": "alice",
        "submission": "submit/2026-06-01T14-32-05Z-a1b2c3d",
        "commit": "https://github.com/org/cs-ml-cnn-tuning-alice/commit/a1b2c3d",
        "release": "https://github.com/org/cs-ml-cnn-tuning-alice/releases/tag/submit%2F2026",
        "review": "https://github.com/org/cs-ml-cnn-tuning-alice/compare/base...a1b2c3d",
        "datetime": "2026-06-01T14:33:11Z",
        "score": 4,
        "max-score": 6,
        "tests": [
            {"test-name": "Artifacts present", "passed": True, "score": 2, "max-score": 2},
            {"test-name": "Random coverage", "passed": False, "score": 2, "max-score": 4},
        ],
    }
    assert_contract(data)


def test_hidden_and_after_due_checks_are_left_out_of_tests_and_totals():
    data = classroom50_result(make_result(), submission_from_env(ENV), now=NOW)
    assert [t["test-name"] for t in data["tests"]] == ["Artifacts present", "Random coverage"]
    assert "Secret answers" not in json.dumps(data) and "Accuracy tier" not in json.dumps(data)


def test_fractional_points_become_integers_that_add_up_and_never_pass_their_maximum():
    awkward = tuple(CheckResult(f"c{i}", f"C{i}", "k", points, maximum, "partial", "visible", "m")
                    for i, (points, maximum) in enumerate([(1 / 3, 1.5), (2 / 3, 1.5), (1.5, 1.5), (0.49, 0.5),
                                                           (2.5, 2.5), (0.0, 0.5)]))
    data = classroom50_result(make_result(check_list=awkward), submission_from_env(ENV), now=NOW)
    assert_contract(data)
    assert data["max-score"] == 8  # 8.0 possible
    assert data["score"] == 5  # 5.4833 earned
    assert integer_points([0.5, 0.5, 0.5]) == [1, 1, 0]  # 1.5 rounds to 2, the earlier ones first
    assert integer_points([]) == []


def test_the_datetime_is_utc_to_the_second_even_from_a_naive_time():
    naive = classroom50_result(make_result(), submission_from_env(ENV), now=datetime(2026, 6, 1, 9, 5, 7, 999))
    assert naive["datetime"] == "2026-06-01T09:05:07Z"


def test_review_falls_back_to_the_commit_and_owner_is_written_only_when_the_runner_names_one():
    env = {k: v for k, v in ENV.items() if k not in ("REVIEW_URL", "USERNAME")}
    data = classroom50_result(make_result(), submission_from_env(env), now=NOW)
    assert data["review"] == ENV["COMMIT_URL"] and "owner" not in data
    assert submission_from_env({**env, "REVIEW_URL": ""}).review == ENV["COMMIT_URL"]


@pytest.mark.parametrize("missing", ["CLASSROOM", "ASSIGNMENT", "SUBMISSION_TAG", "COMMIT_URL", "RELEASE_URL"])
def test_a_missing_runner_variable_is_one_line_naming_it(missing: str):
    with pytest.raises(Classroom50Error) as err:
        submission_from_env({**{k: v for k, v in ENV.items() if k != missing}})
    assert str(err.value) == (f"${missing} is not set: run this inside the Classroom 50 runner, which sets "
                              f"CLASSROOM, ASSIGNMENT, SUBMISSION_TAG, COMMIT_URL, RELEASE_URL")


HOSTILE = "x | y ![i](http://evil/t.png) <img src=x onerror=alert(1)> [go](javascript:alert(1))\n## heading\x1b[2J & z"


def test_release_body_is_the_score_table_with_every_student_text_inert():
    hostile = (CheckResult("artifacts", "Artifacts present", "artifacts", 1.0, 2.0, "partial", "visible", HOSTILE),
               CheckResult("secret", "Secret", "answers", 0.0, 3.0, "fail", "hidden", "hidden message"))
    result = replace(make_result(check_list=hostile), message="crashed <script>alert(1)</script>")
    data = classroom50_result(result, submission_from_env(ENV), now=NOW)
    assert release_body(result, data).splitlines() == [
        "### Autograding: 1/2",
        "",
        "**Run:** completed: crashed \\<script\\>alert(1)\\</script\\>",
        "",
        "| check | points | status | what to do |",
        "| --- | --- | --- | --- |",
        ("| Artifacts present | 1/2 | partial | x \\| y !\\[i\\](http://evil/t.png) \\<img src=x onerror=alert(1)\\> "
         "\\[go\\](javascript:alert(1)) ## heading &amp; z |"),
        "",
        "Exact points: 1/2, rounded above to whole points.",
        "",
        "isolation: not recorded (the submission did not run)",
    ]


def test_the_autograder_script_is_small_stdlib_python_naming_its_rubric(tmp_path: Path):
    text = autograder_script("quick.json")
    compile(text, "autograder.py", "exec")
    imports = {line.split()[1] for line in text.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"importlib", "os", "subprocess", "sys", "pathlib"}
    assert 'RUBRIC = HERE / \'quick.json\'' in text
    with pytest.raises(Classroom50Error) as err:
        autograder_script("../quick.json")
    assert str(err.value) == "the rubric's name '../quick.json' must be a plain file name"
    bundle = tmp_path / "bundle"
    written = write_autograder(bundle, RUBRIC)
    wheel = build_wheel(ROOT)
    assert written == [bundle / "autograder.py", bundle / "quick.json", bundle / "wheels" / wheel.filename,
                       bundle / "requirements.txt"]
    assert written[1].read_bytes() == RUBRIC.read_bytes()
    assert written[2].read_bytes() == wheel.content
    assert written[3].read_text() == f"./wheels/{wheel.filename}\n"
    url = "cnn-tuning-grader @ git+https://git.example.edu/course/grader.git@v1"
    assert write_autograder(tmp_path / "by-url", RUBRIC, grader_requirement=url)[-1].read_text() == url + "\n"
    assert not (tmp_path / "by-url" / "wheels").exists()


def installed_bundle(bundle: Path) -> Path:
    """The bundle as on a runner whose image already has the grader: no requirements.txt to install (here it would
    install the wheel over this checkout's own install)."""
    write_autograder(bundle, RUBRIC)
    (bundle / "requirements.txt").unlink()
    shutil.rmtree(bundle / "wheels")
    return bundle


def run_autograder(bundle: Path, checkout: Path, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(bundle / "autograder.py")], cwd=checkout,
                          env={**child_env(home), **env}, capture_output=True, text=True, timeout=900,
                          check=False)


def test_the_autograder_without_the_runners_variables_exits_non_zero_with_one_line(tmp_path: Path):
    installed_bundle(tmp_path / "bundle")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    env = {k: v for k, v in child_env(tmp_path / "home").items() if k not in ENV}
    proc = subprocess.run([sys.executable, str(tmp_path / "bundle" / "autograder.py")], cwd=checkout, env=env,
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == ("autograder: $CLASSROOM is not set: run this inside the Classroom 50 runner, which sets "
                           "CLASSROOM, ASSIGNMENT, SUBMISSION_TAG, COMMIT_URL, RELEASE_URL\n")
    assert list(checkout.iterdir()) == []


@pytest.mark.slow
def test_the_autograder_grades_the_checkout_into_result_json_and_release_body(tmp_path: Path):
    bundle = installed_bundle(tmp_path / "bundle")
    checkout = tmp_path / "cs-ml-cnn-tuning-alice"
    shutil.copytree(FIXTURE, checkout)
    planted = tmp_path / "elsewhere.json"
    planted.write_text('{"score": 100}', "utf-8")
    os.symlink(planted, checkout / "result.json")  # the student's own result.json, a link: replaced, never followed
    proc = run_autograder(bundle, checkout, tmp_path / "home", ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planted.read_text("utf-8") == '{"score": 100}'
    assert not (checkout / "result.json").is_symlink()
    data = json.loads((checkout / "result.json").read_text("utf-8"))
    assert_contract(data)
    assert {k: data[k] for k in ("classroom", "assignment", "owner", "submission", "commit", "release", "review")} == {
        "classroom": "cs-ml", "assignment": "cnn-tuning", "owner": "alice", "submission": ENV["SUBMISSION_TAG"],
        "commit": ENV["COMMIT_URL"], "release": ENV["RELEASE_URL"], "review": ENV["REVIEW_URL"]}
    rubric = json.loads(RUBRIC.read_text("utf-8"))
    visible = [c for c in rubric["checks"] if c.get("visibility", "visible") == "visible"]
    assert [t["test-name"] for t in data["tests"]] == [c["title"] for c in visible]
    assert 0 < data["score"] < data["max-score"]  # the fixture earns some points, not all: still exit 0
    body = (checkout / "release-body.md").read_text("utf-8")
    assert body.startswith(f"### Autograding: {data['score']}/{data['max-score']}\n")
    assert f"classroom50: {data['score']}/{data['max-score']} points (completed)" in proc.stdout
