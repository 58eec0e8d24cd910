"""Grades that can't be faked: a class of dishonest submissions (a memoriser of the public test split, fabricated
trials, a model trained elsewhere, a copied trial log, an answer its own trials contradict) and an honest-looking
one, graded, verified and reported end to end; each gets the points, flag and message a course relies on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, child_env
from grader.result import read_result

REFERENCE_OUTPUTS = ROOT / "tests" / "fixtures" / "outputs" / "reference_quick"
RUBRIC = {
    "rubric_version": 1, "assignment": "a", "dataset": "mnist", "profile": "quick", "time_limit_s": 240,
    "entry_points": ["tuning.py"],
    "checks": [
        {"id": "architecture", "kind": "model_architecture", "points": 10, "title": "The assignment's CNN",
         "params": {"searches": ["grid"], "conv_blocks": 2, "required_layers": ["Conv2D", "MaxPooling2D", "Dense"]}},
        {"id": "consistency", "kind": "consistency", "points": 10, "title": "Claims against measurements",
         "params": {"ceiling": 0.995}},
        {"id": "verified", "kind": "verified_training", "points": 10, "title": "Claims re-trained",
         "params": {"searches": ["grid"], "tolerance": 0.02}},
        {"id": "lr-effect", "kind": "answer_text", "points": 10, "title": "The learning rate's effect",
         "params": {"key": "learning_rate_effect", "min_words": 5, "concepts": [["learning rate", "learning_rate"]],
                    "require_number": False, "check_claims": True}},
    ],
}

# A submission that only copies what it ships into the output dir: no search runs.
COPY_ONLY = """\
import os, shutil
from pathlib import Path
out = Path(os.environ["GRADER_OUTPUT_DIR"])
shutil.copytree(Path(__file__).parent / "shipped", out, dirs_exist_ok=True)
"""

# A submission that trains one real CNN for one epoch and writes trials it never ran.
TRAINS_ONCE = """\
import json, os
from pathlib import Path
os.environ.setdefault("KERAS_BACKEND", "torch")
import keras, numpy as np
out = Path(os.environ["GRADER_OUTPUT_DIR"]); (out / "models").mkdir(parents=True, exist_ok=True)
data = np.load(Path(os.environ["GRADER_DATA_DIR"]) / "mnist.npz")
x, y = data["x_train"][:3000, ..., None].astype("float32") / 255.0, data["y_train"][:3000]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                          keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                          keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=1, batch_size=64, verbose=0)
model.save(out / "models" / "best_grid.keras")
(out / "trials.jsonl").write_text((Path(__file__).parent / "made_up.jsonl").read_text())
(out / "answers.yaml").write_text("contract_version: 1\\nlearning_rate_effect: A higher learning rate lowered "
                                  "accuracy in my trials, so small steps are best.\\n")
"""


def made_up_trials() -> list[dict[str, Any]]:
    """16 grid trials never run: 0.99 at learning rate 0.01, 0.97 at 0.001, 30 s each."""
    trials = []
    for i, (lr, batch, filters, dropout) in enumerate((lr, b, f, d) for lr in (0.001, 0.01) for b in (32, 64)
                                                      for f in (8, 16) for d in (0.0, 0.3)):
        acc = 0.99 if lr == 0.01 else 0.97
        trials.append({"contract_version": 1, "search": "grid", "trial_id": f"{i:02d}",
                       "hyperparameters": {"learning_rate": lr, "batch_size": batch, "epochs": 1, "filters": filters,
                                           "kernel_size": 3, "dropout": dropout},
                       "status": "COMPLETED", "val_accuracy": acc, "val_loss": 0.05,
                       "history": {"val_accuracy": [acc], "val_loss": [0.05]}, "train_seconds": 30.0,
                       "finished_at": "2026-11-26T19:40:01Z"})
    return trials


def memoriser_model(path: Path) -> None:
    """A model that answers by looking the image up in the public MNIST test split (cosine nearest neighbour)."""
    import keras

    from tunekit import data

    images, labels = data.load_test("mnist")
    flat = images.reshape(len(images), -1).astype("float32")
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.UnitNormalization()(keras.layers.Flatten()(inputs))
    near = keras.layers.Dense(len(flat), use_bias=False, name="lookup")(x)
    sharp = keras.layers.Softmax()(keras.layers.Rescaling(500.0)(near))
    vote = keras.layers.Dense(10, use_bias=False, name="labels")(sharp)
    model = keras.Model(inputs, vote)
    model.get_layer("lookup").set_weights([flat.T])
    model.get_layer("labels").set_weights([np.eye(10, dtype="float32")[labels]])
    model.save(path)


def trained_elsewhere(path: Path) -> None:
    """The reference's CNN trained for one epoch outside the grader: a real model handed in with copied trials."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import keras_tuner as kt

    from reference import tuning
    from tunekit import data

    ds = data.load_train_val("mnist", train_size=3000, val_size=1000, seed=0, shrink_to_fit=True)
    keras.utils.set_random_seed(0)
    model = tuning.build_model(kt.HyperParameters())
    model.fit(ds.x_train, ds.y_train, epochs=1, batch_size=64, verbose=0)
    model.save(path)


