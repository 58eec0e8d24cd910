"""L1 next to L2: the reference's regularizers and spaces, l1 in trials.jsonl and comparison.csv, rubrics asking for it.

Also the rubrics' kernel-size requirements, which the reference's spaces meet.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

from conftest import ROOT  # noqa: E402
from grader import contract  # noqa: E402
from grader.checks import run_check  # noqa: E402
from grader.evidence import Evidence, gather  # noqa: E402
from grader.rubric import Check  # noqa: E402
from grader.validate import read_trials_bytes, validate_output_dir  # noqa: E402
from reference import tuning  # noqa: E402
from tunekit import report  # noqa: E402
from tunekit.recorder import RandomSearchOracle, TrialLog, trial_record  # noqa: E402
from tunekit.spaces import GridSpace, Range, RandomSpace, to_keras_tuner  # noqa: E402

RUBRICS = ROOT / "grader" / "rubrics"


def fixed_hp(**values: Any) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def penalised_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The conv layers and the hidden dense layer (the output layer is never penalised)."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return convs + [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]


# ---- the reference model ---------------------------------------------------------------------

@pytest.mark.parametrize(("l1", "l2", "kind", "config"), [
    (1e-4, 0.0, keras.regularizers.L1, {"l1": 1e-4}),
    (0.0, 1e-4, keras.regularizers.L2, {"l2": 1e-4}),
    (1e-5, 1e-4, keras.regularizers.L1L2, {"l1": 1e-5, "l2": 1e-4}),
])
def test_build_model_penalises_the_kernels_with_l1_l2_or_both_as_hp_asks(l1: float, l2: float, kind: type,
                                                                         config: dict[str, float]) -> None:
    model = tuning.build_model(fixed_hp(filters=4, l1=l1, l2=l2))
    layers = penalised_layers(model)
    assert len(layers) == 3
    for layer in layers:
        assert type(layer.kernel_regularizer) is kind
        assert layer.kernel_regularizer.get_config() == pytest.approx(config)
    assert model.layers[-1].kernel_regularizer is None


def test_build_model_without_l1_and_l2_adds_no_penalty_to_the_loss() -> None:
    model = tuning.build_model(fixed_hp(filters=4, l1=0.0, l2=0.0))
    assert all(layer.kernel_regularizer is None for layer in penalised_layers(model))
    assert model.losses == []


def test_an_elastic_net_penalty_is_the_sum_of_its_l1_and_l2_terms() -> None:
    model = tuning.build_model(fixed_hp(filters=4, l1=1e-3, l2=1e-2))
    expected = 0.0
    for layer in penalised_layers(model):
        weights = keras.ops.convert_to_numpy(layer.kernel)
        expected += 1e-3 * float(abs(weights).sum()) + 1e-2 * float((weights ** 2).sum())
    penalty = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert penalty == pytest.approx(expected, rel=1e-4)


# ---- the reference's spaces ------------------------------------------------------------------

@pytest.mark.parametrize("profile", contract.PROFILES)
def test_the_random_search_samples_l1_on_a_log_range_and_the_grid_fixes_it_at_0(profile: str) -> None:
    ranges = tuning.random_search_space(profile).ranges
    assert ranges["l1"] == Range.float(1e-6, 1e-3, sampling="log") == ranges["l2"]
    grid = tuning.grid_search_space(profile)
    assert "l1" not in grid.values and grid.fixed["l1"] == 0.0 and grid.fixed["l2"] == 0.0


# ---- l1 in the contract's files ----------------------------------------------------------------

def sampled_l1_record(tmp_path: Path) -> dict[str, Any]:
    """The trials.jsonl line tunekit writes for a trial KerasTuner samples from the reference's quick random space."""
    oracle = RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=1, seed=3,
                                hyperparameters=to_keras_tuner(tuning.random_search_space("quick")),
                                tune_new_entries=False)
    oracle._set_project_dir(str(tmp_path), "l1")
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.91})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    history = {"val_accuracy": [0.91], "val_loss": [0.3], "accuracy": [0.9], "loss": [0.33]}
    return trial_record("random", oracle.get_trial(trial.trial_id), history, 1.5)


def test_a_trial_that_records_l1_is_a_valid_contract_line(tmp_path: Path) -> None:
    record = sampled_l1_record(tmp_path)
    assert 1e-6 <= record["hyperparameters"]["l1"] <= 1e-3
    assert list(record["hyperparameters"]) == [n for n in contract.HYPERPARAMETERS if n in record["hyperparameters"]]
    read = read_trials_bytes((json.dumps(record) + "\n").encode())
    assert read.violations == () and read.records == (record,)


