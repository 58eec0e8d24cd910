"""The runner's own decisions on what a run left: predictions read back safely, why a model is not evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.runner import _accuracy, _outputs_kept, _refuse_model

LABELS = np.array([0, 1, 2, 3], dtype=np.int64)


def test_predictions_are_scored_against_the_labels_the_grader_kept(tmp_path: Path) -> None:
    path = tmp_path / "predictions.npy"
    np.save(path, np.array([0, 1, 2, 0], dtype=np.int64), allow_pickle=False)
    assert _accuracy(path, LABELS) == (0.75, None)


def test_predictions_whose_header_claims_a_huge_shape_are_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "predictions.npy"
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (100000000000000,), }"
    header += b" " * (118 - len(header)) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64)
    accuracy, error = _accuracy(path, LABELS)
    assert accuracy is None and error.startswith("the evaluation left no readable predictions: ")


def test_predictions_of_the_wrong_shape_or_kind_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "predictions.npy"
    np.save(path, np.zeros((4, 10)), allow_pickle=False)
    assert _accuracy(path, LABELS) == (None, "the model gave 40 predictions for 4 test images")


def test_why_a_model_is_not_evaluated() -> None:
    rel = "models/best_grid.keras"
    assert _refuse_model(rel, {rel: 10}, {}, 100) is None
    assert _refuse_model(rel, {rel: 200 * 2**20}, {}, 100 * 2**20) == (
        "models/best_grid.keras is 200.0 MiB, over the 100 MiB limit for a model")
    assert _refuse_model(rel, {}, {rel: "is a FIFO"}, 100) == "models/best_grid.keras was not read: it is a FIFO"
    assert _refuse_model(rel, {}, {"models": "is a symbolic link"}, 100) == (
        "models/best_grid.keras was not read: models is a symbolic link")
    assert _refuse_model(rel, {f"{rel}/config.json": 3}, {}, 100) == "models/best_grid.keras is a folder, not a model file"
    assert _refuse_model(rel, {}, {}, 100) == "models/best_grid.keras was not written"
    assert _refuse_model(rel, {}, {}, 100, stopped=True) == (
        "models/best_grid.keras was not read: the output dir holds more than the grader copies (see its refused entries)")


def test_only_the_trial_files_of_a_keras_tuner_project_are_copied() -> None:
    assert _outputs_kept("trials.jsonl") and _outputs_kept("tuner/") and _outputs_kept("tuner/grid/trial_00/")
    assert _outputs_kept("tuner/grid/oracle.json") and _outputs_kept("tuner/grid/trial_00/trial.json")
    assert not _outputs_kept("tuner/grid/trial_00/checkpoint.weights.h5")
    assert not _outputs_kept("tuner/grid/trial_00/checkpoint")
