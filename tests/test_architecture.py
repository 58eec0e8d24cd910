"""model_architecture: each exported model's architecture, reported by its sandboxed evaluator, re-checked by the
grader, carried into result.json and judged against the rubric.

Real Keras models (tiny ones, built here with the torch backend) are saved to .keras files and evaluated through
grader.runner.evaluate_models, each in its own sandbox, as `grader grade` evaluates a submission's models.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT

from grader import runner
from grader.checks import run_check
from grader.evidence import Evidence
from grader.harvest import harvest
from grader.jsonio import schema_errors
from grader.parse import load_json
from grader.protocol import EvalReport
from grader.result import Architecture, ModelEvaluation, Slot, from_json, to_json
from grader.rubric import Check, load_rubric
from grader.sandbox import Limits
from grader.session import Layout, SessionSettings
from grader.staging import Submission

QUICK = load_rubric(ROOT / "grader" / "rubrics" / "quick.json")
N_TEST = 32
# The assignment's CNN in miniature: two Conv2D blocks, then Flatten, Dropout and the classifier.
ASSIGNMENT = Architecture(input_shape=(28, 28, 1), layers=("Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                                                           "Flatten", "Dropout", "Dense"),
                          layer_count=7, conv2d=2, params=2346)
# Three Conv2D layers, two of them in a nested Sequential, no pooling and no dropout.
NESTED = Architecture(input_shape=(28, 28, 1), layers=("Conv2D", "Conv2D", "Conv2D", "Flatten", "Dense"),
                      layer_count=5, conv2d=3, params=9786)
WANTED = {"conv_blocks": 2, "required_layers": ["Conv2D", "MaxPooling2D", "Dropout", "Dense"],
          "params": {"min": 1000, "max": 5000}, "input_shape": [28, 28, 1]}


def save_assignment_model(path: Path) -> Any:
    """The assignment's CNN in miniature (ASSIGNMENT), saved to path; returns the model."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                              layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
                              layers.Dropout(0.25), layers.Dense(10, activation="softmax")])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


def save_models(models: Path) -> None:
    """models/best_grid.keras (the assignment's shape), best_random.keras (nested, three Conv2D layers) and a
    best_bayesian.keras that is not a model at all."""
    import keras

    save_assignment_model(models / "best_grid.keras")
    layers = keras.layers
    inner = keras.Sequential([layers.Conv2D(2, 3), layers.Conv2D(2, 3)])
    keras.Sequential([keras.Input((28, 28, 1)), inner, layers.Conv2D(2, 3), layers.Flatten(),
                      layers.Dense(10, activation="softmax")]).save(models / "best_random.keras")
    (models / "best_bayesian.keras").write_bytes(b"PK\x03\x04 not a keras archive")


def random_images(n: int = N_TEST) -> np.ndarray:
    return np.random.default_rng(0).random((n, 28, 28, 1), dtype=np.float32)


def evaluate_outputs(base: Path, images: np.ndarray, labels: np.ndarray) -> list[ModelEvaluation]:
    """Evaluate the models of base/student/work/outputs as the grader does: copied out, then one sandbox each."""
    layout = Layout(base / "student")
    images_path = base / "data" / "test_images.npy"
    images_path.parent.mkdir(parents=True)
    np.save(images_path, images, allow_pickle=False)
    settings = SessionSettings(profile="quick", time_limit_s=300.0, seed=0, backend="torch", isolation="auto",
                               limits=Limits(memory_bytes=4 * 2**30), cell_timeout_s=None, eval_time_limit_s=120.0,
                               data_dir=base / "data", threads=1)
    job = runner.Job(Submission("student", base / "submission", "dir"), "sha256:" + "0" * 64, layout, settings, QUICK,
                     {}, runner.TestSplit(images_path, labels), 5 * 2**20, time.monotonic())
    found = harvest(layout.outputs, layout.collected_outputs, limits=runner.OUTPUT_LIMITS, keep=runner._outputs_kept,
                    within=layout.root)
    return runner.evaluate_models(layout, Slot("cpu", 0), job, found)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelEvaluation]:
    base = tmp_path_factory.mktemp("architecture")
    save_models(Layout(base / "student").outputs / "models")
    return {e.search: e for e in evaluate_outputs(base, random_images(), np.arange(N_TEST, dtype=np.int64) % 10)}


def judged(params: dict[str, Any], evaluations: tuple[ModelEvaluation, ...], files: tuple[str, ...] = ()
           ) -> tuple[float, str, bool]:
    check = Check("architecture", "model_architecture", 8.0, "The models follow the assignment's CNN", "visible",
                  params)
    result = run_check(check, Evidence(output_dir=Path("out"), evaluations=evaluations, files=dict.fromkeys(files)))
    return result.points, result.message, result.suspect