def test_the_grader_reads_l1_from_trials_and_search_spaces_without_a_problem(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    record = sampled_l1_record(tmp_path)
    TrialLog(out / contract.TRIALS_FILE).append(record)
    spaces = {"grid": GridSpace(values={"l1": (0.0, 1e-4)}, fixed={"epochs": 1}),
              "random": tuning.random_search_space("quick")}
    report.write_search_spaces(out, dataset="mnist", profile="quick", spaces=spaces)
    ev = gather(out)
    assert [p for p in ev.problems if p.file in (contract.TRIALS_FILE, contract.SEARCH_SPACES_FILE)] == []
    assert ev.trials[0].hyperparameters["l1"] == record["hyperparameters"]["l1"] and ev.trials[0].outside == ()
    assert ev.spaces["grid"].values == {"l1": (0.0, 1e-4)}
    assert ev.spaces["random"].ranges["l1"] == Range.float(1e-6, 1e-3, sampling="log")


def test_comparison_csv_shows_the_best_trials_l1_between_dropout_and_l2(tmp_path: Path) -> None:
    record = sampled_l1_record(tmp_path)
    rows = report.comparison_rows([record], ["random"])
    report.write_comparison(tmp_path, rows)
    with (tmp_path / contract.COMPARISON_FILE).open(newline="") as fh:
        header, row = list(csv.reader(fh))
    assert header[-3:] == ["dropout", "l1", "l2"]
    assert float(row[header.index("l1")]) == record["hyperparameters"]["l1"]
    assert "l1" in report.format_table(rows).splitlines()[0].split()


# ---- rubrics that ask for l1, l2 and kernel size -------------------------------------------------

def search_space_params(rubric: str) -> dict[str, Any]:
    doc = json.loads((RUBRICS / f"{rubric}.json").read_text())
    return next(c["params"] for c in doc["checks"] if c["kind"] == "search_space")


def judge_spaces(params: dict[str, Any], spaces: dict[str, Any]) -> tuple[float, str]:
    ev = Evidence(output_dir=Path("out"), spaces=spaces, spaces_source={s: "search_spaces.json" for s in spaces})
    result = run_check(Check("search-space", "search_space", 8.0, "search space", "visible", params), ev)
    return result.points, result.message


@pytest.mark.parametrize("rubric", ["full", "cifar10_full"])
def test_the_full_rubrics_ask_for_l1_l2_and_kernel_size_and_the_reference_meets_them(rubric: str) -> None:
    params = search_space_params(rubric)
    assert params["grid_min_values"]["kernel_size"] == 2 and params["grid_min_values"]["epochs"] == 2
    assert {name: params["random_ranges"][name] for name in ("kernel_size", "l1", "l2")} == {
        "kernel_size": {"min": 3, "max": 5},
        "l1": {"min": 1e-5, "max": 1e-3, "sampling": "log"},
        "l2": {"min": 1e-5, "max": 1e-3, "sampling": "log"},
    }
    reference = {"grid": tuning.grid_search_space("full"), "random": tuning.random_search_space("full")}
    assert judge_spaces(params, reference) == (8.0, "the grid and the random ranges meet all 13 search-space "
                                                    "requirements")


def test_a_full_profile_search_without_l1_and_kernel_size_loses_those_requirements() -> None:
    grid = tuning.grid_search_space("full")
    no_kernel_grid = GridSpace(values={k: v for k, v in grid.values.items() if k != "kernel_size"},
                               fixed={**grid.fixed, "kernel_size": 3})
    rand = tuning.random_search_space("full")
    l2_only = RandomSpace(ranges={k: r for k, r in rand.ranges.items() if k not in ("l1", "kernel_size")},
                          max_trials=rand.max_trials)
    assert judge_spaces(search_space_params("full"), {"grid": no_kernel_grid, "random": l2_only}) == (
        6.15, "10 of 13 search-space requirements met: the grid has 1 value for kernel_size (needs 2); the random "
              "search does not vary kernel_size (needs a range covering 3..5); the random search does not vary l1 "
              "(needs a range covering 1e-05..0.001) — declare more grid values and wider random ranges, then rerun "
              "the searches")


@pytest.mark.parametrize("rubric", ["quick", "cifar10_quick"])
def test_the_quick_rubrics_ask_for_kernel_size_in_the_random_search_and_the_reference_meets_it(rubric: str) -> None:
    params = search_space_params(rubric)
    assert params["random_ranges"]["kernel_size"] == {"min": 3, "max": 5}
    reference = {"grid": tuning.grid_search_space("quick"), "random": tuning.random_search_space("quick")}
    assert judge_spaces(params, reference) == (8.0, "the grid and the random ranges meet all 8 search-space "
                                                    "requirements")
