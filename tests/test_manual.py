"""Manual search: hand-chosen trials with a reason each (tunekit's ManualSpace and ManualOracle), trials.jsonl's
"reason", the manual_search check, better_search and the answers over every search that ran, validate-output, and
the shipped week_quick rubric grading the reference's four searches end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, child_env
from grader.checks import run_check
from grader.evidence import Evidence, Trial, gather
from grader.result import CheckResult, read_result
from grader.rubric import Check, load_rubric, resolve_rubric
from grader.validate import validate_output_dir
from test_validate import jsonl, trial, write_valid_output_dir
from tunekit.config import parse_args, searches_to_run
from tunekit.spaces import ManualSpace, ManualTrial, to_keras_tuner

REASONS = ["Adam's usual rate with the baseline's sizes", "twice the steps with a smaller batch",
           "one more epoch as the last one was still improving"]


def manual(i: int, acc: float, *, lr: float = 1e-3, batch: int = 64, reason: str | None = None,
           search: str = "manual") -> Trial:
    return Trial(search, str(i), {"learning_rate": lr, "batch_size": batch}, "COMPLETED", acc, 0.3, 2.0,
                 "trials.jsonl", i + 1, reason=REASONS[i % 3] if reason is None else reason)


def evidence(*trials: Trial) -> Evidence:
    return Evidence(output_dir=Path("out"), trials=tuple(trials))


def judged(ev: Evidence, **params: Any) -> CheckResult:
    return run_check(Check("manual", "manual_search", 9.0, "Manual search", "visible", params), ev)


AUTOMATED = (Trial("grid", "00", {"learning_rate": 0.01}, "COMPLETED", 0.947, 0.2, 12.5, "trials.jsonl", 10),
             Trial("grid", "01", {"learning_rate": 0.001}, "COMPLETED", 0.9, 0.3, 13.0, "trials.jsonl", 11),
             Trial("random", "00", {"learning_rate": 0.005}, "COMPLETED", 0.93, 0.2, 4.0, "trials.jsonl", 12))


# ---------------------------------------------------------------------------------------------
# the manual_search check


def test_three_explained_distinct_manual_trials_earn_full_marks_and_are_set_against_the_best_automated_search() -> None:
    result = judged(evidence(manual(0, 0.81), manual(1, 0.93, batch=32), manual(2, 0.957, lr=3e-3), *AUTOMATED))
    assert (result.points, result.status) == (9.0, "pass")
    assert result.message == ("3 completed manual trials (needs 3); best manual 0.9570 in 3 trials (6 s) against the "
                              "best automated search, grid 0.9470 in 2 trials (25.5 s)")


def test_a_manual_trial_without_a_reason_of_four_words_costs_its_share_of_the_reasons_third() -> None:
    result = judged(evidence(manual(0, 0.8), manual(1, 0.9, batch=32, reason="bigger"),
                             manual(2, 0.91, lr=3e-3, reason=""), *AUTOMATED))
    assert result.points == pytest.approx(9.0 * (1 + 1 / 3 + 1) / 3)
    assert result.message == (
        "3 completed manual trials (needs 3); 2 without a reason of 4 words or more (trial 1, trials.jsonl line 2; "
        "trial 2, trials.jsonl line 3); best manual 0.9100 in 3 trials (6 s) against the best automated search, grid "
        "0.9470 in 2 trials (25.5 s) — give each manual trial a one-line reason for choosing it")


def test_a_manual_trial_repeating_an_earlier_configuration_and_too_few_trials_each_cost_their_share() -> None:
    result = judged(evidence(manual(0, 0.8), manual(1, 0.8)), min_trials=3, min_reason_words=2)
    assert result.points == pytest.approx(9.0 * (2 / 3 + 1 + 1 / 2) / 3)
    assert result.message == (
        "2 completed manual trials (needs 3); 1 repeating an earlier configuration (trial 1, trials.jsonl line 2); "
        "no automated search has a completed trial to compare the manual search with — run at least 3 manual "
        "trials, make each manual trial a configuration you have not tried yet")


def test_no_manual_trial_among_the_automated_ones_earns_nothing_and_says_where_to_write_them() -> None:
    result = judged(evidence(*AUTOMATED))
    assert (result.points, result.status) == (0.0, "fail")
    assert result.message == ("no completed manual trial was found among your grid and random trials — choose 3 "
                              "configurations by hand (manual_trials in tuning.py), each with a one-line reason, and "
                              "run them with the manual search")
    assert judged(evidence()).message.startswith("no completed manual trial was found (trials.jsonl: file is missing)")


def test_a_hostile_reason_is_counted_in_words_and_never_shown() -> None:
    hostile = "\x1b[2J\x1b]8;;http://x\x07 <script>alert(1)</script> =HYPERLINK(\"x\") " * 3
    result = judged(evidence(manual(0, 0.8, reason=hostile), manual(1, 0.8, batch=32), manual(2, 0.9, lr=0.01)))
    assert result.points == 9.0
    assert "script" not in result.message and "\x1b" not in result.message and "HYPERLINK" not in result.message


def test_better_search_weighs_the_manual_search_when_it_ran() -> None:
    ev = evidence(manual(0, 0.957), *AUTOMATED)
    ev = Evidence(output_dir=Path("out"), trials=ev.trials, answers={"better_search": "grid"})
    check = Check("better", "answer_choice", 4.0, "Better search", "visible",
                  {"key": "better_search", "against": "better_search", "margin": 0.005})
    result = run_check(check, ev)
    assert (result.points, result.message) == (0.0, "better_search: you answered grid, but your trials show manual "
                                                    "ahead (grid 0.9470 against random 0.9300, manual 0.9570 best val "
                                                    "accuracy) — answer from your own trials")


# ---------------------------------------------------------------------------------------------
# trials.jsonl's reason, as the grader reads it and as validate-output checks it


def test_a_manual_trials_reason_is_read_and_a_missing_one_breaks_the_contract(tmp_path: Path) -> None:
    out = write_valid_output_dir(tmp_path / "outputs")
    records = [trial("grid", "00"), trial("random", "00"), trial("manual", "0", reason="start from the defaults"),
               trial("manual", "1", hyperparameters={"learning_rate": 0.003})]
    (out / "trials.jsonl").write_text(jsonl(records))
    ev = gather(out)
    assert [(t.search, t.trial_id, t.reason) for t in ev.trials_of("manual")] == [
        ("manual", "0", "start from the defaults"), ("manual", "1", None)]
    assert [str(v) for v in validate_output_dir(out).violations if v.file == "trials.jsonl"] == [
        'trials.jsonl line 4: a manual trial needs its "reason": one line on why it was chosen']


def test_a_reason_longer_than_a_line_of_300_characters_drops_its_trial_with_the_schemas_words(tmp_path: Path) -> None:
    out = write_valid_output_dir(tmp_path / "outputs")
    (out / "trials.jsonl").write_text(jsonl([trial("manual", "0", reason="x" * 5000)]))
    ev = gather(out)
    assert ev.trials_of("manual") == ()
    assert [str(p) for p in ev.problems_in("trials.jsonl")] == [
        f"trials.jsonl line 1: $.reason: '{'x' * 38}... is too long"]


def test_validate_output_asks_for_the_manual_model_when_told_to() -> None:
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "validate-output", "--help"], capture_output=True,
                          text=True, cwd=ROOT)
    assert "of grid, random, bayesian and manual" in " ".join(proc.stdout.split())


def test_validate_output_with_the_manual_search_needs_its_model(tmp_path: Path) -> None:
    out = write_valid_output_dir(tmp_path / "outputs")
    found = [str(v) for v in validate_output_dir(out, searches=("grid", "random", "manual")).violations]
    assert found == ["models/best_manual.keras: file is missing"]


# ---------------------------------------------------------------------------------------------
# tunekit: the manual plan, the searches a run does, the oracle that hands the plan out


def test_a_manual_trial_needs_a_one_line_reason_and_the_contracts_names() -> None:
    with pytest.raises(ValueError, match="a manual trial's reason is one line of 1 to 300 characters, not ''"):
        ManualTrial({"learning_rate": 0.01}, "")
    with pytest.raises(ValueError, match="a manual trial's reason is one line"):
        ManualTrial({"learning_rate": 0.01}, "first line\nsecond line")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['lr'\]"):
        ManualTrial({"lr": 0.01}, "a reason of some words")
    with pytest.raises(ValueError, match="a manual search needs at least one trial"):
        ManualSpace(trials=())


def test_a_manual_plan_fills_each_trial_from_fixed_and_becomes_kerastuner_choices() -> None:
    space = ManualSpace(trials=(ManualTrial({"learning_rate": 0.001}, "the defaults first"),
                                ManualTrial({"learning_rate": 0.01, "dropout": 0.1}, "ten times the step size")),
                        fixed={"dropout": 0.25, "epochs": 1})
    assert space.points() == [{"dropout": 0.25, "epochs": 1, "learning_rate": 0.001},
                              {"dropout": 0.1, "epochs": 1, "learning_rate": 0.01}]
    hp = to_keras_tuner(space)
    assert {h.name: h.values for h in hp.space} == {"dropout": [0.25, 0.1], "epochs": [1],
                                                    "learning_rate": [0.001, 0.01]}


def test_a_run_adds_manual_from_GRADER_SEARCHES_in_the_contracts_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SEARCHES", "manual,grid")
    assert parse_args([]).searches == ("grid", "random", "manual")
    assert searches_to_run(["bayesian", "manual"]) == ("grid", "random", "bayesian", "manual")
    with pytest.raises(ValueError, match="each search in GRADER_SEARCHES must be one of grid, random, bayesian, "
                                         "manual, not 'by-hand'"):
        searches_to_run(["by-hand"])


def test_the_manual_oracle_trains_the_plan_in_order_and_logs_each_reason(tmp_path: Path) -> None:
    import keras
    import keras_tuner as kt

    from tunekit.recorder import ORACLES, RecordingTuner, TrialLog

    space = ManualSpace(trials=(ManualTrial({"learning_rate": 0.001}, "Adam's usual rate to start"),
                                ManualTrial({"learning_rate": 0.1}, "ten times bigger steps, to see it diverge")),
                        fixed={"epochs": 1})

    def build(hp: kt.HyperParameters) -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(keras.optimizers.Adam(hp.get("learning_rate")), "sparse_categorical_crossentropy", ["accuracy"])
        return model

    oracle = ORACLES["manual"](objective=kt.Objective("val_accuracy", "max"), hyperparameters=to_keras_tuner(space),
                               plan=space)
    log = TrialLog(tmp_path / "out" / "trials.jsonl")
    tuner = RecordingTuner(search="manual", trial_log=log, seed=0, oracle=oracle, hypermodel=build,
                           directory=str(tmp_path / "tuner"), project_name="manual")
    x, y = np.random.default_rng(0).normal(size=(32, 4)).astype("float32"), np.arange(32) % 2
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    records = log.read()
    assert [(r["search"], r["trial_id"], r["hyperparameters"], r["reason"]) for r in records] == [
        ("manual", "0", {"learning_rate": 0.001, "epochs": 1}, "Adam's usual rate to start"),
        ("manual", "1", {"learning_rate": 0.1, "epochs": 1}, "ten times bigger steps, to see it diverge")]


# ---------------------------------------------------------------------------------------------
# the shipped rubric for the whole week, and the reference graded with it


def test_the_week_rubric_asks_for_all_four_searches_and_is_worth_100_points() -> None:
    rubric = load_rubric(resolve_rubric("week_quick"))
    assert rubric.searches == ("grid", "random", "bayesian", "manual")
    assert rubric.max_points == 100.0
    kinds = {c.kind for c in rubric.checks}
    assert {"bayesian_coverage", "manual_search"} <= kinds
    assert any(c.params.get("key") == "manual_vs_automated" for c in rubric.checks)


@pytest.mark.slow
def test_the_reference_graded_with_the_week_rubric_runs_all_four_searches_and_passes_the_manual_checks(
        tmp_path: Path) -> None:
    subs, out = tmp_path / "submissions", tmp_path / "out"
    (subs / "ann").mkdir(parents=True)
    shutil.copyfile(ROOT / "reference" / "tuning.py", subs / "ann" / "tuning.py")
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", "week_quick",
                           "--out", str(out), "--gpus", "none"],
                          cwd=tmp_path, env=child_env(tmp_path / "home"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_result(out / "ann" / "result.json")
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    trials = [json.loads(line) for line in (out / "ann" / "collected" / "outputs" / "trials.jsonl").read_text()
              .splitlines()]
    assert {t["search"] for t in trials} == {"grid", "random", "bayesian", "manual"}
    spaces = json.loads((out / "ann" / "collected" / "outputs" / "search_spaces.json").read_text())
    assert spaces["bayesian"] == spaces["random"] and "manual" not in spaces  # random's ranges and trial budget
    assert sum(t["search"] == "bayesian" for t in trials) == spaces["random"]["max_trials"] == 8
    assert [len(t["reason"].split()) >= 4 for t in trials if t["search"] == "manual"] == [True] * 3
    assert {e.search for e in res.evaluations} == {"grid", "random", "bayesian", "manual"}
    checks = {c.id: c for c in res.checks}
    assert checks["manual-search"].status == "pass", checks["manual-search"].message
    assert checks["manual-search"].message.startswith("3 completed manual trials (needs 3); best manual ")
    assert checks["answer-manual-vs-automated"].status == "pass", checks["answer-manual-vs-automated"].message
    assert [(c.id, c.status) for c in res.checks if c.status != "pass" and c.id != "bayesian-coverage"] == []
    assert res.score.earned >= 97.0, [(c.id, c.points, c.message) for c in res.checks if c.status != "pass"]
