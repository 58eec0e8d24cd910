"""grader verify: each student's claimed best configurations re-trained by the fast trainer (each distinct one once,
cached across runs), the verified_training check judged on them, and result.json, feedback and gradebook rewritten."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from grader.checks import run_check, run_checks
from grader.cli import main
from grader.evidence import Evidence, Trial, gather
from grader.fasttrain import Config
from grader.result import read_result, write_result
from grader.rubric import Check, load_rubric
from grader.verify import (
    VERIFICATION_FILE,
    Verification,
    VerifiedSearch,
    cache_dir,
    claims_of,
    config_id,
    read_verification,
)
from test_export import make_result
from test_validate import jsonl, trial

CHECK = {"id": "verified", "kind": "verified_training", "points": 10, "title": "Your claims, re-trained",
         "params": {"searches": ["grid", "random"], "tolerance": 0.03}}
SMALL = {"learning_rate": 0.01, "batch_size": 64, "epochs": 1, "filters": 8, "kernel_size": 3, "dropout": 0.0,
         "l1": 0.0, "l2": 0.0}
DIVERGES = {**SMALL, "learning_rate": 0.5}  # Adam at 0.5 does not learn MNIST: about 0.1 val accuracy


def write_rubric(path: Path) -> Path:
    path.write_text(json.dumps({"rubric_version": 1, "assignment": "a", "dataset": "mnist", "profile": "quick",
                                "time_limit_s": 60, "entry_points": ["tuning.py"], "checks": [CHECK]}))
    return path


def student(out: Path, rubric: Any, sid: str, claims: dict[str, tuple[dict[str, Any], float]]) -> None:
    """A graded student as grade leaves one: the grader's copy of trials.jsonl and a result judged on it."""
    outputs = out / sid / "collected" / "outputs"
    outputs.mkdir(parents=True)
    records = [trial(search, "00", hyperparameters=hps, val_accuracy=acc) for search, (hps, acc) in claims.items()]
    (outputs / "trials.jsonl").write_text(jsonl(records))
    checks = run_checks(rubric, gather(outputs))
    write_result(out / sid / "result.json", replace(make_result(sid, check_list=checks), content_hash=digest(sid)))


