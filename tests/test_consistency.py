"""consistency: what a submission's trials claim, held against what the grader measured (run time, KerasTuner's own
trial files, the exported models' test accuracy).

The honest submission is the reference's quick run (its trials.jsonl and, from the same run, its KerasTuner
project dirs); the dishonest ones are that run edited the way a student would fake it, and a real model exported
with no training at all, evaluated in its sandbox as `grader grade` does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_architecture import evaluate_outputs, random_images, save_assignment_model
from test_evidence import ALIASES, KERAS_TUNER_ONLY, REFERENCE_EVALUATIONS, reference_output, trial_lines, write_lines

from grader.checks import run_check
from grader.evidence import Evidence, gather
from grader.result import ModelEvaluation
from grader.rubric import Check
from grader.session import Layout

# The reference run's trials claim 252.8 s of training: best grid 0.9470 (16 trials), best random 0.9110 (8 trials).
HONEST_MESSAGE = ("trials claim 252.8 s of training in a run of 300.0 s; trials.jsonl agrees with the KerasTuner "
                  "trials of grid and random; test accuracy in line with the claimed val accuracy (grid 0.9385 "
                  "against 0.9470, random 0.9100 against 0.9110)")
ACTION = (" — flagged for review: report what your run really did (each trial's own train_seconds and val accuracy, "
          "and the model its best trial trained)")


def with_tuner(dest: Path) -> Path:
    """The reference run's output dir with the same run's KerasTuner project dirs in tuner/."""
    out = reference_output(dest)
    shutil.copytree(KERAS_TUNER_ONLY / "tuner", out / "tuner")
    return out


def judged(ev: Evidence, **params: Any) -> tuple[float, str, bool]:
    result = run_check(Check("consistency", "consistency", 6.0, "Claims match measurements", "visible", params), ev)
    return result.points, result.message, result.suspect


def evidence(out: Path, *, run_seconds: float | None = 300.0, status: str = "completed",
             evaluations: tuple[ModelEvaluation, ...] = REFERENCE_EVALUATIONS) -> Evidence:
    return gather(out, aliases=ALIASES, run_status=status, run_message="ran to the end", evaluations=evaluations,
                  run_seconds=run_seconds)


def test_an_honest_run_is_consistent_in_every_part(tmp_path: Path) -> None:
    assert judged(evidence(with_tuner(tmp_path / "out"))) == (6.0, HONEST_MESSAGE, False)


def test_trials_claiming_ten_times_the_run_are_suspect(tmp_path: Path) -> None:
    points, message, suspect = judged(evidence(with_tuner(tmp_path / "out"), run_seconds=25.3))
    assert (points, suspect) == (4.0, True)
    assert message == ("trials claim 252.8 s of training; the run lasted 25.3 s; " + HONEST_MESSAGE.split("; ", 1)[1]
                       + ACTION)


@pytest.mark.parametrize(("run_seconds", "slack", "consistent"), [
    (225.3, {}, True),  # 252.8 <= 1.1 * 225.3 + 5 = 252.83
    (225.2, {}, False),  # 252.72
    (200.0, {"factor": 1.2, "seconds": 13}, True),  # 253.0
    (200.0, {"factor": 1.2, "seconds": 12}, False),  # 252.0
])
def test_the_claimed_time_may_exceed_the_run_by_the_rubrics_slack(tmp_path: Path, run_seconds: float,
                                                                  slack: dict[str, float], consistent: bool) -> None:
    params = {"seconds_slack": slack} if slack else {}
    points, message, suspect = judged(evidence(with_tuner(tmp_path / "out"), run_seconds=run_seconds), **params)
    assert (points, suspect) == ((6.0, False) if consistent else (4.0, True))
    assert message.startswith(f"trials claim 252.8 s of training in a run of {run_seconds:.1f} s; " if consistent else
                              f"trials claim 252.8 s of training; the run lasted {run_seconds:.1f} s; ")


def test_without_a_measured_run_the_time_is_not_judged(tmp_path: Path) -> None:
    points, message, _ = judged(evidence(with_tuner(tmp_path / "out"), run_seconds=None))
    assert points == 6.0
    assert message.startswith("trials claim 252.8 s of training (no measured run time to hold it against); ")


def test_trials_jsonl_that_disagrees_with_the_keras_tuner_trials_is_suspect(tmp_path: Path) -> None:
    out = with_tuner(tmp_path / "out")
    lines = trial_lines(out / "trials.jsonl")
    grid = [i for i, line in enumerate(lines) if line["search"] == "grid"]
    best = max(grid, key=lambda i: lines[i]["val_accuracy"])
    lines[best]["val_accuracy"] = 0.99  # a better best than the run trained
    del lines[next(i for i in grid if i != best)]  # and one trial fewer
    write_lines(out / "trials.jsonl", lines)
    points, message, suspect = judged(evidence(out, evaluations=()))
    assert (points, suspect) == (4.0, True)
    assert message == ("grid: trials.jsonl has 15 completed trials, best 0.9900; its KerasTuner project tuner/grid has "
                       "16, best 0.9470; trials claim 213.0 s of training in a run of 300.0 s; no evaluated model to "
                       "hold the claimed val accuracy against" + ACTION)


def test_a_run_stopped_by_its_time_box_may_leave_the_tuner_one_trial_ahead(tmp_path: Path) -> None:
    out = with_tuner(tmp_path / "out")
    lines = trial_lines(out / "trials.jsonl")
    last_grid = max(i for i, line in enumerate(lines) if line["search"] == "grid" and line["val_accuracy"] < 0.947)
    write_lines(out / "trials.jsonl", lines[:last_grid] + lines[last_grid + 1:])
    timed_out = judged(evidence(out, status="timed_out", evaluations=()))
    assert timed_out[0] == 6.0 and "trials.jsonl agrees with the KerasTuner trials of grid and random" in timed_out[1]
    completed = judged(evidence(out, evaluations=()))
    assert completed[0] == 4.0 and completed[2]
    assert completed[1].startswith("grid: trials.jsonl has 15 completed trials, best 0.9470; its KerasTuner project "
                                   "tuner/grid has 16, best 0.9470; ")


def test_a_model_far_better_than_its_claims_or_the_ceiling_is_suspect(tmp_path: Path) -> None:
    out = with_tuner(tmp_path / "out")
    memorised = (ModelEvaluation("grid", "models/best_grid.keras", 0.999, 10000, None, 3.0),
                 ModelEvaluation("random", "models/best_random.keras", 0.93, 10000, None, 3.0))
    points, message, suspect = judged(evidence(out, evaluations=memorised))
    assert (points, suspect) == (4.0, True)
    assert message.startswith("grid: test accuracy 0.9990 is 0.0520 above the best claimed val accuracy 0.9470 (more "
                              "than 0.05); trials claim 252.8 s")
    points, message, _ = judged(evidence(out, evaluations=memorised), ceiling=0.92)
    assert points == 4.0
    assert message.startswith("grid: test accuracy 0.9990 is above the calibrated ceiling 0.92; random: test accuracy "
                              "0.9300 is above the calibrated ceiling 0.92; ")
    assert judged(evidence(out, evaluations=memorised), above_val_tolerance=0.06)[0] == 6.0


def test_a_real_model_exported_without_any_training_claim_is_suspect(tmp_path: Path) -> None:
    """No trials at all, yet a working model: the claims (none) cannot account for its accuracy."""
    model = save_assignment_model(Layout(tmp_path / "student").outputs / "models" / "best_grid.keras")
    images = random_images()
    labels = np.asarray(model.predict(images, verbose=0)).argmax(axis=-1).astype(np.int64)  # it scores 1.0
    evaluations = tuple(evaluate_outputs(tmp_path, images, labels))
    assert [(e.search, e.test_accuracy) for e in evaluations] == [("grid", 1.0), ("random", None)]
    ev = gather(Layout(tmp_path / "student").collected_outputs, run_status="completed", run_message="ran to the end",
                evaluations=evaluations, run_seconds=12.0)
    points, message, suspect = judged(ev)
    assert (points, suspect) == (4.0, True)
    assert message == ("grid: models/best_grid.keras scores 1.0000 test accuracy, yet no completed grid trial claims "
                       "a val accuracy; trials claim 0.0 s of training in a run of 12.0 s; no trials.jsonl to hold "
                       "against KerasTuner's trials" + ACTION)
