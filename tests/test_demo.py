"""The demo's example class graded with rubrics/quick.json: the scores a teacher expects, in the expected order."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from conftest import ROOT
from grader import grade
from grader.result import Result, read_result

sys.path.insert(0, str(ROOT / "examples"))
import build as examples  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    base = tmp_path_factory.mktemp("demo")
    subs = examples.build(base / "submissions")
    grade.main(submissions=[subs], rubric=ROOT / "grader" / "rubrics" / "quick.json", out=base / "out", gpus="none", jobs=2,
               console=Console(file=io.StringIO()))
    return {name: read_result(base / "out" / name / "result.json") for name in ("reference", "notebook", "template",
                                                                                 "partial")}


def test_the_reference_as_a_script_and_as_a_notebook_earns_full_marks(demo: dict[str, Result]) -> None:
    for name in ("reference", "notebook"):
        result = demo[name]
        assert result.status == "completed", result.message
        failing = [(c.id, c.message) for c in result.checks if c.status != "pass"]
        assert failing == [] and result.score.earned == result.score.possible == 100


def test_the_untouched_template_scores_zero_with_an_action_for_every_check(demo: dict[str, Result]) -> None:
    result = demo["template"]
    assert result.score.earned == 0
    for check in result.checks:
        assert check.status == "fail", (check.id, check.message)
        assert " — " in check.message, f"{check.id} gives no action: {check.message}"


def test_the_partial_submission_scores_in_between_and_is_told_what_is_missing(demo: dict[str, Result]) -> None:
    partial = {c.id: c for c in demo["partial"].checks}
    assert 0 < demo["partial"].score.earned < demo["reference"].score.earned
    assert partial["grid-coverage"].status == "pass"
    assert partial["random-coverage"].status == "fail" and "random" in partial["random-coverage"].message
    assert partial["answer-better-search"].message == ("better_search is not answered in answers.yaml — "
                                                        "answer better_search from your own trials")