def digest(sid: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(sid.encode()).hexdigest()


def verified(out: Path, sid: str) -> Any:
    return next(c for c in read_result(out / sid / "result.json").checks if c.id == "verified")


# ---------------------------------------------------------------------------------------------
# the judge, on hand-made verifications


def ev_with(claimed: float, retrained: float | None, *, problem: str | None = None, search: str = "grid") -> Evidence:
    t = Trial(search, "03", {"learning_rate": 0.01}, "COMPLETED", claimed, 0.2, 1.0, "trials.jsonl", 4)
    ev = Evidence(output_dir=Path("out"), trials=(t,))
    claim = claims_of(ev, [search])[0]
    verification = Verification(1, None, "mnist", "quick", "fasttrain-1", (VerifiedSearch(
        search, claim.trial, {"learning_rate": 0.01}, claimed, retrained, 2.0, problem),))
    return replace(ev, verification=verification)


def judged(ev: Evidence, **params: Any) -> Any:
    return run_check(Check("verified", "verified_training", 10.0, "Verified", "visible",
                           {"searches": ["grid"], **params}), ev)


def test_a_claim_within_tolerance_of_the_retrained_figure_earns_full_marks() -> None:
    result = judged(ev_with(0.95, 0.94))
    assert (result.points, result.suspect) == (10.0, False)
    assert result.message == ("grid: you claimed 0.9500 val accuracy (trial 03, trials.jsonl line 4: learning_rate "
                              "0.01); re-trained here with the same configuration and data: 0.9400")


def test_a_claim_far_above_the_retrained_figure_earns_nothing_and_is_suspect() -> None:
    result = judged(ev_with(0.99, 0.11))
    assert (result.points, result.suspect, result.status) == (0.0, True, "fail")
    assert result.message == ("grid: you claimed 0.9900 val accuracy (trial 03, trials.jsonl line 4: learning_rate "
                              "0.01); re-trained here with the same configuration and data: 0.1100, 0.8800 below your "
                              "claim (tolerance 0.03) — report the val accuracy your trials really reached")


def test_a_claim_just_beyond_tolerance_earns_half_without_suspicion() -> None:
    result = judged(ev_with(0.95, 0.91))
    assert (result.points, result.suspect) == (5.0, False)


def test_a_claim_below_what_the_configuration_reaches_is_not_held_against_the_student() -> None:
    assert judged(ev_with(0.80, 0.95)).points == 10.0


def test_before_verify_ran_the_check_is_skipped_with_what_the_instructor_runs() -> None:
    result = judged(Evidence(output_dir=Path("out")))
    assert (result.status, result.points) == ("skipped", 0.0)
    assert result.message == ("not verified yet: the instructor re-trains the claimed configurations with grader "
                              "verify OUT --retrain")


def test_a_verification_of_another_claim_counts_as_not_verified_yet() -> None:
    ev = ev_with(0.95, 0.94)
    newer = replace(ev, trials=(replace(ev.trials[0], val_accuracy=0.97),))  # regraded: a different best claim
    result = judged(newer)
    assert (result.status, result.message) == ("skipped", "not verified yet: the instructor re-trains the claimed "
                                                           "configurations with grader verify OUT --retrain")


def test_a_claim_that_cannot_be_retrained_says_why_and_earns_nothing() -> None:
    t = Trial("grid", "07", {**SMALL, "epochs": 5000}, "COMPLETED", 0.99, 0.2, 1.0, "trials.jsonl", 8)
    claim = claims_of(Evidence(output_dir=Path("out"), trials=(t,)), ["grid"])[0]
    assert (claim.config, claim.problem) == (None, "epochs 5000 is more than the 50 verify re-trains")
    hostile = Trial("grid", "08", {**SMALL, "filters": "\x1b[2Jmany"}, "COMPLETED", 0.99, 0.2, 1.0, "trials.jsonl",
                    9)
    claim = claims_of(Evidence(output_dir=Path("out"), trials=(hostile,)), ["grid"])[0]
    assert claim.problem == "filters is not a number the baseline CNN takes"
    assert "filters" not in claim.hyperparameters


def test_configurations_equal_to_nine_digits_share_one_cache_entry() -> None:
    assert config_id(Config(**{**SMALL, "learning_rate": 0.1 + 0.2})) == config_id(Config(**{**SMALL,
                                                                                           "learning_rate": 0.3}))
    assert config_id(Config(**SMALL)) != config_id(Config(**DIVERGES))


# ---------------------------------------------------------------------------------------------
# grader verify end to end on real MNIST (the quick profile's split)


@pytest.fixture
def graded_class(tmp_path: Path) -> tuple[Path, Path]:
    out, rubric_path = tmp_path / "out", write_rubric(tmp_path / "rubric.json")
    rubric = load_rubric(rubric_path)
    student(out, rubric, "honest", {"grid": (SMALL, 0.90), "random": (SMALL, 0.88)})
    student(out, rubric, "copycat", {"grid": (SMALL, 0.90), "random": (SMALL, 0.91)})  # the same configuration
    student(out, rubric, "inflated", {"grid": (SMALL, 0.90), "random": (DIVERGES, 0.97)})
    return out, rubric_path


def test_verify_retrains_each_distinct_claim_once_and_judges_every_student(graded_class: tuple[Path, Path],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, rubric = graded_class
    assert verified(out, "honest").status == "skipped"
    assert main(["verify", str(out), "--rubric", str(rubric)]) == 0
    assert capsys.readouterr().out == ("6 claim(s), 2 distinct configuration(s): 0 cached, 0 re-trained now, 2 not "
                                       "re-trained yet (run with --retrain); 0 result(s) changed\n")
    assert main(["verify", str(out), "--rubric", str(rubric), "--retrain", "--jobs", "2"]) == 0
    assert capsys.readouterr().out == ("6 claim(s), 2 distinct configuration(s): 0 cached, 2 re-trained now, 0 not "
                                       "re-trained yet; 3 result(s) changed\n")
    assert len(list(cache_dir(out, "mnist", "quick").glob("*.json"))) == 2
    honest, inflated = verified(out, "honest"), verified(out, "inflated")
    assert (honest.status, honest.points, honest.suspect) == ("pass", 10.0, False), honest.message
    assert (inflated.points, inflated.suspect) == (5.0, True)
    assert "random: you claimed 0.9700 val accuracy" in inflated.message
    assert " below your claim (tolerance 0.03) — report the val accuracy your trials really reached" in inflated.message
    feedback = (out / "inflated" / "feedback.md").read_text()
    assert "re-trained here with the same configuration and data" in feedback
    grades = (out / "grades.csv").read_text().splitlines()
    assert grades[0].split(",")[:5] == ["student_id", "status", "score_earned", "score_possible", "suspect"]
    assert [row.split(",")[4] for row in grades[1:]] == ["False", "False", "True"]  # copycat, honest, inflated
    # the cache survives: verifying again trains nothing and changes nothing
    assert main(["verify", str(out), "--rubric", str(rubric), "--retrain"]) == 0
    assert capsys.readouterr().out == ("6 claim(s), 2 distinct configuration(s): 2 cached, 0 re-trained now, 0 not "
                                       "re-trained yet; 0 result(s) changed\n")


def test_a_regrade_of_unchanged_content_keeps_the_verification(graded_class: tuple[Path, Path]) -> None:
    out, rubric_path = graded_class
    assert main(["verify", str(out), "--rubric", str(rubric_path), "--retrain"]) == 0
    rubric = load_rubric(rubric_path)
    path = out / "honest" / VERIFICATION_FILE
    assert read_verification(path, digest("honest"), rubric) is not None
    assert read_verification(path, digest("changed"), rubric) is None  # new content: verify again
    path.write_text('{"schema_version": 1, "searches": "\x1b[2J"}')
    assert read_verification(path, digest("honest"), rubric) is None  # not what verify writes: not believed


def test_verify_without_a_verified_training_check_says_what_to_add(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    assert main(["verify", str(tmp_path / "out"), "--rubric", "quick"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "has no verified_training check: add one to verify claims (docs/rubrics.md, verified_training)")