# ---------------------------------------------------------------------------------------------
# What the evaluator reports


def test_the_evaluator_reports_each_models_architecture_from_its_sandbox(evaluations: dict[str, ModelEvaluation]
                                                                          ) -> None:
    grid, random, bayesian = evaluations["grid"], evaluations["random"], evaluations["bayesian"]
    assert (grid.error, random.error) == (None, None)
    assert grid.test_accuracy is not None and random.test_accuracy is not None
    assert grid.architecture == ASSIGNMENT
    assert random.architecture == NESTED  # the nested Sequential's layers stand in its place
    assert bayesian.architecture is None and bayesian.test_accuracy is None
    assert bayesian.error is not None and bayesian.error.startswith("the model does not load: ")


def test_the_architecture_is_kept_in_result_json_and_older_results_still_load(evaluations: dict[str, ModelEvaluation]
                                                                             ) -> None:
    result = replace(from_json(_minimal_result()), evaluations=(evaluations["grid"], evaluations["bayesian"]))
    written = to_json(result)
    assert written["evaluations"][0]["architecture"] == {
        "input_shape": [28, 28, 1], "layers": ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout",
                                               "Dense"], "layer_count": 7, "conv2d": 2, "params": 2346}
    assert "architecture" not in written["evaluations"][1]  # as results written before it existed have it
    assert schema_errors(written, "result") == []
    assert from_json(written) == result
    assert from_json(written).evaluations[1].architecture is None


def _minimal_result() -> dict[str, Any]:
    return {"schema_version": 1, "student_id": "ann", "content_hash": None, "rubric_hash": "sha256:x",
            "grader_version": "0.1.0", "profile": "quick", "status": "completed", "message": "ran to the end",
            "exit_code": 0, "signal": None, "entry_point": "tuning.py",
            "timings": {"queued_s": 0.0, "run_s": 10.0, "evaluation_s": 1.0, "started_at": "2026-11-26T19:40:01Z",
                        "finished_at": "2026-11-26T19:40:12Z"},
            "slot": None, "isolation": None, "packages": {}, "artifacts": [], "evaluations": [], "logs": {},
            "checks": [], "score": None}


# ---------------------------------------------------------------------------------------------
# A hostile report: the evaluator's sandbox is shared with nothing, but its report is still re-checked


GOOD_REPORT = {"version": 1, "error": None, "architecture": {"input_shape": [28, 28, 1], "layers": ["Conv2D", "Dense"],
                                                             "layer_count": 2, "conv2d": 1, "params": 100}}