def ship(sub: Path, files: dict[str, Any]) -> None:
    (sub / "shipped" / "models").mkdir(parents=True)
    (sub / "tuning.py").write_text(COPY_ONLY)
    for name, source in files.items():
        target = sub / "shipped" / name
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            source(target)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    base = tmp_path_factory.mktemp("dishonest")
    subs, out = base / "submissions", base / "out"
    ship(subs / "memoriser", {"models/best_grid.keras": memoriser_model,
                              "trials.jsonl": lambda p: p.write_text("".join(json.dumps(t) + "\n"
                                                                             for t in made_up_trials()))})
    elsewhere = base / "elsewhere.keras"
    trained_elsewhere(elsewhere)
    for sid in ("trained_elsewhere", "copycat"):
        ship(subs / sid, {"models/best_grid.keras": elsewhere, "trials.jsonl": REFERENCE_OUTPUTS / "trials.jsonl",
                          "answers.yaml": REFERENCE_OUTPUTS / "answers.yaml"})
    (subs / "fabricated").mkdir()
    (subs / "fabricated" / "tuning.py").write_text(TRAINS_ONCE)
    (subs / "fabricated" / "made_up.jsonl").write_text("".join(json.dumps(t) + "\n" for t in made_up_trials()))
    rubric = base / "rubric.json"
    rubric.write_text(json.dumps(RUBRIC))
    env = child_env(base / "home")
    for verb in (["grade", str(subs), "--gpus", "none"], ["verify", str(out), "--retrain"], ["report", str(out)]):
        proc = subprocess.run([sys.executable, "-m", "grader.cli", *verb, "--rubric", str(rubric),
                               *(["--out", str(out)] if verb[0] == "grade" else [])],
                              cwd=base, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (verb, proc.stdout[-2000:], proc.stderr[-3000:])
    return out


def checks_of(out: Path, sid: str) -> dict[str, Any]:
    return {c.id: c for c in read_result(out / sid / "result.json").checks}


@pytest.mark.slow
def test_a_memoriser_of_the_public_test_split_is_caught_by_its_architecture_its_accuracy_and_re_training(
        graded: Path) -> None:
    result = read_result(graded / "memoriser" / "result.json")
    assert result.evaluations[0].test_accuracy == 1.0  # it does know the answers
    checks = checks_of(graded, "memoriser")
    assert checks["architecture"].message.startswith(
        "models/best_grid.keras has 0 Conv2D layers (needs 2) and no Conv2D or MaxPooling2D layer (its layers: "
        "Flatten, UnitNormalization, Dense, Rescaling, Softmax)")
    consistency = checks["consistency"]
    assert consistency.suspect and "grid: test accuracy 1.0000 is above the calibrated ceiling 0.995" in \
        consistency.message, consistency.message
    assert "trials claim 480.0 s of training; the run lasted " in consistency.message
    verified = checks["verified"]
    assert (verified.points, verified.suspect) == (0.0, True), verified.message
    assert verified.message.startswith("grid: you claimed 0.9900 val accuracy (trial 08, trials.jsonl line 9: ")


@pytest.mark.slow
def test_fabricated_trials_beside_a_real_model_are_caught_by_time_re_training_and_the_answers_own_numbers(
        graded: Path) -> None:
    checks = checks_of(graded, "fabricated")
    assert checks["architecture"].status == "pass", checks["architecture"].message
    assert checks["consistency"].suspect
    assert "trials claim 480.0 s of training; the run lasted " in checks["consistency"].message
    assert (checks["verified"].points, checks["verified"].suspect) == (0.0, True), checks["verified"].message
    answer = checks["lr-effect"]
    assert answer.points < answer.max_points
    assert ('learning_rate_effect: you wrote "A higher learning rate lowered accuracy", but in your trials '
            "learning_rate 0.01 averaged 0.990") in answer.message, answer.message


@pytest.mark.slow
def test_a_model_trained_elsewhere_with_copied_trials_is_caught_by_time_and_its_copy_by_the_similarity_report(
        graded: Path) -> None:
    for sid in ("trained_elsewhere", "copycat"):
        checks = checks_of(graded, sid)
        assert checks["architecture"].status == "pass"
        assert checks["consistency"].suspect and "s of training; the run lasted " in checks["consistency"].message
        assert checks["verified"].status == "pass", checks["verified"].message  # the claims are a real run's
        assert checks["lr-effect"].status == "pass", checks["lr-effect"].message  # answers that agree with them
    page = (graded / "report" / "index.html").read_text()
    assert "copycat" in page and "trained_elsewhere" in page and "trials identical" in page
