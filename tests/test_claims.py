"""Tests for grader.claims and answer_text's check_claims: numbers and directions read from answers, held against the trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from grader.checks import run_check
from grader.claims import Claim, cited_numbers, direction_claims, find_claims, number_claims, stated_directions
from grader.evidence import Evidence, Trial, gather
from grader.result import CheckResult
from grader.rubric import Check, load_rubric, rubric_problems
from test_evidence import REFERENCE

QUICK = load_rubric(ROOT / "grader" / "rubrics" / "quick.json")
WEEK = load_rubric(ROOT / "grader" / "rubrics" / "week_quick.json")


def trial(search: str, trial_id: str, acc: float, seconds: float, **hps: float) -> Trial:
    return Trial(search, trial_id, {"epochs": 1, **hps}, "COMPLETED", acc, 0.3, seconds, "trials.jsonl", None)


# A grid where a higher learning rate helps (0.933 against 0.846) and a larger batch hurts a little (0.884 against
# 0.895): 30 s of training; a random search of two trials, 7 s; best val accuracies 0.94 and 0.91.
TRIALS = (
    trial("grid", "0", 0.85, 10.0, learning_rate=0.001, batch_size=32),
    trial("grid", "1", 0.842, 6.0, learning_rate=0.001, batch_size=64),
    trial("grid", "2", 0.94, 9.0, learning_rate=0.01, batch_size=32),
    trial("grid", "3", 0.926, 5.0, learning_rate=0.01, batch_size=64),
    trial("random", "0", 0.91, 4.0, learning_rate=0.003, batch_size=32, dropout=0.2),
    trial("random", "1", 0.9, 3.0, learning_rate=0.02, batch_size=64, dropout=0.4),
)
LR_EVIDENCE = "in your trials learning_rate 0.01 averaged 0.933 (2 trials) against 0.846 at 0.001 (2 trials)"
BATCH_EVIDENCE = "in your trials batch_size 64 averaged 0.884 (2 trials) against 0.895 at 32 (2 trials)"


# ---------------------------------------------------------------------------------------------
# Reading numbers


@pytest.mark.parametrize(("text", "numbers"), [
    ("Grid reached 0.947 validation accuracy.", [("0.947", 0.947, "", False)]),
    ("It reached 94.7 % on validation and 95% later.", [("94.7 %", 0.947, "%", False), ("95%", 0.95, "%", False)]),
    ("94.7 percent", [("94.7 percent", 0.947, "%", False)]),
    ("It took 25.5 s, then 30 seconds, then 1,234.5 secs.",
     [("25.5 s", 25.5, "s", False), ("30 seconds", 30.0, "s", False), ("1,234.5 secs", 1234.5, "s", False)]),
    ("Random search spent 0.07x the time and was 2.2 points behind.",
     [("0.07x", 0.07, "x", False), ("2.2 points", 2.2, "points", False)]),
    ("with lr=0.01, a learning rate of 0.003 and dropout 0.2 to 0.5",
     [("0.01", 0.01, "", True), ("0.003", 0.003, "", True), ("0.2", 0.2, "", True), ("0.5", 0.5, "", True)]),
    ("a rate of 1e-3 in 16 trials", [("1e-3", 0.001, "", True), ("16", 16.0, "", False)]),
    ("Conv2D layers, the 3rd trial, Keras 3.1.2, above 0.9 and not 0.97 accuracy", []),
])
def test_numbers_are_read_with_their_units_and_settings_are_told_apart(
        text: str, numbers: list[tuple[str, float, str, bool]]) -> None:
    assert [(n.written, round(n.value, 9), n.unit, n.setting) for n in cited_numbers(text)] == numbers


def test_a_number_is_judged_only_where_it_can_be_a_measurement() -> None:
    text = "It reached 0.95 accuracy. We kept 0.25 of the data."
    accuracy, elsewhere = cited_numbers(text)
    assert (accuracy.about_accuracy, elsewhere.about_accuracy) == (True, False)
    assert [c.supported for c in number_claims(text, TRIALS)] == [False, None]


@pytest.mark.parametrize(("text", "claims"), [
    ("Grid reached 0.94 validation accuracy", [(True, "matches the grid search's best val accuracy 0.9400")]),
    ("Grid reached 0.95 validation accuracy",
     [(False, "no figure in your trials rounds to 0.95 (the closest is the grid search's best val accuracy 0.9400)")]),
    ("accuracy 94 % then 94.0%", [(True, "matches the grid search's best val accuracy 0.9400")] * 2),
    ("a learning rate of 0.01 averaged 0.933 accuracy",  # 0.01 is the setting: neither credit nor cost
     [(None, "a hyperparameter setting, not a measurement"),
      (True, "matches learning_rate 0.01's mean val accuracy 0.933 over 2 trials")]),
    ("its mean accuracy was 0.93 (rounded) or 0.92 (cut)",
     [(True, "matches learning_rate 0.01's mean val accuracy 0.933 over 2 trials"),
      (True, "matches grid trial 3's val accuracy 0.9260")]),
    ("accuracy at 0.003 learning rate", [(None, "a hyperparameter value of your trials, not a measurement")]),
    ("The grid search trained for 30.0 s, roughly 31 s, not 40 s", [
        (True, "matches the grid search's total train seconds 30.0 s"),
        (True, "matches the grid search's total train seconds 30.0 s")]),
    ("The grid search trained for 40 s",
     [(False, "no time in your trials is within 5 % of 40 s (the closest is all your trials' train seconds 37.0 s)")]),
    ("random took 0.23x the grid's time and trailed by 3.0 points; 5.0 points is a guess",
     [(True, "matches the random search's train seconds over the grid search's 0.23x"),
      (True, "matches the grid search's best val accuracy 3.0 points above the random search's"),
      (None, "a gap your trials do not give")]),
    ("in 16 trials of 1 epoch", [(None, "a count or a setting, not a measurement")] * 2),
])
def test_a_cited_number_must_match_the_trials_within_rounding(text: str, claims: list[tuple[bool | None, str]]) -> None:
    assert [(c.supported, c.evidence) for c in number_claims(text, TRIALS)] == claims


def test_a_number_claim_quotes_the_words_around_it() -> None:
    assert number_claims("In the end the grid search reached 0.99 validation accuracy overall.", TRIALS) == (
        Claim("number", "grid search reached 0.99 validation", False,
              "no figure in your trials rounds to 0.99 (the closest is the grid search's best val accuracy 0.9400)"),)


# ---------------------------------------------------------------------------------------------
# Reading directions


@pytest.mark.parametrize(("text", "signs"), [
    ("A higher learning rate lowered accuracy.", [-1]),
    ("Increasing the learning rate clearly improved the validation accuracy.", [1]),
    ("A smaller learning rate led to slightly lower accuracy.", [1]),
    ("Larger learning rates gave worse accuracy.", [-1]),
    ("We saw lower accuracy with a higher learning rate.", [-1]),
    ("Accuracy dropped as the learning rate increased.", [-1]),
    ("Validation accuracy improved with a larger lr.", [1]),
    ("As the learning-rate increased, the accuracy fell.", [-1]),
    ("The higher the learning rate, the better the accuracy.", [1]),
    ("A higher learning rate lowered accuracy. A LOWER LEARNING RATE REDUCED ACCURACY.", [-1, 1]),
    # negations and hedges: no claim rather than a wrong one
    ("A higher learning rate did not lower accuracy.", []),
    ("A higher learning rate didn't improve accuracy.", []),
    ("It is not true that a higher learning rate hurt accuracy.", []),
    ("A higher learning rate might improve accuracy.", []),
    ("I expected that a higher learning rate would raise accuracy.", []),
    ("Accuracy never dropped as the learning rate increased.", []),
    # contrasts, another hyperparameter, no accuracy: no claim
    ("A higher learning rate trained faster but lowered accuracy.", []),
    ("A higher learning rate with a larger batch size lowered accuracy.", []),
    ("A higher learning rate was better.", []),
    ("Higher accuracy than with a higher learning rate.", []),
    ("The learning rate mattered most.", []),
])
def test_a_small_grammar_reads_the_direction_stated_for_the_learning_rate(text: str, signs: list[int]) -> None:
    assert [s.sign for s in stated_directions(text, "learning_rate")] == signs


def test_the_direction_read_is_the_one_for_the_hyperparameter_asked_about() -> None:
    text = "A larger batch size lowered accuracy, and a smaller batch size gave higher accuracy."
    assert [s.sign for s in stated_directions(text, "batch_size")] == [-1, -1]
    assert stated_directions(text, "learning_rate") == ()


@pytest.mark.parametrize(("text", "hp", "margin", "supported", "evidence"), [
    ("A higher learning rate lowered accuracy.", "learning_rate", 0.005, False, LR_EVIDENCE),
    ("A higher learning rate raised accuracy.", "learning_rate", 0.005, True, LR_EVIDENCE),
    ("A larger batch size lowered accuracy.", "batch_size", 0.005, True, BATCH_EVIDENCE),
    ("A larger batch size improved accuracy.", "batch_size", 0.005, False, BATCH_EVIDENCE),
    ("A larger batch size improved accuracy.", "batch_size", 0.02, True, BATCH_EVIDENCE),  # 1.1 points: either way
    ("More dropout lowered accuracy.", "dropout", 0.005, None, "dropout did not vary across your completed trials"),
])
def test_a_stated_direction_is_held_against_the_sign_of_the_effect_in_the_trials(
        text: str, hp: str, margin: float, supported: bool | None, evidence: str) -> None:
    trials = TRIALS[:4] if hp == "dropout" else TRIALS  # the grid trials leave dropout alone
    assert direction_claims(text, trials, hp, margin) == (Claim("direction", text.rstrip("."), supported, evidence),)


# ---------------------------------------------------------------------------------------------
# Hostile answers


RLO = "\u202e"


@pytest.mark.parametrize("text", [
    "\x1b[31m0.99\x1b[0m accuracy; a higher learning rate \x1b[2Jlowered accuracy",
    f"a higher learning rate lowered {RLO}accuracy 0.99",
    "accuracy " + "9" * 5000 + " then 0.95",
    "7" * 100_000,
    "0.5 " * 30_000,
    "accuracy 0." + "1" * 5000,
    "1e999 and 1e-999 accuracy 9" * 100,
    "a higher learning rate " * 5000 + "lowered accuracy",
])
def test_hostile_answers_never_raise_and_are_quoted_escaped(text: str) -> None:
    claims = find_claims(text, TRIALS, hyperparameter="learning_rate")
    assert len([c for c in claims if c.kind == "number"]) <= 50
    for claim in claims:
        assert len(claim.text) <= 80 and claim.text.isprintable() and claim.evidence.isprintable()
        assert "\x1b" not in claim.text and RLO not in claim.text


def test_a_5000_digit_number_is_skipped_and_the_numbers_around_it_are_read() -> None:
    assert [(c.supported, c.evidence) for c in number_claims("accuracy " + "9" * 5000 + " then 0.94", TRIALS)] == [
        (True, "matches the grid search's best val accuracy 0.9400")]


def test_a_quoted_snippet_escapes_what_the_student_wrote() -> None:
    assert verdict(judged(f"A higher learning rate reached {RLO}0.99 accuracy\x1b[2J here")) == (
        5.0, "partial", 'learning_rate_effect: you wrote "learning rate reached \\u202e0.99 accuracy\\x1b[2J", but no '
                        "figure in your trials rounds to 0.99 (the closest is the grid search's best val accuracy "
                        "0.9400) — make every number and direction agree with your own trials")


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.sampled_from(list("0123456789.,% sx-eE\u202e\x1bab") + [
    " accuracy ", " learning rate ", " higher ", " lowered ", " not ", " s ", " points "]), max_size=200).map("".join))
def test_no_answer_makes_the_claims_raise(text: str) -> None:
    for claim in find_claims(text, TRIALS, hyperparameter="learning_rate"):
        assert claim.kind in ("number", "direction") and len(claim.text) <= 80 and claim.text.isprintable()


# ---------------------------------------------------------------------------------------------
# The answer_text judge with check_claims


LR_TEXT = {"key": "learning_rate_effect", "min_words": 5, "concepts": [["learning rate", "lr"], ["accuracy"]],
           "require_number": True, "check_claims": True}


def judged(text: Any, params: dict[str, Any] = LR_TEXT, trials: tuple[Trial, ...] = TRIALS) -> CheckResult:
    ev = Evidence(output_dir=Path("out"), trials=trials, answers={params["key"]: text})
    return run_check(Check("c", "answer_text", 10.0, "a check", "visible", params), ev)


def verdict(result: CheckResult) -> tuple[float, str, str]:
    return result.points, result.status, result.message


def test_an_answer_whose_numbers_and_direction_contradict_its_trials_loses_the_claims_half() -> None:
    assert verdict(judged("A higher learning rate lowered accuracy, to 0.80 from 0.97.")) == (
        5.0, "partial",
        'learning_rate_effect: you wrote "lowered accuracy, to 0.80 from", but no figure in your trials rounds to 0.80 '
        "(the closest is grid trial 1's val accuracy 0.8420); you wrote \"to 0.80 from 0.97\", but no figure in your "
        "trials rounds to 0.97 (the closest is the grid search's best val accuracy 0.9400); you wrote \"A higher "
        f'learning rate lowered accuracy", but {LR_EVIDENCE} — make every number and direction agree with your own '
        "trials")


def test_a_contradicted_claim_costs_its_share_only() -> None:
    assert verdict(judged("A higher learning rate raised accuracy to 0.933, and the grid best was 0.97.")) == (
        8.33, "partial",
        'learning_rate_effect: you wrote "grid best was 0.97", but no figure in your trials rounds to 0.97 (the '
        "closest is the grid search's best val accuracy 0.9400) — make every number and direction agree with your own "
        "trials")


def test_an_answer_that_agrees_with_its_trials_earns_full_marks() -> None:
    assert verdict(judged("A higher learning rate raised accuracy: 0.933 at 0.01 against 0.846 at 0.001.")) == (
        10.0, "pass", "learning_rate_effect: 13 words, names every required concept, quotes numbers; 2 numbers and 1 "
                      "direction agree with your trials")


def test_an_answer_without_a_claim_keeps_only_the_floor() -> None:
    assert verdict(judged("The learning rate matters a great deal for accuracy in 8 trials.")) == (
        5.0, "partial", "learning_rate_effect: no number or direction from your trials was found — quote your own "
                        "results")
    assert verdict(judged("lr and accuracy")) == (
        2.67, "partial", "learning_rate_effect: 3 words (needs 5); quotes no number; no number or direction from your "
                         "trials was found — write at least 5 words, quote numbers from your trials, quote your own "
                         "results")


def test_the_hyperparameter_param_names_whose_direction_is_judged() -> None:
    text = "A larger batch size improved accuracy, which the learning rate did not."
    params = {"key": "search_comparison", "concepts": ["accuracy"], "check_claims": True}
    assert verdict(judged(text, params))[:2] == (5.0, "partial")  # no hyperparameter: no direction read
    assert verdict(judged(text, {**params, "hyperparameter": "batch_size"})) == (
        5.0, "partial", f'search_comparison: you wrote "A larger batch size improved accuracy", but {BATCH_EVIDENCE} '
                        "— make every number and direction agree with your own trials")
    assert verdict(judged(text, {**params, "hyperparameter": "batch_size", "direction_margin": 0.02}))[:2] == (
        10.0, "pass")


def test_without_check_claims_the_old_scores_stand() -> None:
    assert verdict(judged("A higher learning rate lowered accuracy, to 0.80 from 0.97.",
                          {**LR_TEXT, "check_claims": False})) == (
        10.0, "pass", "learning_rate_effect: 10 words, names every required concept, quotes numbers")


def test_the_schema_takes_the_new_params_and_refuses_an_unknown_hyperparameter() -> None:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    index = next(i for i, c in enumerate(doc["checks"]) if c["id"] == "answer-learning-rate")
    doc["checks"][index]["params"].update(check_claims=True, hyperparameter="learning_rate", direction_margin=0.01)
    assert rubric_problems(doc) == []
    doc["checks"][index]["params"]["hyperparameter"] = "lr"
    assert rubric_problems(doc) == [
        f"$.checks[{index}].params.hyperparameter: 'lr' is not one of ['learning_rate', 'batch_size', 'epochs', "
        "'filters', 'kernel_size', 'dropout', 'l1', 'l2']"]


# ---------------------------------------------------------------------------------------------
# The reference's own answers score full marks with check_claims on


def claims_checks(*rubrics: Any) -> list[Check]:
    """Every answer_text check of the rubrics, once per answer key, with check_claims on."""
    seen: dict[str, Check] = {}
    for rubric in rubrics:
        for check in rubric.checks:
            if check.kind == "answer_text" and check.params["key"] not in seen:
                seen[check.params["key"]] = Check(check.id, check.kind, check.points, check.title, check.visibility,
                                                  {**check.params, "check_claims": True})
    return list(seen.values())


def manual(trial_id: str, acc: float, seconds: float, **hps: float) -> Trial:
    return trial("manual", trial_id, acc, seconds, **hps)


@pytest.mark.parametrize("trials", [
    TRIALS,
    (*TRIALS, manual("0", 0.92, 2.0, learning_rate=0.001, batch_size=64),
     manual("1", 0.95, 2.5, learning_rate=0.003, batch_size=32)),  # the manual best ahead of the automated
    (*TRIALS, manual("0", 0.88, 2.0, learning_rate=0.001, batch_size=64)),  # and behind
], ids=["grid-random", "manual-ahead", "manual-behind"])
def test_the_reference_answers_derived_from_the_trials_earn_full_marks(trials: tuple[Trial, ...]) -> None:
    from reference.tuning import answer_questions  # imports keras: only here

    answers = answer_questions([t.as_record() for t in trials])
    ev = Evidence(output_dir=Path("out"), trials=trials, answers=answers)
    checks = claims_checks(QUICK, WEEK)
    assert {c.params["key"] for c in checks} == {"search_comparison", "learning_rate_effect", "batch_size_effect",
                                                 "manual_vs_automated"}
    results = [run_check(c, ev) for c in checks if c.params["key"] in answers]
    assert [(r.id, r.status, r.message) for r in results if r.points != r.max_points] == []
    assert all("agree" in r.message for r in results)


def test_the_recorded_reference_run_earns_full_marks_with_check_claims_on() -> None:
    ev = gather(REFERENCE, aliases=QUICK.aliases)
    results = [run_check(c, ev) for c in claims_checks(QUICK)]
    assert [(r.id, r.points, r.message) for r in results] == [
        ("answer-search-comparison", 4.0, "search_comparison: 35 words, names every required concept, quotes numbers; "
                                          "5 numbers agree with your trials"),
        ("answer-learning-rate", 3.0, "learning_rate_effect: 39 words, names every required concept, quotes numbers; "
                                      "5 numbers agree with your trials"),
        ("answer-batch-size", 3.0, "batch_size_effect: 39 words, names every required concept, quotes numbers; "
                                   "5 numbers agree with your trials"),
    ]
