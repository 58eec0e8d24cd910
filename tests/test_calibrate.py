"""`grader calibrate`: the reference's figures and provenance recorded, tiers re-set from declared margins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from grader import calibrate
from grader.result import Isolation, ModelEvaluation, Result, Score, Slot, Timings
from grader.rubric import load_rubric, rubric_problems


def reference_result(grid: float, random: float) -> Result:
    return Result(1, "reference", "sha256:" + "0" * 64, "sha256:" + "1" * 64, "0.1.0", "quick", "completed",
                  "ran to the end", 0, None, "tuning.py", Timings(0.0, 61.5, 8.2, "2026-11-26T00:00:00Z",
                                                                 "2026-11-26T00:01:10Z"),
                  Slot("cpu", 0), Isolation("bwrap", "limits"), {"keras": "3.15.1", "torch": "2.13.0"},
                  evaluations=(ModelEvaluation("grid", "models/best_grid.keras", grid, 10000, None, 8.2),
                               ModelEvaluation("random", "models/best_random.keras", random, 10000, None, 8.2)),
                  score=Score(100.0, 100.0))


def rubric_with_margins() -> dict:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    for check in doc["checks"]:
        if check["kind"] == "accuracy_threshold":
            check["params"]["tiers"] = [{"margin": 0.08, "fraction": 0.5, "min_accuracy": 0.5},
                                        {"margin": 0.02, "fraction": 1.0, "min_accuracy": 0.5}]
    return doc


def test_tiers_with_margins_follow_the_references_accuracy_and_provenance_is_recorded() -> None:
    out = calibrate.apply_calibration(rubric_with_margins(), reference_result(0.95, 0.91),
                                      measured_on={"cpu": "test cpu", "cores": 2, "gpus": [], "os": "linux"},
                                      date="2026-11-26T00:00:00Z")
    tiers = {c["id"]: [t["min_accuracy"] for t in c["params"]["tiers"]]
             for c in out["checks"] if c["kind"] == "accuracy_threshold"}
    assert tiers == {"accuracy-grid": [0.87, 0.93], "accuracy-random": [0.83, 0.89]}
    cal = out["calibration"]
    assert cal["reference"]["test_accuracy"] == {"grid": 0.95, "random": 0.91}
    assert cal["reference"]["run_seconds"] == 61.5 and cal["date"] == "2026-11-26T00:00:00Z"
    assert cal["hardware"]["cpu"] == "test cpu" and cal["packages"]["keras"] == "3.15.1"
    assert rubric_problems(out) == []


def test_the_fast_trainers_re_training_of_the_references_claims_is_recorded_beside_them() -> None:
    from grader.verify import Verification, VerifiedSearch

    verification = Verification(1, None, "mnist", "quick", "fasttrain-1", (
        VerifiedSearch("grid", "trial 10, trials.jsonl line 11", {"learning_rate": 0.01}, 0.947, 0.957, 1.2, None),
        VerifiedSearch("random", "trial 0, trials.jsonl line 17", {"learning_rate": 0.005}, 0.947, None, None,
                       "epochs 60 is more than the 50 verify re-trains")))
    out = calibrate.apply_calibration(rubric_with_margins(), reference_result(0.95, 0.91), measured_on={}, date="d",
                                      verification=verification)
    assert out["calibration"]["reference"]["verified"] == {
        "grid": {"claimed_val_accuracy": 0.947, "retrained_val_accuracy": 0.957},
        "random": {"claimed_val_accuracy": 0.947, "retrained_val_accuracy": None}}
    assert "verified" not in calibrate.apply_calibration(rubric_with_margins(), reference_result(0.95, 0.91),
                                                         measured_on={}, date="d")["calibration"]["reference"]


def test_tiers_without_a_margin_are_left_alone() -> None:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    out = calibrate.apply_calibration(doc, reference_result(0.95, 0.91), measured_on={}, date="d")
    assert [c.get("params") for c in out["checks"]] == [c.get("params") for c in doc["checks"]]


@pytest.mark.slow
def test_calibrate_grades_the_reference_here_and_rewrites_the_rubric(tmp_path: Path) -> None:
    rubric = tmp_path / "quick.json"
    rubric.write_text(json.dumps(rubric_with_margins()))
    calibrated = calibrate.main(rubric=rubric, gpus="none")
    written = load_rubric(rubric)
    assert written.raw == calibrated
    accuracy = calibrated["calibration"]["reference"]["test_accuracy"]
    assert accuracy["grid"] >= 0.9
    grid_tiers = next(c for c in calibrated["checks"] if c["id"] == "accuracy-grid")["params"]["tiers"]
    assert [t["min_accuracy"] for t in grid_tiers] == [round(accuracy["grid"] - 0.08, 4), round(accuracy["grid"] - 0.02, 4)]
    assert calibrated["calibration"]["reference"]["score"]["earned"] > 0
