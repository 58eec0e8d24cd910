"""The reference solution: model structure, search spaces, the searches' trial sequences, and a real quick run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

from conftest import ROOT, child_env, run_reference  # noqa: E402
from grader.contract import HYPERPARAMETERS  # noqa: E402
from grader.validate import validate_output_dir  # noqa: E402
from reference import tuning  # noqa: E402
from tunekit import analysis  # noqa: E402
from tunekit.recorder import Deadline, GridSearchOracle, RandomSearchOracle  # noqa: E402
from tunekit.spaces import GridSpace, to_keras_tuner  # noqa: E402


def fixed_hp(**values: object) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def drain(oracle: kt.Oracle, limit: int = 100) -> list[dict]:
    """Ask the oracle for trials until it stops, ending each with a made-up score; the values it proposed."""
    proposed = []
    for _ in range(limit):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return proposed
        proposed.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    raise AssertionError("the oracle never stopped")


def make_oracle(cls: type, space: object, tmp_path: Path, seed: int = 0, max_trials: int | None = None) -> kt.Oracle:
    oracle = cls(objective=kt.Objective("val_accuracy", "max"), max_trials=max_trials or 100,
                 hyperparameters=to_keras_tuner(space), tune_new_entries=False, seed=seed)
    oracle._set_project_dir(str(tmp_path), f"p{seed}{cls.__name__}")
    return oracle


# ---- the model ---------------------------------------------------------------------------------

def test_build_model_takes_every_architecture_hyperparameter_from_hp() -> None:
    model = tuning.build_model(fixed_hp(filters=8, kernel_size=5, dropout=0.3, l2=1e-4, learning_rate=0.01))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]) == 2
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3]
    assert all(abs(c.kernel_regularizer.l2 - 1e-4) < 1e-12 for c in convs)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.01)
    assert model.output_shape == (None, 10)


def test_build_model_without_l2_has_no_regularizer_and_takes_cifar_shaped_input() -> None:
    model = tuning.build_model(fixed_hp(filters=4, l2=0.0), input_shape=(32, 32, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.kernel_regularizer is None for c in convs)
    assert model.input_shape == (None, 32, 32, 3)


# ---- the spaces ---------------------------------------------------------------------------------

def test_quick_grid_is_2x2x2x2_over_the_four_required_hyperparameters() -> None:
    grid = tuning.grid_search_space("quick")
    assert {k: len(v) for k, v in grid.values.items()} == {"learning_rate": 2, "batch_size": 2, "filters": 2, "dropout": 2}
    assert grid.size == 16 and tuning.random_search_space("quick").max_trials == 8


def test_full_grid_uses_the_lectures_learning_rates_and_batch_sizes_and_varies_kernel_size_and_epochs() -> None:
    grid = tuning.grid_search_space("full")
    assert grid.values["learning_rate"] == (0.001, 0.01, 0.1)
    assert grid.values["batch_size"] == (32, 64, 128)
    assert grid.values["kernel_size"] == (3, 5) and grid.values["epochs"] == (2, 4)
    assert set(grid.values) >= {"filters", "dropout"} and grid.size == 144
    assert dict(grid.fixed) == {"l1": 0.0, "l2": 0.0}


def test_the_quick_random_search_varies_epochs_and_kernel_size() -> None:
    ranges = tuning.random_search_space("quick").ranges
    assert (ranges["epochs"].type, ranges["epochs"].min, ranges["epochs"].max) == ("int", 1, 2)
    assert ranges["kernel_size"].values == (3, 5)


def test_grid_oracle_proposes_each_combination_exactly_once_then_stops(tmp_path: Path) -> None:
    space = GridSpace(values={"learning_rate": (0.001, 0.01), "batch_size": (32, 64, 128), "dropout": (0.0, 0.5)},
                      fixed={"epochs": 1})
    proposed = drain(make_oracle(GridSearchOracle, space, tmp_path, max_trials=space.size), limit=50)
    as_tuples = [tuple(sorted(p.items())) for p in proposed]
    assert len(as_tuples) == 12 and len(set(as_tuples)) == 12
    assert set(as_tuples) == {tuple(sorted(c.items())) for c in space.combinations()}


def test_random_oracle_stays_inside_ranges_and_repeats_under_the_same_seed(tmp_path: Path) -> None:
    space = tuning.random_search_space("quick")
    first = drain(make_oracle(RandomSearchOracle, space, tmp_path / "a", seed=7, max_trials=8))
    again = drain(make_oracle(RandomSearchOracle, space, tmp_path / "b", seed=7, max_trials=8))
    other = drain(make_oracle(RandomSearchOracle, space, tmp_path / "c", seed=8, max_trials=8))
    assert len(first) == 8
    assert first == again and first != other
    for values in first:
        for name, rng in space.ranges.items():
            assert rng.contains(values[name]), (name, values[name])
    assert len({round(v["learning_rate"], 12) for v in first}) == 8  # really sampled, not a handful of grid values
    assert {v["epochs"] for v in first} == {1, 2}


def test_a_spent_deadline_still_runs_one_trial_then_stops_the_search(tmp_path: Path) -> None:
    oracle = make_oracle(GridSearchOracle, tuning.grid_search_space("quick"), tmp_path, max_trials=16)
    oracle.deadline = Deadline(0.0)
    assert len(drain(oracle)) == 1


# ---- a real quick run ---------------------------------------------------------------------------

@pytest.mark.slow
def test_quick_run_writes_a_valid_contract_v1_output_dir(reference_quick_run: Path) -> None:
    report = validate_output_dir(reference_quick_run)
    assert report.violations == ()
    for search in ("grid", "random"):
        assert (reference_quick_run / "tuner" / search / "oracle.json").is_file()
    assert {p.name for p in (reference_quick_run / "plots").iterdir()} == {
        "grid_trials.png", "random_trials.png", "best_so_far.png"}


@pytest.mark.slow
def test_quick_run_trains_16_grid_and_8_random_trials_and_reaches_90_percent(reference_quick_run: Path) -> None:
    trials = [json.loads(line) for line in (reference_quick_run / "trials.jsonl").read_text().splitlines()]
    assert sum(t["search"] == "grid" for t in trials) == 16
    assert sum(t["search"] == "random" for t in trials) == 8
    assert all(set(t["hyperparameters"]) == set(HYPERPARAMETERS) for t in trials)
    assert max(t["val_accuracy"] for t in trials if t["status"] == "COMPLETED") >= 0.90
    grid = {tuple(sorted((k, t["hyperparameters"][k]) for k in ("learning_rate", "batch_size", "filters", "dropout")))
            for t in trials if t["search"] == "grid"}
    assert len(grid) == 16


@pytest.mark.slow
def test_quick_run_comparison_and_answers_agree_with_its_trials(reference_quick_run: Path) -> None:
    import yaml

    trials = [json.loads(line) for line in (reference_quick_run / "trials.jsonl").read_text().splitlines()]
    rows = {r["search"]: r for r in csv.DictReader((reference_quick_run / "comparison.csv").open())}
    answers = yaml.safe_load((reference_quick_run / "answers.yaml").read_text())
    for search in ("grid", "random"):
        best = analysis.best_trial([t for t in trials if t["search"] == search])
        assert float(rows[search]["best_val_accuracy"]) == pytest.approx(best["val_accuracy"])
        assert rows[search]["best_trial_id"] == best["trial_id"]
        assert answers["best_val_accuracy"][search] == pytest.approx(best["val_accuracy"], abs=1e-4)
    assert answers["hyperparameter_ranking"] == analysis.ranking(trials)
    assert answers["most_important_hyperparameter"] == analysis.ranking(trials)[0]
    # the higher best accuracy; on a tie (both reach 0.947 here) the search that trained for less time
    better = max(("grid", "random"),
                 key=lambda s: (float(rows[s]["best_val_accuracy"]), -float(rows[s]["total_train_seconds"])))
    assert answers["better_search"] == better
    assert "learning_rate" in answers["learning_rate_effect"] and "batch_size" in answers["batch_size_effect"]


@pytest.mark.slow
def test_a_time_budget_shortens_the_searches_but_still_exports_models_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    # 20 s: well under the ~45 s the 24 quick trials take here, so the budget, not the grid, ends the searches
    proc = run_reference(out, tmp_path / "home", "--out", str(out), GRADER_TIME_BUDGET_S="20")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert 2 <= len(trials) < 24
    assert {t["search"] for t in trials} == {"grid", "random"}
    assert validate_output_dir(out).violations == ()
    assert elapsed < 20 + 15  # process start-up and data loading come on top of the budget


@pytest.mark.slow
def test_a_run_killed_mid_search_leaves_only_whole_trial_lines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "reference.run", "--out", str(out)], cwd=ROOT,
                            env=child_env(tmp_path / "home"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials_file = out / "trials.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if trials_file.exists() and len(trials_file.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lines = trials_file.read_text().splitlines()
    assert 3 <= len(lines) < 24
    assert all(json.loads(line)["search"] == "grid" for line in lines)
    assert trials_file.read_text().endswith("\n")


LOAD_AND_SCORE = """
import sys, keras, numpy as np
sys.path.insert(0, {root!r})
from tunekit import data
x, y = data.load_test("mnist")
model = keras.saving.load_model(sys.argv[1], compile=False)
pred = np.asarray(model.predict(x[:2000], verbose=0)).argmax(axis=1)
print(keras.backend.backend(), float((pred == y[:2000]).mean()))
"""


def score_on_backend(model: Path, backend: str, home: Path) -> tuple[str, float]:
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE.format(root=str(ROOT)), str(model)],
                          env=child_env(home, backend), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, acc = proc.stdout.split()[-2:]
    return name, float(acc)


@pytest.mark.slow
@pytest.mark.tf
def test_the_tensorflow_backend_runs_the_quick_profile_and_models_cross_load(tmp_path: Path,
                                                                             reference_quick_run: Path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow backend not installed (pip install -e .[tf])")
    out = tmp_path / "tf-out"
    proc = run_reference(out, tmp_path / "home", "--out", str(out), backend="tensorflow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert validate_output_dir(out).violations == ()
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 24 and max(t["val_accuracy"] or 0 for t in trials) >= 0.90
    backend, acc = score_on_backend(out / "models" / "best_grid.keras", "torch", tmp_path / "h1")
    assert backend == "torch" and acc >= 0.85
    backend, acc = score_on_backend(reference_quick_run / "models" / "best_grid.keras", "tensorflow", tmp_path / "h2")
    assert backend == "tensorflow" and acc >= 0.85