@pytest.mark.parametrize(("architecture", "message"), [
    ({"layers": ["Conv2D"] * 10**6}, "architecture.layers must be a list of at most 200 class names"),
    ({"layer_count": 10**6}, "architecture.layer_count must be a whole number from 0 to 100000"),
    ({"params": -5}, "architecture.params must be a whole number from 0 to 1000000000000"),
    ({"params": 10**13}, "architecture.params must be a whole number from 0 to 1000000000000"),
    ({"layers": "Conv2D"}, "architecture.layers must be a list of at most 200 class names"),
    ({"layers": ["Conv2D", 7]}, "architecture.layers[1] must be a string"),
    ({"conv2d": 3}, "architecture.conv2d must be a whole number from 0 to 2"),
    ({"layer_count": 1}, "architecture.layer_count 1 is less than the 2 layers listed"),
    ({"input_shape": [28, 28, -1]}, "architecture.input_shape[2] must be a whole number from 0 to 1000000"),
    ({"input_shape": "28x28"}, "architecture.input_shape must be a list of at most 8 axis sizes, or null"),
    ({"extra": 1}, "architecture has an unknown field 'extra'"),
])
def test_a_hostile_architecture_report_is_refused_with_one_line(architecture: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        EvalReport.from_json({**GOOD_REPORT, "architecture": {**GOOD_REPORT["architecture"], **architecture}})
    assert str(refused.value) == message


def test_a_report_that_is_not_an_object_or_holds_a_huge_number_is_refused() -> None:
    with pytest.raises(ValueError) as not_object:
        EvalReport.from_json({**GOOD_REPORT, "architecture": ["Conv2D"]})
    assert str(not_object.value) == "architecture is not a JSON object"
    raw = json.dumps(GOOD_REPORT).replace('"params": 100', '"params": ' + "9" * 5000)
    with pytest.raises(ValueError) as huge:  # the grader reads the file through grader.parse first
        EvalReport.from_json(load_json(raw.encode()))
    assert str(huge.value) == "an integer with more than 64 digits"


def test_a_class_name_is_bounded_kept_as_reported_and_escaped_in_the_message() -> None:
    report = EvalReport.from_json({**GOOD_REPORT, "architecture": {
        **GOOD_REPORT["architecture"], "layers": ["Conv2D", "Evil\x1b[31mLayer" + "x" * 500]}})
    assert report.architecture is not None
    name = report.architecture.layers[1]
    assert name.startswith("Evil\x1b[31mLayer") and len(name) == 100
    assert EvalReport.from_json({"version": 1, "error": None}).architecture is None  # an older child's report
    evaluation = ModelEvaluation("grid", "models/best_grid.keras", 0.9, N_TEST, None, 1.0, report.architecture)
    _, message, _ = judged({"required_layers": ["Dropout"]}, (evaluation,))
    assert "\x1b" not in message
    assert message.startswith("models/best_grid.keras has no Dropout layer (its layers: Conv2D, Evil\\x1b[31mLayerxxx")


# ---------------------------------------------------------------------------------------------
# The judge


def test_a_model_built_as_the_assignment_asks_earns_every_point(evaluations: dict[str, ModelEvaluation]) -> None:
    points, message, suspect = judged({**WANTED, "searches": ["grid"]}, (evaluations["grid"],))
    assert (points, suspect) == (8.0, False)
    assert message == ("models/best_grid.keras has 2 Conv2D layers, the required Conv2D, MaxPooling2D, Dropout and "
                       "Dense layers, 2,346 parameters and input shape (28, 28, 1)")


def test_each_requirement_missed_costs_its_share_and_says_what_was_found(evaluations: dict[str, ModelEvaluation]
                                                                        ) -> None:
    points, message, _ = judged({**WANTED, "searches": ["grid", "random"]}, (evaluations["grid"], evaluations["random"]))
    assert points == 5.5  # grid 4 of 4; random: input shape, half the layers: (1 + 0.5) / 4; (1 + 0.375) / 2 * 8
    assert message == (
        "models/best_grid.keras has 2 Conv2D layers, the required Conv2D, MaxPooling2D, Dropout and Dense layers, "
        "2,346 parameters and input shape (28, 28, 1); models/best_random.keras has 3 Conv2D layers (needs 2), "
        "no MaxPooling2D or Dropout layer (its layers: Conv2D, Flatten, Dense), 9,786 parameters (needs 1,000 to "
        "5,000) and input shape (28, 28, 1) — build each search's model with the assignment's architecture (2 Conv2D "
        "layers, Conv2D, MaxPooling2D, Dropout and Dense layers, 1,000 to 5,000 parameters, input shape (28, 28, 1)) "
        "and export that model")


def test_by_default_every_evaluated_model_is_judged_and_one_that_did_not_load_meets_nothing(
        evaluations: dict[str, ModelEvaluation]) -> None:
    points, message, _ = judged({"conv_blocks": 2, "input_shape": [28, 28, 1]}, tuple(evaluations.values()))
    assert points == 4.0  # grid 1, random 0.5 (the input shape), bayesian 0: 1.5 / 3 of 8
    assert message.startswith(
        "models/best_grid.keras has 2 Conv2D layers and input shape (28, 28, 1); models/best_random.keras has 3 Conv2D "
        "layers (needs 2) and input shape (28, 28, 1); bayesian: models/best_bayesian.keras could not be described "
        "(the model does not load: ")


def test_a_search_named_by_the_rubric_but_not_exported_earns_nothing_for_it(evaluations: dict[str, ModelEvaluation]
                                                                           ) -> None:
    points, message, _ = judged({"conv_blocks": 2, "searches": ["grid", "manual"]}, (evaluations["grid"],))
    assert points == 4.0
    assert message == ("models/best_grid.keras has 2 Conv2D layers; manual: models/best_manual.keras was not written "
                       "— build each search's model with the assignment's architecture (2 Conv2D layers) and export "
                       "that model")
    not_written = ModelEvaluation("random", "models/best_random.keras", None, N_TEST,
                                  "models/best_random.keras was not written", 0.0)
    points, message, _ = judged({"conv_blocks": 2}, (evaluations["grid"], not_written))
    assert points == 4.0
    assert message.startswith("models/best_grid.keras has 2 Conv2D layers; random: models/best_random.keras was not "
                              "written — ")
    points, message, _ = judged({"params": {"min": 10_000}}, ())
    assert points == 0.0
    assert message == ("no exported model was evaluated, so there is no architecture to check — save each search's "
                       "best model to models/best_<search>.keras")
