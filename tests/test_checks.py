"""Tests for grader.checks: the scoring table of fixture output dirs, each judge's partial credit and exact messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, child_env
from grader import checks
from grader.checks import JUDGES, Verdict, run_check, run_checks, score
from grader.evidence import Evidence, Trial, gather
from grader.jsonio import load_schema
from grader.result import CHECK_STATUSES, CheckResult, ModelEvaluation, Score
from grader.rubric import Check, load_rubric
from test_evidence import (
    ALIASES, KERAS_TUNER_ONLY, REFERENCE_EVALUATIONS, reference_output, trial_lines, write_lines,
)
from tunekit.spaces import GridSpace, RandomSpace, Range

QUICK = load_rubric(ROOT / "grader" / "rubrics" / "quick.json")
FULL = load_rubric(ROOT / "grader" / "rubrics" / "full.json")
RAN = "ran to the end"


def points(results: tuple[CheckResult, ...]) -> dict[str, float]:
    return {c.id: c.points for c in results}


def messages(results: tuple[CheckResult, ...]) -> dict[str, str]:
    return {c.id: c.message for c in results}


def full_marks(rubric: Any) -> dict[str, float]:
    return {c.id: c.points for c in rubric.checks}


# ---------------------------------------------------------------------------------------------
# The scoring table: fixture output dirs and the exact points each check gives


def test_the_reference_run_scores_full_marks_on_the_quick_rubric(tmp_path: Path) -> None:
    ev = gather(reference_output(tmp_path / "out"), aliases=QUICK.aliases, run_status="completed", run_message=RAN,
                evaluations=REFERENCE_EVALUATIONS)
    results = run_checks(QUICK, ev)
    assert points(results) == full_marks(QUICK)
    assert {c.status for c in results} == {"pass"} and not any(c.suspect for c in results)
    assert score(results) == Score(100.0, 100.0)


UNTOUCHED_TEMPLATE = {  # its stubs raise before anything is written: an empty output dir, a crashed run
    "files": "0 of 9 required files are present and valid; missing: search_spaces.json, trials.jsonl or "
             "cv_results_*.csv or cv_results_*.json, comparison.csv and 6 more — write each required file into your output dir (GRADER_OUTPUT_DIR) in the format its name "
             "promises",
    "search-space": "no search space could be read (search_spaces.json: file is missing) — write search_spaces.json "
                    "with your grid values and random ranges",
    "grid-coverage": "no grid could be read (search_spaces.json: file is missing); trials.jsonl: file is missing — "
                     "declare your grid in search_spaces.json and train every combination",
    "random-coverage": "no random search ranges could be read (search_spaces.json: file is missing); trials.jsonl: "
                       "file is missing — declare your random search's ranges in search_spaces.json and run at least 8 "
                       "trials sampled from them",
    "accuracy-grid": "grid: models/best_grid.keras was not written — save each search's best model to "
                     "models/best_<search>.keras and raise its accuracy (tune the learning rate, train longer)",
    "accuracy-random": "random: models/best_random.keras was not written — save each search's best model to "
                       "models/best_<search>.keras and raise its accuracy (tune the learning rate, train longer)",
    "comparison-table": "no comparison table could be read (comparison.csv: file is missing) — write comparison.csv "
                        "from your trials (one row per search, numbers as in your trials)",
    "answer-most-important": "most_important_hyperparameter: no answers could be read (answers.yaml: file is missing) "
                             "— write answers.yaml (or a notebook cell tagged answers) answering "
                             "most_important_hyperparameter",
    "answer-better-search": "better_search: no answers could be read (answers.yaml: file is missing) — write "
                            "answers.yaml (or a notebook cell tagged answers) answering better_search",
    "answer-best-accuracy": "best_val_accuracy: no answers could be read (answers.yaml: file is missing) — write "
                            "answers.yaml (or a notebook cell tagged answers) answering best_val_accuracy",
    "answer-search-seconds": "search_seconds: no answers could be read (answers.yaml: file is missing) — write "
                             "answers.yaml (or a notebook cell tagged answers) answering search_seconds",
    "answer-search-comparison": "search_comparison: no answers could be read (answers.yaml: file is missing) — write "
                                "answers.yaml (or a notebook cell tagged answers) answering search_comparison",
    "answer-learning-rate": "learning_rate_effect: no answers could be read (answers.yaml: file is missing) — write "
                            "answers.yaml (or a notebook cell tagged answers) answering learning_rate_effect",
    "answer-batch-size": "batch_size_effect: no answers could be read (answers.yaml: file is missing) — write "
                         "answers.yaml (or a notebook cell tagged answers) answering batch_size_effect",
    "runtime": "crashed: exited with code 1: NotImplementedError: TODO(student): define the grid of hyperparameter "
               "values for each profile — fix the error shown in the log (the files written before the crash were "
               "still graded)",
}
TEMPLATE_CRASH = ("exited with code 1: NotImplementedError: TODO(student): define the grid of hyperparameter values "
                  "for each profile")


def test_the_untouched_template_scores_zero_with_one_actionable_message_per_check(tmp_path: Path) -> None:
    unwritten = tuple(ModelEvaluation(s, f"models/best_{s}.keras", None, 10000, f"models/best_{s}.keras was not written",
                                      0.0) for s in ("grid", "random"))  # the engine reports both models, even unwritten
    results = run_checks(QUICK, gather(tmp_path, aliases=QUICK.aliases, run_status="crashed", run_message=TEMPLATE_CRASH,
                                       evaluations=unwritten))
    assert points(results) == {c.id: 0.0 for c in QUICK.checks}
    assert messages(results) == UNTOUCHED_TEMPLATE
    assert {c.status for c in results} == {"fail"}


def test_fabricated_trials_are_flagged_suspect_and_lose_the_accuracy_points(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    records = trial_lines(out / "trials.jsonl")
    for record in records:
        record["val_accuracy"], record["history"]["val_accuracy"] = 0.999, [0.999]
    write_lines(out / "trials.jsonl", records)
    verified = tuple(ModelEvaluation(e.search, e.path, 0.1, 10000, None, 3.0) for e in REFERENCE_EVALUATIONS)
    results = run_checks(QUICK, gather(out, aliases=QUICK.aliases, run_status="completed", run_message=RAN,
                                       evaluations=verified))
    assert points(results) == {**full_marks(QUICK), "accuracy-grid": 0.0, "accuracy-random": 0.0,
                               "comparison-table": 3.75, "answer-most-important": 0.0, "answer-best-accuracy": 0.0}
    assert [c.id for c in results if c.suspect] == ["accuracy-grid", "accuracy-random"]
    assert messages(results)["accuracy-grid"] == (
        "grid: test accuracy 0.1000 is below the lowest tier 0.85 but its trials claim 0.9990 val accuracy "
        "(gap 0.8990 > 0.05): flagged for review — export the model your best trial trained and report its true val "
        "accuracy")


def test_a_keras_tuner_only_output_dir_is_graded_from_its_trial_files() -> None:
    results = run_checks(QUICK, gather(KERAS_TUNER_ONLY, aliases=QUICK.aliases, run_status="completed",
                                       run_message=RAN, evaluations=REFERENCE_EVALUATIONS))
    no_answers = {c.id: 0.0 for c in QUICK.checks if c.kind.startswith("answer_")}
    assert points(results) == {**full_marks(QUICK), "files": 0.0, "comparison-table": 0.0, **no_answers}
    assert messages(results)["grid-coverage"] == "the grid covers all 16 combinations"


def test_a_run_stopped_by_its_time_box_keeps_the_credit_of_what_it_wrote(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    write_lines(out / "trials.jsonl", trial_lines(out / "trials.jsonl")[:10])  # ten grid trials, no random one
    (out / "models" / "best_random.keras").unlink()
    (out / "plots" / "random_trials.png").unlink()
    results = run_checks(QUICK, gather(out, aliases=QUICK.aliases, run_status="timed_out",
                                       run_message="stopped at the time limit of 300 s; the files written before then "
                                                   "are still graded", evaluations=REFERENCE_EVALUATIONS[:1]))
    assert points(results) == {**full_marks(QUICK), "files": 6.22, "grid-coverage": 9.38, "random-coverage": 0.0,
                               "accuracy-random": 0.0, "comparison-table": 0.0, "answer-better-search": 0.0,
                               "answer-best-accuracy": 0.0, "answer-search-seconds": 0.0, "runtime": 0.0}
    said = messages(results)
    assert said["grid-coverage"] == (
        "the grid covers 10 of 16 combinations; missing: (learning_rate=0.01, batch_size=32, filters=16, dropout=0), "
        "(learning_rate=0.01, batch_size=32, filters=16, dropout=0.3), (learning_rate=0.01, batch_size=64, filters=8, "
        "dropout=0) and 3 more — train every combination of your declared grid")
    assert said["runtime"] == ("timed out: stopped at the time limit of 300 s; the files written before then are still "
                               "graded — size your searches to GRADER_TIME_BUDGET_S so the run ends in time")


@pytest.mark.parametrize(("line", "text", "message"), [
    (3, "{broken", "the grid covers 15 of 16 combinations; missing: (learning_rate=0.001, batch_size=32, filters=16, "
                   "dropout=0); trials.jsonl line 3: not valid JSON: Expecting property name enclosed in double quotes "
                   "at column 2 — train every combination of your declared grid"),
    (5, None, "the grid covers 15 of 16 combinations; missing: (learning_rate=0.001, batch_size=64, filters=8, "
              "dropout=0); trials.jsonl line 5: $.val_accuracy: 1.5 is greater than the maximum of 1 — train every "
              "combination of your declared grid"),
])
def test_a_malformed_trial_line_costs_its_combination_and_is_named_in_the_message(
        tmp_path: Path, line: int, text: str | None, message: str) -> None:
    out = reference_output(tmp_path / "out")
    records: list[Any] = trial_lines(out / "trials.jsonl")
    records[line - 1] = text if text is not None else {**records[line - 1], "val_accuracy": 1.5}
    write_lines(out / "trials.jsonl", records)
    result = next(c for c in run_checks(QUICK, gather(out, aliases=QUICK.aliases)) if c.id == "grid-coverage")
    assert (result.points, result.status, result.message) == (14.06, "partial", message)


# ---------------------------------------------------------------------------------------------
# Each judge on hand-made evidence


GRID = GridSpace(values={"learning_rate": (0.001, 0.01), "batch_size": (32, 64)}, fixed={"epochs": 1})
RANDOM = RandomSpace(ranges={"learning_rate": Range.float(1e-4, 1e-1, "log"), "dropout": Range.float(0.0, 0.5),
                             "batch_size": Range.choice(32, 64)}, max_trials=4, fixed={"epochs": 1})
SPACES = {"grid": GRID, "random": RANDOM}


def trial(search: str, trial_id: str, acc: float | None = 0.9, *, status: str = "COMPLETED", seconds: float | None = 1.0,
          outside: tuple[str, ...] = (), **hps: float) -> Trial:
    return Trial(search, trial_id, {"epochs": 1, **hps}, status, acc, None if acc is None else 0.3, seconds,
                 "trials.jsonl", int(trial_id) + 1 if trial_id.isdigit() else None, outside)


def evidence(*trials: Trial, spaces: dict[str, Any] | None = None, **fields: Any) -> Evidence:
    spaces = SPACES if spaces is None else spaces
    return Evidence(output_dir=Path("out"), trials=trials, spaces=spaces,
                    spaces_source={s: "search_spaces.json" for s in spaces}, **fields)


def judged(kind: str, params: dict[str, Any], ev: Evidence) -> CheckResult:
    return run_check(Check("c", kind, 10.0, "a check", "visible", params), ev)


def verdict(result: CheckResult) -> tuple[float, str, str]:
    return result.points, result.status, result.message


def grid_trials(*accs: float) -> list[Trial]:
    combos = GRID.combinations()
    return [trial("grid", str(i), acc, learning_rate=c["learning_rate"], batch_size=c["batch_size"])
            for i, (c, acc) in enumerate(zip(combos, accs))]


def random_trials(lrs: list[float], dropouts: list[float], acc: float = 0.9) -> list[Trial]:
    return [trial("random", str(i), acc, learning_rate=lr, dropout=d, batch_size=32)
            for i, (lr, d) in enumerate(zip(lrs, dropouts))]


def test_grid_coverage_gives_credit_by_fraction_and_lists_the_missing_combinations() -> None:
    ev = evidence(*grid_trials(0.9, 0.8), trial("grid", "2", None, status="FAILED", learning_rate=0.01, batch_size=32))
    assert verdict(judged("grid_coverage", {}, ev)) == (
        5.0, "partial", "the grid covers 2 of 4 combinations; missing: (learning_rate=0.01, batch_size=32), "
                        "(learning_rate=0.01, batch_size=64); 1 of the missing ran but did not complete — train every "
                        "combination of your declared grid")


def test_a_grid_smaller_than_the_rubric_minimum_cannot_earn_full_points() -> None:
    assert verdict(judged("grid_coverage", {"min_combinations": 16}, evidence(*grid_trials(0.9, 0.9, 0.9, 0.9)))) == (
        2.5, "partial", "the grid declares 4 combinations (the assignment asks for at least 16) and covers 4 of them — "
                        "declare at least 16 combinations (more values per hyperparameter) and train every one")


def test_a_grid_trial_off_the_declared_fixed_values_does_not_cover_its_combination() -> None:
    trials = grid_trials(0.9, 0.9, 0.9, 0.9)
    trials[3] = replace(trials[3], outside=("epochs",))
    assert judged("grid_coverage", {}, evidence(*trials)).points == 7.5


def test_random_coverage_passes_for_enough_sampled_trials_inside_the_ranges() -> None:
    ev = evidence(*random_trials([0.001, 0.02, 0.0003, 0.05], [0.1, 0.2, 0.3, 0.4]))
    assert verdict(judged("random_coverage", {"min_trials": 4, "continuous": ["learning_rate", "dropout"]}, ev)) == (
        10.0, "pass", "4 distinct completed random trials inside the declared ranges (needs 4), learning_rate and "
                      "dropout sampled continuously")


def test_random_coverage_catches_a_grid_in_disguise() -> None:
    ev = evidence(*random_trials([0.001, 0.01, 0.001, 0.01], [0.0, 0.0, 0.25, 0.25]))
    assert verdict(judged("random_coverage", {"min_trials": 4, "continuous": ["learning_rate", "dropout"]}, ev)) == (
        6.67, "partial", "4 distinct completed random trials inside the declared ranges (needs 4); learning_rate takes "
                         "only 2 distinct values in 4 trials: a grid in disguise; dropout takes only 2 distinct values "
                         "in 4 trials: a grid in disguise — run at least 4 random trials sampled from your declared "
                         "ranges, sample learning_rate and dropout from float ranges")


def test_random_coverage_counts_only_trials_inside_the_ranges_and_names_the_first_outside() -> None:
    trials = random_trials([0.001, 0.02, 0.0003, 0.5], [0.1, 0.2, 0.3, 0.4])
    trials[3] = replace(trials[3], outside=("learning_rate",))
    assert verdict(judged("random_coverage", {"min_trials": 4}, evidence(*trials))) == (
        8.33, "partial", "3 distinct completed random trials inside the declared ranges (needs 4); 1 of 4 completed "
                         "trials lie outside the declared ranges (first: trial 3, trials.jsonl line 4: learning_rate) — "
                         "run at least 4 random trials sampled from your declared ranges")


def test_a_choice_declared_for_a_continuous_hyperparameter_is_not_sampling() -> None:
    ev = evidence(*random_trials([0.001, 0.02, 0.0003, 0.05], [0.1, 0.2, 0.3, 0.4]))
    result = judged("random_coverage", {"min_trials": 4, "continuous": ["batch_size"]}, ev)
    assert verdict(result) == (
        6.67, "partial", "4 distinct completed random trials inside the declared ranges (needs 4); batch_size is "
                         "declared as a choice, not a float range — run at least 4 random trials sampled from your "
                         "declared ranges, sample batch_size from float ranges")


def test_random_coverage_names_a_declared_budget_below_the_minimum() -> None:
    ev = evidence(*random_trials([0.001, 0.02], [0.1, 0.2]))
    assert judged("random_coverage", {"min_trials": 8}, ev).message == (
        "2 distinct completed random trials inside the declared ranges (needs 8); it declares only max_trials=4 — run at "
        "least 8 random trials sampled from your declared ranges")


TIERS = [{"min_accuracy": 0.85, "fraction": 0.5}, {"min_accuracy": 0.90, "fraction": 0.8},
         {"min_accuracy": 0.93, "fraction": 1.0}]


@pytest.mark.parametrize(("accuracy", "earned", "message"), [
    (0.95, 10.0, "grid: test accuracy 0.9500 reaches the 0.93 tier"),
    (0.91, 8.0, "grid: test accuracy 0.9100 reaches the 0.9 tier — save each search's best model to "
                "models/best_<search>.keras and raise its accuracy (tune the learning rate, train longer)"),
    (0.86, 5.0, "grid: test accuracy 0.8600 reaches the 0.85 tier — save each search's best model to "
                "models/best_<search>.keras and raise its accuracy (tune the learning rate, train longer)"),
    (0.5, 0.0, "grid: test accuracy 0.5000 is below the lowest tier 0.85 but its trials claim 0.9000 val accuracy "
               "(gap 0.4000 > 0.05): flagged for review — export the model your best trial trained and report its true "
               "val accuracy"),
])
def test_accuracy_tiers_use_the_graders_own_test_accuracy(accuracy: float, earned: float, message: str) -> None:
    ev = evidence(*grid_trials(0.9), evaluations=(ModelEvaluation("grid", "models/best_grid.keras", accuracy, 100, None, 1.0),))
    result = judged("accuracy_threshold", {"searches": ["grid"], "tiers": TIERS}, ev)
    assert (result.points, result.message, result.suspect) == (earned, message, accuracy == 0.5)


def test_a_model_the_grader_did_not_evaluate_is_named_as_such() -> None:
    ev = evidence(files={"models/best_grid.keras": None})
    assert judged("accuracy_threshold", {"searches": ["grid"], "tiers": TIERS}, ev).message == (
        "grid: models/best_grid.keras was not evaluated — save each search's best model to models/best_<search>.keras "
        "and raise its accuracy (tune the learning rate, train longer)")


def test_a_model_that_does_not_load_earns_no_accuracy_and_fails_its_artifact() -> None:
    broken = ModelEvaluation("grid", "models/best_grid.keras", None, 100, "the model does not load: ValueError: bad", 1.0)
    ev = evidence(evaluations=(broken,), files={"models/best_grid.keras": None})
    assert judged("accuracy_threshold", {"searches": ["grid"], "tiers": TIERS}, ev).message == (
        "grid: models/best_grid.keras could not be evaluated (the model does not load: ValueError: bad) — save each "
        "search's best model to models/best_<search>.keras and raise its accuracy (tune the learning rate, train longer)")
    assert verdict(judged("artifacts", {"files": ["models/best_grid.keras"]}, ev)) == (
        0.0, "fail", "0 of 1 required files are present and valid; invalid: models/best_grid.keras (the model does not "
                     "load: ValueError: bad) — write each required file into your output dir (GRADER_OUTPUT_DIR) in "
                     "the format its name promises")


def test_artifacts_give_credit_per_required_file_and_globs_match_one_folder_level() -> None:
    ev = evidence(files={"trials.jsonl": None, "plots/a.png": None, "plots/b.png": "not a PNG image: bad",
                         "plots/deep/c.png": None})
    assert verdict(judged("artifacts", {"files": ["trials.jsonl", "plots/*.png", "answers.yaml"]}, ev)) == (
        3.33, "partial", "1 of 3 required files are present and valid; missing: answers.yaml; invalid: plots/b.png "
                         "(not a PNG image: bad) — write each required file into your output dir (GRADER_OUTPUT_DIR) "
                         "in the format its name promises")


def test_search_space_gives_credit_per_requirement() -> None:
    params = {"grid_min_values": {"learning_rate": 3, "batch_size": 2, "dropout": 2}, "grid_span": {"learning_rate": 100},
              "random_ranges": {"learning_rate": {"min": 1e-5, "max": 0.1, "sampling": "log"},
                                "dropout": {"min": 0.0, "max": 0.5, "sampling": "log"}, "filters": {"min": 8, "max": 64}}}
    assert verdict(judged("search_space", params, evidence())) == (
        1.43, "partial", "1 of 7 search-space requirements met: the grid has 2 values for learning_rate (needs 3); the "
                         "grid has 0 values for dropout (needs 2); the grid's learning_rate values span 10x (needs "
                         "100x) and 3 more — declare more grid values and wider random ranges, then rerun the searches")


def test_comparison_credits_each_value_that_agrees_with_the_trials() -> None:
    trials = [*grid_trials(0.9, 0.95), trial("random", "0", 0.8, seconds=2.0, learning_rate=0.001, dropout=0.1,
                                             batch_size=32)]
    rows = {"grid": {"trials": "2", "completed_trials": "2", "best_val_accuracy": "0.95", "total_train_seconds": "2.0"},
            "random": {"trials": "1", "completed_trials": "1", "best_val_accuracy": "0.9", "total_train_seconds": "9"}}
    assert verdict(judged("comparison", {}, evidence(*trials, comparison=rows))) == (
        7.5, "partial", "6 of 8 values agree with your trials: random best_val_accuracy is 0.9 in comparison.csv but 0.8 "
                        "in your trials; random total_train_seconds is 9 in comparison.csv but 2 in your trials — write "
                        "comparison.csv from your trials (one row per search, numbers as in your trials)")


ANSWERS = {"most_important_hyperparameter": "batch_size", "hyperparameter_ranking": ["batch_size", "learning_rate"],
           "better_search": "grid", "best_val_accuracy": {"grid": 0.95, "random": 0.8},
           "search_seconds": {"grid": 4.0, "random": 1.0}}


def answered(**changes: Any) -> Evidence:
    lr_matters = grid_trials(0.5, 0.52, 0.9, 0.95)  # learning_rate explains almost all the variance
    rand = trial("random", "9", 0.8, learning_rate=0.001, dropout=0.1, batch_size=32)
    return evidence(*lr_matters, rand, answers={**ANSWERS, **changes}, answers_source="answers.yaml")


def test_the_most_important_hyperparameter_must_rank_in_the_top_k_of_the_trials() -> None:
    params = {"key": "most_important_hyperparameter", "against": "top_k", "k": 1}
    assert verdict(judged("answer_choice", params, answered())) == (
        0.0, "fail", "most_important_hyperparameter: batch_size ranks 2 of 2 in the variance decomposition of your trials "
                     "(top 1: learning_rate) — base the answer on your own trials (tunekit.analysis.ranking)")
    assert verdict(judged("answer_choice", {**params, "k": 2}, answered()))[:2] == (10.0, "pass")
    assert judged("answer_choice", params, answered(most_important_hyperparameter="colour")).message == (
        "most_important_hyperparameter: 'colour' is not a hyperparameter name — answer one of learning_rate, batch_size, "
        "epochs, filters, kernel_size, dropout, l1, l2")


def test_the_ranking_earns_a_share_per_hyperparameter_in_the_trials_top_k() -> None:
    result = judged("answer_choice", {"key": "hyperparameter_ranking", "against": "ranking", "k": 2}, answered())
    assert verdict(result) == (
        10.0, "pass", "hyperparameter_ranking: your top 2 match the top 2 of your trials' variance decomposition "
                      "(learning_rate, batch_size)")
    result = judged("answer_choice", {"key": "hyperparameter_ranking", "against": "ranking", "k": 2},
                    answered(hyperparameter_ranking=["dropout", "learning_rate"]))
    assert verdict(result) == (
        5.0, "partial", "hyperparameter_ranking: 1 of your top 2 are in the top 2 of your trials' variance decomposition "
                        "(learning_rate, batch_size) — order the ranking by the share of variance each hyperparameter "
                        "explains in your trials")


def test_the_better_search_must_be_the_one_the_trials_show() -> None:
    params = {"key": "better_search", "against": "better_search"}
    assert verdict(judged("answer_choice", params, answered(better_search="random"))) == (
        0.0, "fail", "better_search: you answered random, but your trials show grid ahead (random 0.8000 against grid "
                     "0.9500 best val accuracy) — answer from your own trials")
    assert judged("answer_choice", {**params, "margin": 0.2}, answered(better_search="random")).status == "pass"


def test_numbers_are_checked_against_the_log_per_search() -> None:
    params = {"key": "best_val_accuracy", "against": "best_val_accuracy", "tolerance": 0.001}
    assert verdict(judged("answer_numeric", params, answered())) == (
        10.0, "pass", "best_val_accuracy matches your trials (grid 0.95, random 0.8)")
    assert verdict(judged("answer_numeric", params, answered(best_val_accuracy={"grid": 0.97, "random": "high"}))) == (
        0.0, "fail", "best_val_accuracy.grid is 0.97 but your trials give 0.95; best_val_accuracy.random is 'high', not a "
                     "number — copy the best val_accuracy of each search from your trials")
    seconds = {"key": "search_seconds", "against": "search_seconds", "relative_tolerance": 0.05}
    assert verdict(judged("answer_numeric", seconds, answered(search_seconds={"grid": 4.1}))) == (
        5.0, "partial", "search_seconds.random is not answered — copy the total train_seconds of each search from your "
                        "trials")
    assert verdict(judged("answer_numeric", {"key": "x", "expected": 3.0, "tolerance": 0.5}, answered(x=3.4)))[:2] == (
        10.0, "pass")


TEXT = {"key": "search_comparison", "min_words": 10, "concepts": [["accuracy"], ["time", "second"]],
        "require_number": True}


@pytest.mark.parametrize(("text", "params", "result"), [
    ("Grid reached 0.95 accuracy in 40 seconds, random 0.93 in half the time with eight trials.", TEXT,
     (10.0, "pass", "search_comparison: 16 words, names every required concept, quotes numbers")),
    ("Grid was better overall.", TEXT,
     (1.33, "partial", "search_comparison: 4 words (needs 10); does not mention accuracy; does not mention time (or "
                       "second); quotes no number — write at least 10 words, discuss accuracy and time, quote numbers "
                       "from your trials")),
    ("Grid reached 0.95 accuracy in 40 seconds, random 0.93 in half the time with eight trials.",
     {**TEXT, "manual_review": True},
     (10.0, "pass", "search_comparison: 16 words, names every required concept, quotes numbers; marked for manual "
                    "review")),
])
def test_text_answers_earn_equal_parts_for_length_concepts_and_numbers(
        text: str, params: dict[str, Any], result: tuple[float, str, str]) -> None:
    assert verdict(judged("answer_text", params, answered(search_comparison=text))) == result


def test_an_unanswered_question_says_where_to_answer_it() -> None:
    assert verdict(judged("answer_text", TEXT, answered(search_comparison=None))) == (
        0.0, "fail", "search_comparison is not answered in answers.yaml — answer search_comparison from your own trials")


@pytest.mark.parametrize(("status", "message", "result"), [
    ("completed", RAN, (10.0, "pass", "ran to the end inside the time box")),
    ("completed", "2 notebook cell(s) raised an error, first cell 4: KeyError: 'x'",
     (10.0, "pass", "ran to the end inside the time box (2 notebook cell(s) raised an error, first cell 4: KeyError: "
                    "'x')")),
    ("crashed", "killed by signal 9", (0.0, "fail", "crashed: killed by signal 9 — fix the error shown in the log (the "
                                                    "files written before the crash were still graded)")),
    ("sandbox_error", "bwrap failed", (0.0, "fail", "the grader could not run your submission: bwrap failed — this is not "
                                                    "your fault; your instructor will rerun it")),
    (None, "", (0.0, "skipped", "not run by the grader, so there is no time box to judge")),
])
def test_runtime_judges_the_run_status(status: str | None, message: str, result: tuple[float, str, str]) -> None:
    ran = evidence(trial("grid", "0"), run_status=status, run_message=message)
    assert verdict(judged("runtime", {}, ran)) == result


def test_a_run_that_completed_without_training_anything_earns_no_runtime_points() -> None:
    assert verdict(judged("runtime", {}, evidence(run_status="completed", run_message=RAN))) == (
        0.0, "fail", "ran to the end but recorded no completed trial — implement the searches so each finished "
                     "trial is written to trials.jsonl")


def test_a_timed_out_run_earns_the_rubrics_fraction() -> None:
    assert judged("runtime", {"timed_out_fraction": 0.5}, evidence(run_status="timed_out")).points == 5.0


# ---------------------------------------------------------------------------------------------
# The engine's side: registry, errors, score


def test_there_is_a_judge_for_every_kind_the_schema_accepts() -> None:
    kinds = load_schema("rubric")["properties"]["checks"]["items"]["properties"]["kind"]["enum"]
    assert sorted(JUDGES) == sorted(kinds)


def test_a_judge_that_raises_becomes_an_error_result_and_the_others_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(params: Any, ev: Evidence) -> Verdict:
        raise KeyError("best_val_accuracy")

    monkeypatch.setitem(checks.JUDGES, "comparison", broken)
    results = run_checks(QUICK, gather(Path("/nonexistent/out"), run_status="crashed"))
    failed = next(c for c in results if c.id == "comparison-table")
    assert (failed.status, failed.points, failed.message) == (
        "error", 0.0, "the grader could not judge this check (KeyError: 'best_val_accuracy') — tell your instructor; "
                      "your other checks are not affected")
    assert [c.status for c in results].count("error") == 1 and len(results) == len(QUICK.checks)


def test_score_adds_up_points_and_check_results_keep_the_rubrics_titles_and_visibility() -> None:
    results = run_checks(FULL, evidence(trial("grid", "0"), spaces={}, run_status="completed", run_message=RAN))
    assert score(results) == Score(10.0, 100.0)  # runtime's 4, and consistency's 6: no claim contradicts a measure
    hidden = next(c for c in results if c.id == "answer-ranking")
    assert (hidden.visibility, hidden.title, hidden.kind, hidden.max_points) == (
        "hidden", "Your hyperparameter ranking matches your trials", "answer_choice", 4.0)


# ---------------------------------------------------------------------------------------------
# No output dir, however malformed, makes the checks raise or error


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def test_huge_or_hostile_answers_give_short_messages_not_errors() -> None:
    params = {"key": "best_val_accuracy", "against": "best_val_accuracy", "tolerance": 0.001}
    huge = answered(best_val_accuracy={"grid": 10**5000, "random": "\x1b[2J" + "x" * 5000})
    assert verdict(judged("answer_numeric", params, huge)) == (
        0.0, "fail", "best_val_accuracy.grid is <a 5001-digit integer>, not a number; best_val_accuracy.random is "
                     "'\\x1b[2Jxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..., not a number — copy the best "
                     "val_accuracy of each search from your trials")
    choice = {"key": "better_search", "accepted": ["grid"]}
    result = judged("answer_choice", choice, answered(better_search=["x" * 10_000] * 10_000))
    assert result.status == "fail" and len(result.message) < 200


def test_a_hand_built_trial_with_an_integer_too_large_for_a_float_is_judged_without_error() -> None:
    trials = [*grid_trials(0.9, 0.9, 0.9), trial("grid", "3", 0.9, learning_rate=10**400, batch_size=64),
              *random_trials([0.001, 0.01], [0.1, 0.2]), trial("random", "7", 0.9, learning_rate=10**400, dropout=0.1,
                                                              batch_size=32)]
    ev = evidence(*trials)
    for kind, params in (("grid_coverage", {}), ("random_coverage", {"min_trials": 2, "continuous": ["dropout"]})):
        result = judged(kind, params, ev)
        assert result.status in ("pass", "partial", "fail"), result.message


def test_control_characters_a_submission_wrote_are_escaped_in_messages() -> None:
    trials = random_trials([0.001, 0.01], [0.1, 0.2]) + [
        trial("random", "\x1b]0;pwned\x07", 0.9, outside=("dropout",), learning_rate=0.001, dropout=0.9,
              batch_size=32)]
    result = judged("random_coverage", {"min_trials": 3}, evidence(*trials))
    assert "\x1b" not in result.message and "\\x1b]0;pwned\\x07" in result.message


def test_a_5000_digit_integer_anywhere_in_a_run_leaves_every_check_judged(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    big = "9" * 5000
    for name, old, new in (("trials.jsonl", '"epochs":1', f'"epochs":{big}'), ("answers.yaml", "random: 0.911",
                           f"random: {big}"), ("search_spaces.json", '"epochs": 1', f'"epochs": {big}')):
        text = (out / name).read_text()
        assert old in text
        (out / name).write_text(text.replace(old, new, 1))
    ev = gather(out, aliases=QUICK.aliases, run_status="completed", run_message=RAN, evaluations=REFERENCE_EVALUATIONS)
    assert len(ev.problems) == 3
    results = run_checks(QUICK, ev)
    assert [c.id for c in results if c.status == "error"] == []
    assert all(len(c.message) <= checks.MAX_MESSAGE_CHARS for c in results)


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """doc with one value somewhere inside it replaced by arbitrary JSON."""
    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 3)) == 0:
        return data.draw(_json)
    if isinstance(doc, dict):
        key = data.draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _mutate(doc[key], data)}
    index = data.draw(st.integers(0, len(doc) - 1))
    return [*doc[:index], _mutate(doc[index], data), *doc[index + 1:]]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), native=st.booleans())
def test_no_malformed_output_dir_makes_a_check_raise(data: st.DataObject, native: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        if native:
            shutil.copytree(KERAS_TUNER_ONLY, out)
            for rel in ("tuner/grid/trial_03/trial.json", "tuner/random/oracle.json", "tuner/random/trial_2/trial.json"):
                path = out / rel
                path.write_text(json.dumps(_mutate(json.loads(path.read_text()), data)))
        else:
            reference_output(out)
            records = trial_lines(out / "trials.jsonl")
            index = data.draw(st.integers(0, len(records) - 1))
            records[index] = _mutate(records[index], data)
            write_lines(out / "trials.jsonl", records)
            for name in ("search_spaces.json",):
                (out / name).write_text(json.dumps(_mutate(json.loads((out / name).read_text()), data)))
            answers = yaml.safe_load((out / "answers.yaml").read_text())
            (out / "answers.yaml").write_text(yaml.safe_dump(_mutate(answers, data)))
        evaluations = tuple(ModelEvaluation(s, f"models/best_{s}.keras", data.draw(st.none() | st.floats(0, 1)), 10, None,
                                            1.0) for s in ("grid", "random"))
        ev = gather(out, aliases=ALIASES, run_status=data.draw(st.sampled_from(["completed", "timed_out", "crashed"])),
                    evaluations=evaluations)
        for rubric in (QUICK, FULL):
            results = run_checks(rubric, ev)
            assert [(c.id, c.message) for c in results if c.status not in CHECK_STATUSES or c.status == "error"] == []
            assert all(0 <= c.points <= c.max_points and "\n" not in c.message for c in results)


# ---------------------------------------------------------------------------------------------
# Real runs


@pytest.fixture(scope="module")
def reference_evaluations(reference_quick_run: Path, tmp_path_factory: pytest.TempPathFactory
                          ) -> tuple[ModelEvaluation, ...]:
    """The grader's evaluation of the real reference run's models: grader.evalchild predicts, the test computes accuracy."""
    from tunekit import data

    work = tmp_path_factory.mktemp("evaluation")
    images, labels = data.load_test("mnist")
    np.save(work / "images.npy", images, allow_pickle=False)
    evaluations = []
    for search in ("grid", "random"):
        model, predictions, report = (work / f"{search}.keras", work / f"{search}.npy", work / f"{search}.json")
        shutil.copyfile(reference_quick_run / "models" / f"best_{search}.keras", model)
        proc = subprocess.run([sys.executable, "-m", "grader.evalchild", str(work / "images.npy"), str(model),
                               str(predictions), str(report)],
                              cwd=ROOT, env=child_env(work / "home"), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reported = json.loads(report.read_text())
        assert reported["error"] is None and reported["architecture"]["conv2d"] == 2, reported
        accuracy = float((np.load(predictions) == labels).mean())
        evaluations.append(ModelEvaluation(search, f"models/best_{search}.keras", accuracy, len(labels), None, 0.0))
    return tuple(evaluations)


@pytest.mark.slow
def test_a_real_reference_run_scores_full_marks_on_the_quick_rubric(
        reference_quick_run: Path, reference_evaluations: tuple[ModelEvaluation, ...]) -> None:
    ev = gather(reference_quick_run, aliases=QUICK.aliases, run_status="completed", run_message=RAN,
                evaluations=reference_evaluations)
    results = run_checks(QUICK, ev)
    assert {c.id: (c.points, c.message) for c in results if c.status != "pass"} == {}
    assert score(results) == Score(100.0, 100.0)


@pytest.mark.slow
def test_a_real_run_of_the_untouched_template_scores_zero(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "student_template", repo)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "tuning.py"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env=child_env(tmp_path / "home", GRADER_OUTPUT_DIR=str(out), GRADER_PROFILE="quick"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    results = run_checks(QUICK, gather(out, aliases=QUICK.aliases, run_status="crashed",
                                       run_message=f"exited with code 1: {last}"))
    assert points(results) == {c.id: 0.0 for c in QUICK.checks}
    assert {k: v for k, v in messages(results).items() if k != "runtime"} == {
        k: v for k, v in UNTOUCHED_TEMPLATE.items() if k != "runtime"}
    assert messages(results)["runtime"] == UNTOUCHED_TEMPLATE["runtime"]


def test_an_artifact_written_either_way_counts_once_and_a_missing_one_names_both_ways() -> None:
    either = {"files": ["trials.jsonl|cv_results_*.csv|cv_results_*.json", "answers.yaml"]}
    sklearn = evidence(files={"cv_results_grid.csv": None, "cv_results_random.json": None, "answers.yaml": None})
    assert verdict(judged("artifacts", either, sklearn)) == (10.0, "pass", "all 2 required files are present and valid")
    assert verdict(judged("artifacts", either, evidence(files={"answers.yaml": None}))) == (
        5.0, "partial", "1 of 2 required files are present and valid; missing: trials.jsonl or cv_results_*.csv or "
                        "cv_results_*.json — write each required file into your output dir (GRADER_OUTPUT_DIR) in the "
                        "format its name promises")
