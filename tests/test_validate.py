"""Tests for grader.validate: a valid output dir passes, and each kind of breakage is one exact violation line."""

from __future__ import annotations

import json
import os
import re
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from grader import contract, validate
from grader.jsonio import load_schema, schema_errors
from grader.validate import Violation, read_trials, validate_output_dir

CONTRACT_DOC = Path(__file__).resolve().parent.parent / "docs" / "contract.md"
SCHEMAS = ("search_spaces", "trial", "answers")


# ---------------------------------------------------------------------------------------------
# Fixture output dirs


def png_bytes() -> bytes:
    """A real 1x1 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")


def write_keras_stand_in(path: Path, members: tuple[str, ...] = ("config.json", "metadata.json", "model.weights.h5")) -> None:
    """A zip laid out like a Keras v3 archive (the validator only looks inside the zip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for member in members:
            archive.writestr(member, "{}" if member.endswith(".json") else b"\x89HDF\r\n\x1a\n")


SEARCH_SPACES: dict[str, Any] = {
    "contract_version": 1,
    "dataset": "mnist",
    "profile": "quick",
    "grid": {
        "values": {"learning_rate": [0.001, 0.01], "dropout": [0.0, 0.25]},
        "fixed": {"batch_size": 32, "epochs": 1, "filters": 16, "kernel_size": 3, "l2": 0.0},
    },
    "random": {
        "max_trials": 2,
        "ranges": {
            "learning_rate": {"type": "float", "min": 0.0001, "max": 0.1, "sampling": "log"},
            "dropout": {"type": "float", "min": 0.0, "max": 0.5, "sampling": "linear"},
            "filters": {"type": "int", "min": 8, "max": 64, "step": 8, "sampling": "linear"},
            "batch_size": {"type": "choice", "values": [32, 64], "sampling": "choice"},
        },
        "fixed": {"epochs": 1},
    },
}

HP = {"learning_rate": 0.01, "batch_size": 32, "epochs": 2, "filters": 16, "kernel_size": 3, "dropout": 0.0, "l2": 0.0}


def trial(search: str, trial_id: str, /, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "contract_version": 1,
        "search": search,
        "trial_id": trial_id,
        "hyperparameters": dict(HP),
        "status": "COMPLETED",
        "val_accuracy": 0.941,
        "val_loss": 0.198,
        "history": {"loss": [0.52, 0.3], "accuracy": [0.84, 0.9], "val_loss": [0.25, 0.198], "val_accuracy": [0.9, 0.941]},
        "train_seconds": 1.37,
        "finished_at": "2026-11-26T19:40:01Z",
    }
    record.update(changes)
    return record


TRIALS = [trial("grid", "00"), trial("grid", "01", val_accuracy=0.95), trial("random", "00")]

COMPARISON = (
    ",".join(contract.COMPARISON_COLUMNS)
    + "\n"
    + "grid,2,2,01,0.95,0.198,2.74,0.01,32,2,16,3,0.0,0.0,0.0\n"
    + "random,1,1,00,0.941,0.198,1.37,0.01,32,2,16,3,0.0,0.0,0.0\n"
)

ANSWERS = """\
contract_version: 1
most_important_hyperparameter: learning_rate
hyperparameter_ranking: [learning_rate, dropout, filters, batch_size]
better_search: grid
best_val_accuracy: {grid: 0.95, random: 0.941}
search_seconds: {grid: 2.74, random: 1.37}
search_comparison: "grid tried every combination; random covered the ranges with fewer trials"
learning_rate_effect: "too high diverges, too low learns slowly"
batch_size_effect: "smaller batches gave noisier but better updates"
"""


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_valid_output_dir(root: Path) -> Path:
    """An output dir that follows contract v1 in every file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "search_spaces.json").write_text(json.dumps(SEARCH_SPACES, indent=2))
    (root / "trials.jsonl").write_text(jsonl(TRIALS))
    (root / "comparison.csv").write_text(COMPARISON)
    (root / "answers.yaml").write_text(ANSWERS)
    write_keras_stand_in(root / "models" / "best_grid.keras")
    write_keras_stand_in(root / "models" / "best_random.keras")
    (root / "plots").mkdir()
    for name in ("grid_trials.png", "random_trials.png", "best_so_far.png"):
        (root / "plots" / name).write_bytes(png_bytes())
    return root


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return write_valid_output_dir(tmp_path / "outputs")


def lines(root: Path, **kwargs: Any) -> list[str]:
    return [str(v) for v in validate_output_dir(root, **kwargs).violations]


def write_search_spaces(root: Path, doc: dict[str, Any]) -> None:
    (root / "search_spaces.json").write_text(json.dumps(doc, indent=2))


def with_range(name: str, spec: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    doc["random"]["ranges"][name] = spec
    return doc


# ---------------------------------------------------------------------------------------------
# The whole dir


def test_valid_output_dir_has_no_violations(out: Path) -> None:
    report = validate_output_dir(out)
    assert report.violations == ()
    assert report.ok
    assert report.path == out


def test_missing_output_dir_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"output dir not found: {tmp_path / 'nope'}")):
        validate_output_dir(tmp_path / "nope")


def test_empty_dir_reports_every_missing_artifact(tmp_path: Path) -> None:
    assert lines(tmp_path) == [
        "search_spaces.json: file is missing",
        "trials.jsonl: file is missing",
        "comparison.csv: file is missing",
        "answers.yaml: file is missing",
        "models/best_grid.keras: file is missing",
        "models/best_random.keras: file is missing",
        "plots/: folder is missing",
    ]


@pytest.mark.parametrize(
    "relative", ["search_spaces.json", "comparison.csv", "answers.yaml", "models/best_random.keras"]
)
def test_one_missing_file_is_one_violation(out: Path, relative: str) -> None:
    (out / relative).unlink()
    assert lines(out) == [f"{relative}: file is missing"]


def test_missing_trials_file_is_reported_without_a_cascade_from_comparison(out: Path) -> None:
    (out / "trials.jsonl").unlink()
    assert lines(out) == ["trials.jsonl: file is missing"]


def test_searches_choose_which_best_models_are_required(out: Path) -> None:
    assert lines(out, searches=("grid", "random", "bayesian")) == ["models/best_bayesian.keras: file is missing"]
    (out / "models" / "best_random.keras").unlink()
    assert lines(out, searches=("grid",)) == []


def test_violation_str_names_file_and_where() -> None:
    assert str(Violation("search_spaces.json", "$.grid.values", "bad")) == "search_spaces.json $.grid.values: bad"
    assert str(Violation("trials.jsonl", "", "file is missing")) == "trials.jsonl: file is missing"


def test_violations_in_several_files_are_all_reported(out: Path) -> None:
    write_search_spaces(out, with_range("dropout", {"type": "float", "min": 0.5, "max": 0.1, "sampling": "linear"}))
    (out / "plots" / "best_so_far.png").write_text("not an image")
    (out / "answers.yaml").write_text("contract_version: 2\n")
    assert lines(out) == [
        "search_spaces.json $.random.ranges.dropout.min: min 0.5 is greater than max 0.1",
        "answers.yaml $.contract_version: 1 was expected",
        "plots/best_so_far.png: not a PNG image: it does not start with the PNG signature",
    ]


# ---------------------------------------------------------------------------------------------
# search_spaces.json


def test_search_spaces_syntax_error_gives_line_and_column(out: Path) -> None:
    (out / "search_spaces.json").write_text('{\n  "contract_version": 1\n  "dataset": "mnist"\n}\n')
    assert lines(out) == ["search_spaces.json line 3, column 3: not valid JSON: Expecting ',' delimiter"]


def test_search_spaces_nan_is_a_violation(out: Path) -> None:
    text = json.dumps(SEARCH_SPACES).replace('"max": 0.5', '"max": NaN')
    (out / "search_spaces.json").write_text(text)
    assert lines(out) == ["search_spaces.json $.random.ranges.dropout.max: numbers must be finite, got NaN"]


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        (
            "dropout",
            {"type": "float", "min": 0.5, "max": 0.1, "sampling": "linear"},
            "$.random.ranges.dropout.min: min 0.5 is greater than max 0.1",
        ),
        (
            "learning_rate",
            {"type": "float", "min": 0.0, "max": 0.1, "sampling": "log"},
            "$.random.ranges.learning_rate.min: a log-sampled range needs min > 0, got 0.0",
        ),
        ("filters", {"type": "int", "min": 8.5, "max": 64, "sampling": "linear"}, "$.random.ranges.filters.min: 8.5 is not of type 'integer'"),
        (
            "dropout",
            {"type": "float", "min": 0.0, "max": 0.5, "step": 0.1, "sampling": "linear"},
            "$.random.ranges.dropout: Additional properties are not allowed ('step' was unexpected)",
        ),
        (
            "batch_size",
            {"type": "choice", "values": [32, 64], "sampling": "linear"},
            "$.random.ranges.batch_size.sampling: 'choice' was expected",
        ),
        (
            "dropout",
            {"type": "uniform", "min": 0.0, "max": 0.5},
            "$.random.ranges.dropout.type: 'uniform' is not one of ['float', 'int', 'choice']",
        ),
        ("dropout", {"min": 0.0, "max": 0.5}, "$.random.ranges.dropout: 'type' is a required property"),
        ("dropout", "0.0-0.5", "$.random.ranges.dropout: '0.0-0.5' is not of type 'object'"),
    ],
    ids=["min-above-max", "log-from-zero", "int-not-integral", "float-with-step", "choice-sampling", "unknown-type", "no-type", "not-an-object"],
)
def test_bad_random_range_is_one_specific_violation(out: Path, name: str, spec: Any, expected: str) -> None:
    write_search_spaces(out, with_range(name, spec))
    assert lines(out) == [f"search_spaces.json {expected}"]


def test_unknown_hyperparameter_name_is_named(out: Path) -> None:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    doc["grid"]["values"]["lr"] = doc["grid"]["values"].pop("learning_rate")
    write_search_spaces(out, doc)
    assert lines(out) == [
        "search_spaces.json $.grid.values: 'lr' is not one of "
        "['learning_rate', 'batch_size', 'epochs', 'filters', 'kernel_size', 'dropout', 'l1', 'l2']"
    ]


def test_hyperparameter_both_varied_and_fixed_is_a_violation(out: Path) -> None:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    doc["grid"]["fixed"]["dropout"] = 0.1
    doc["random"]["fixed"]["filters"] = 32
    write_search_spaces(out, doc)
    assert lines(out) == [
        "search_spaces.json $.grid.fixed.dropout: dropout is both in values and in fixed of grid",
        "search_spaces.json $.random.fixed.filters: filters is both in ranges and in fixed of random",
    ]


def test_grid_values_with_duplicates_or_none_are_violations(out: Path) -> None:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    doc["grid"]["values"]["learning_rate"] = [0.01, 0.01]
    doc["grid"]["values"]["dropout"] = []
    write_search_spaces(out, doc)
    assert lines(out) == [
        "search_spaces.json $.grid.values.dropout: [] should be non-empty",
        "search_spaces.json $.grid.values.learning_rate: [0.01, 0.01] has non-unique elements",
    ]


def test_missing_random_search_and_unknown_key_are_violations(out: Path) -> None:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    del doc["random"]
    doc["notes"] = "hi"
    write_search_spaces(out, doc)
    assert lines(out) == [
        "search_spaces.json $: 'random' is a required property",
        "search_spaces.json $: Additional properties are not allowed ('notes' was unexpected)",
    ]


def test_optional_bayesian_search_has_the_random_shape(out: Path) -> None:
    doc = json.loads(json.dumps(SEARCH_SPACES))
    doc["bayesian"] = {"max_trials": 3, "ranges": {"dropout": {"type": "float", "min": 0.3, "max": 0.2, "sampling": "linear"}}}
    write_search_spaces(out, doc)
    assert lines(out) == ["search_spaces.json $.bayesian.ranges.dropout.min: min 0.3 is greater than max 0.2"]


# ---------------------------------------------------------------------------------------------
# trials.jsonl


def test_nan_line_is_a_violation_and_left_out_of_the_trials(out: Path) -> None:
    text = jsonl(TRIALS).replace('"val_accuracy": 0.95,', '"val_accuracy": NaN,')
    (out / "trials.jsonl").write_text(text)
    assert lines(out) == ["trials.jsonl line 2: $.val_accuracy: numbers must be finite, got NaN"]
    trials, _ = read_trials(out / "trials.jsonl")
    assert [t["trial_id"] for t in trials] == ["00", "00"]


def test_infinity_in_history_is_a_violation(out: Path) -> None:
    text = json.dumps(trial("grid", "00")).replace("[0.52, 0.3]", "[0.52, Infinity]") + "\n"
    (out / "trials.jsonl").write_text(text + jsonl(TRIALS[1:]))
    assert lines(out) == ["trials.jsonl line 1: $.history.loss[1]: numbers must be finite, got Infinity"]


def test_truncated_last_line_of_a_killed_run_is_reported_and_finished_trials_kept(out: Path) -> None:
    text = jsonl(TRIALS) + json.dumps(trial("random", "01"))[:58]  # cut inside "01"
    (out / "trials.jsonl").write_text(text)
    assert lines(out) == [
        "trials.jsonl line 4: not valid JSON: Unterminated string at column 57; "
        "it is the last line and has no newline, so the run was probably stopped while writing it"
    ]
    trials, _ = read_trials(out / "trials.jsonl")
    assert len(trials) == 3


def test_duplicate_trial_id_within_a_search_is_a_violation(out: Path) -> None:
    (out / "trials.jsonl").write_text(jsonl([*TRIALS, trial("grid", "01", val_accuracy=0.5)]))
    assert lines(out) == ["trials.jsonl line 4: $.trial_id: duplicate trial_id '01' in search grid (first on line 2)"]
    trials, _ = read_trials(out / "trials.jsonl")
    assert [t["val_accuracy"] for t in trials if t["trial_id"] == "01"] == [0.95]


def test_same_trial_id_in_two_searches_is_fine(out: Path) -> None:
    assert TRIALS[0]["trial_id"] == TRIALS[2]["trial_id"]
    assert lines(out) == []


def test_history_lists_of_unequal_length_are_a_violation(out: Path) -> None:
    bad = trial("grid", "01", history={"loss": [0.5, 0.4], "val_loss": [0.3]})
    (out / "trials.jsonl").write_text(jsonl([TRIALS[0], bad, TRIALS[2]]))
    assert lines(out) == ["trials.jsonl line 2: $.history: history lists differ in length (loss 2, val_loss 1)"]


def test_completed_trial_needs_numbers_and_failed_trial_needs_null(out: Path) -> None:
    completed = trial("grid", "01", val_accuracy=None)
    failed = trial("random", "01", status="FAILED", val_loss=None, history={}, message="CUDA out of memory")
    (out / "trials.jsonl").write_text(jsonl([TRIALS[0], completed, TRIALS[2], failed]))
    assert lines(out) == [
        "trials.jsonl line 2: $.val_accuracy: a COMPLETED trial needs a number here, got null",
        "trials.jsonl line 4: $.val_accuracy: a FAILED trial has null here, got 0.941",
    ]


def test_failed_trial_with_null_metrics_and_message_is_valid(out: Path) -> None:
    failed = trial("random", "01", status="FAILED", val_accuracy=None, val_loss=None, history={}, message="boom")
    diverged = trial(
        "random", "02", status="FAILED", val_accuracy=None, val_loss=None,
        history={"loss": [2.3, None], "val_loss": [2.1, None]}, message="training diverged",
    )
    (out / "trials.jsonl").write_text(jsonl([*TRIALS, failed, diverged]))
    assert lines(out) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"val_accuracy": 94.1}, "$.val_accuracy: 94.1 is greater than the maximum of 1"),
        ({"status": "DONE"}, "$.status: 'DONE' is not one of ['COMPLETED', 'FAILED', 'INVALID', 'STOPPED']"),
        ({"trial_id": 3}, "$.trial_id: 3 is not of type 'string'"),
        ({"search": "hyperband"}, "$.search: 'hyperband' is not one of ['grid', 'random', 'bayesian', 'manual']"),
        ({"hyperparameters": {"lr": 0.01}}, "$.hyperparameters: 'lr' is not one of ['learning_rate', 'batch_size', 'epochs', 'filters', 'kernel_size', 'dropout', 'l1', 'l2']"),
        ({"history": {"loss": ["0.5"]}}, "$.history.loss[0]: '0.5' is not of type 'number', 'null'"),
        ({"extra": 1}, "$: Additional properties are not allowed ('extra' was unexpected)"),
    ],
    ids=["accuracy-as-percent", "unknown-status", "numeric-trial-id", "unknown-search", "alias-name", "string-in-history", "extra-key"],
)
def test_trial_schema_violation_names_line_and_field(out: Path, changes: dict[str, Any], expected: str) -> None:
    (out / "trials.jsonl").write_text(jsonl([*TRIALS, trial("grid", "02", **changes)]))
    assert lines(out) == [f"trials.jsonl line 4: {expected}"]


def test_blank_lines_are_ignored_and_line_numbers_stay_true(out: Path) -> None:
    text = "\n" + json.dumps(TRIALS[0]) + "\n\n  \n" + jsonl(TRIALS[1:]) + '{"contract_version": 1}\n'
    (out / "trials.jsonl").write_text(text)
    violations = lines(out)
    assert violations[0] == "trials.jsonl line 7: $: 'search' is a required property"


def test_trials_file_without_trials_is_a_violation(out: Path) -> None:
    (out / "trials.jsonl").write_text("\n")
    assert lines(out) == [
        "trials.jsonl: file has no trials",
        "comparison.csv line 2: search: row for search grid, which has no trials in trials.jsonl",
        "comparison.csv line 3: search: row for search random, which has no trials in trials.jsonl",
    ]


def test_read_trials_returns_valid_trials_and_violations(out: Path) -> None:
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "not json\n")
    trials, violations = read_trials(out / "trials.jsonl")
    assert trials == TRIALS
    assert [str(v) for v in violations] == ["trials.jsonl line 4: not valid JSON: Expecting value at column 1"]


def test_read_trials_on_missing_file_is_a_violation_not_an_error(tmp_path: Path) -> None:
    assert read_trials(tmp_path / "trials.jsonl") == ([], [Violation("trials.jsonl", "", "file is missing")])


def test_a_flood_of_bad_lines_is_capped_with_a_count(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_VIOLATIONS_PER_FILE", 2)
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "x\n" * 5)
    _, violations = read_trials(out / "trials.jsonl")
    assert [str(v) for v in violations] == [
        "trials.jsonl line 4: not valid JSON: Expecting value at column 1",
        "trials.jsonl line 5: not valid JSON: Expecting value at column 1",
        "trials.jsonl: 3 more violations not listed",
    ]


# ---------------------------------------------------------------------------------------------
# comparison.csv


def test_comparison_header_must_be_the_contract_columns(out: Path) -> None:
    (out / "comparison.csv").write_text(COMPARISON.replace("learning_rate", "lr", 1))
    expected = ",".join(contract.COMPARISON_COLUMNS)
    assert lines(out) == [f"comparison.csv line 1: header must be {expected} (missing learning_rate; unexpected lr)"]


def test_a_comparison_written_before_l1_joined_the_contract_is_still_v1(out: Path) -> None:
    header, *rows = COMPARISON.splitlines()
    assert header.endswith(",dropout,l1,l2")
    (out / "comparison.csv").write_text("\n".join([header.replace(",l1,", ","), *(r.rsplit(",", 2)[0] + ",0.0" for r in rows)]) + "\n")
    assert lines(out) == []
    (out / "comparison.csv").write_text(COMPARISON.replace(",dropout,l1,l2", ",dropout,l2,l1", 1))
    assert lines(out) == [f"comparison.csv line 1: header must be {header} (columns out of order)"]


def test_comparison_non_numeric_cell_is_named(out: Path) -> None:
    (out / "comparison.csv").write_text(COMPARISON.replace("grid,2,2,01,0.95", "grid,two,2,01,high"))
    assert lines(out) == [
        "comparison.csv line 2: trials: trials must be a whole number, got 'two'",
        "comparison.csv line 2: best_val_accuracy: best_val_accuracy must be a number, got 'high'",
    ]


def test_comparison_needs_a_row_per_search_with_trials(out: Path) -> None:
    (out / "comparison.csv").write_text("\n".join(COMPARISON.splitlines()[:2]) + "\n")
    assert lines(out) == ["comparison.csv: no row for search random, which has trials in trials.jsonl"]


def test_comparison_search_without_completed_trials_may_leave_best_cells_empty(out: Path) -> None:
    failed = trial("random", "00", status="FAILED", val_accuracy=None, val_loss=None, history={}, message="boom")
    (out / "trials.jsonl").write_text(jsonl([TRIALS[0], TRIALS[1], failed]))
    (out / "comparison.csv").write_text(COMPARISON.splitlines()[0] + "\n" + COMPARISON.splitlines()[1] + "\nrandom,1,0,,,,1.37,,,,,,,,\n")
    assert lines(out) == []


def test_comparison_short_row_and_repeated_search_are_violations(out: Path) -> None:
    (out / "comparison.csv").write_text(COMPARISON + "grid,2,2\n")
    assert lines(out) == [
        "comparison.csv line 4: has 3 cells, the header has 15",
        "comparison.csv line 4: search: second row for search grid (first on line 2)",
    ]


# ---------------------------------------------------------------------------------------------
# answers.yaml


def test_half_filled_answers_are_structurally_valid(out: Path) -> None:
    (out / "answers.yaml").write_text("contract_version: 1\nmost_important_hyperparameter: null\nbetter_search:\n")
    assert lines(out) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contract_version: 1\nbetter_search: both\n", "$.better_search: 'both' is not one of ['grid', 'random', 'bayesian', 'manual']"),
        (
            "contract_version: 1\nmost_important_hyperparameter: lr\n",
            "$.most_important_hyperparameter: 'lr' is not one of "
            "['learning_rate', 'batch_size', 'epochs', 'filters', 'kernel_size', 'dropout', 'l1', 'l2']",
        ),
        ("contract_version: 1\nbest_val_accuracy: {grid: high}\n", "$.best_val_accuracy.grid: 'high' is not of type 'number'"),
        ("contract_version: 1\nsearch_seconds: {grid: .nan}\n", "$.search_seconds.grid: numbers must be finite, got NaN"),
        ("most_important_hyperparameter: dropout\n", "$: 'contract_version' is a required property"),
        ("contract_version: 1\nbetter_search: grid\n  oops: [\n", "line 3, column 7: not valid YAML: mapping values are not allowed here"),
        ("- a\n- b\n", "$: ['a', 'b'] is not of type 'object'"),
        ("a: &x [1, 2]\nb: *x\n", "line 2, column 4: YAML aliases (*name) are not allowed"),
        ("# nothing yet\n", "file is empty"),
    ],
    ids=["better-search", "alias-hyperparameter", "text-for-number", "nan", "no-version", "syntax", "a-list", "yaml-alias", "empty"],
)
def test_bad_answers_are_one_specific_violation(out: Path, text: str, expected: str) -> None:
    (out / "answers.yaml").write_text(text)
    sep = ": " if expected == "file is empty" else " "
    assert lines(out) == [f"answers.yaml{sep}{expected}"]


# ---------------------------------------------------------------------------------------------
# models/ and plots/


def test_keras_file_that_is_not_a_zip_is_a_violation(out: Path) -> None:
    (out / "models" / "best_grid.keras").write_bytes(b"\x89HDF\r\n\x1a\nthis is an old .h5 model")
    assert lines(out) == ["models/best_grid.keras: not a Keras v3 archive: not a zip file"]


def test_keras_zip_without_weights_is_a_violation(out: Path) -> None:
    write_keras_stand_in(out / "models" / "best_random.keras", members=("config.json", "metadata.json"))
    assert lines(out) == ["models/best_random.keras: not a Keras v3 archive: the zip lacks model.weights.h5"]


def test_keras_zip_listing_thousands_of_entries_is_refused_before_its_directory_is_read(out: Path) -> None:
    members = ("config.json", "metadata.json", "model.weights.h5", *(f"pad/{i}" for i in range(2000)))
    write_keras_stand_in(out / "models" / "best_grid.keras", members=members)
    assert lines(out) == ["models/best_grid.keras: not a Keras v3 archive: the zip lists 2003 entries "
                          "(a Keras archive holds a handful; at most 100 are read)"]


def test_keras_path_that_is_a_folder_is_a_violation(out: Path) -> None:
    (out / "models" / "best_grid.keras").unlink()
    (out / "models" / "best_grid.keras").mkdir()
    assert lines(out) == ["models/best_grid.keras: not a regular file"]


def test_symbolic_links_are_refused_so_no_outside_file_is_read(out: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("contract_version: 1\n")
    (out / "answers.yaml").unlink()
    (out / "answers.yaml").symlink_to(secret)
    (out / "plots" / "grid_trials.png").unlink()
    (out / "plots" / "grid_trials.png").symlink_to(out / "plots" / "best_so_far.png")
    assert lines(out) == [
        "answers.yaml: is a symbolic link, not a regular file",
        "plots/grid_trials.png: is a symbolic link, not a regular file",
    ]


def test_oversized_text_file_is_refused_unread(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_TEXT_BYTES", 2 * 2**20)
    (out / "trials.jsonl").write_bytes(b"x" * (3 * 2**20))
    assert lines(out) == ["trials.jsonl: file is too large (3.0 MiB; the limit is 2 MiB)"]


def test_trial_line_that_is_not_utf8_is_a_violation(out: Path) -> None:
    (out / "trials.jsonl").write_bytes(jsonl(TRIALS).encode() + b'{"search": "\xff"}\n')
    assert lines(out) == ["trials.jsonl line 4: not UTF-8 text"]


def test_png_that_is_really_text_is_a_violation(out: Path) -> None:
    (out / "plots" / "grid_trials.png").write_text("matplotlib was not installed")
    assert lines(out) == ["plots/grid_trials.png: not a PNG image: it does not start with the PNG signature"]


def test_plots_folder_without_files_is_a_violation(out: Path) -> None:
    for png in (out / "plots").iterdir():
        png.unlink()
    assert lines(out) == ["plots/: folder has no files"]


def test_plots_may_hold_other_files_than_png(out: Path) -> None:
    for png in (out / "plots").iterdir():
        png.unlink()
    (out / "plots" / "curves.svg").write_text("<svg/>")
    assert lines(out) == []


# ---------------------------------------------------------------------------------------------
# Schemas and the contract document


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_valid_draft_2020_12_with_a_v1_id(name: str) -> None:
    schema = json.loads((Path(validate.__file__).parent / "schemas" / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://cnn-tuning-grader/schemas/{name}/v1"


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_hyperparameter_names_are_the_contract_names(name: str) -> None:
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list) and "learning_rate" in node["enum"]:
                found.append(node["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_schema(name))
    assert found and all(names == list(contract.HYPERPARAMETERS) for names in found)


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", CONTRACT_DOC.read_text(), flags=re.S)


def test_contract_doc_examples_follow_the_schemas() -> None:
    search_spaces, trial_example = (json.loads(block) for block in doc_blocks("json"))
    assert schema_errors(search_spaces, "search_spaces") == []
    assert schema_errors(trial_example, "trial") == []
    (answers_example,) = (yaml.safe_load(block) for block in doc_blocks("yaml"))
    assert schema_errors(answers_example, "answers") == []


def test_contract_doc_examples_pass_the_semantic_rules_too(tmp_path: Path) -> None:
    search_spaces, trial_example = (json.loads(block) for block in doc_blocks("json"))
    root = write_valid_output_dir(tmp_path / "outputs")
    write_search_spaces(root, search_spaces)
    (root / "trials.jsonl").write_text(jsonl([trial_example, TRIALS[2]]))
    (root / "answers.yaml").write_text(doc_blocks("yaml")[0])
    assert lines(root) == []


# ---------------------------------------------------------------------------------------------
# Command line


def test_main_prints_ok_and_returns_0(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.main([str(out)]) == 0
    assert capsys.readouterr().out == f"OK: {out} follows contract v1\n"


def test_main_prints_each_violation_and_returns_1(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (out / "answers.yaml").unlink()
    (out / "plots" / "grid_trials.png").write_text("text")
    assert validate.main([str(out)]) == 1
    assert capsys.readouterr().out == (
        "answers.yaml: file is missing\n"
        "plots/grid_trials.png: not a PNG image: it does not start with the PNG signature\n"
    )


def test_main_on_missing_dir_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.main([str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"error: output dir not found: {tmp_path / 'nope'}\n"


def test_main_searches_option_requires_those_models(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.main([str(out), "--searches", "grid,random,bayesian"]) == 1
    assert capsys.readouterr().out == "models/best_bayesian.keras: file is missing\n"


# ---------------------------------------------------------------------------------------------
# Bounds: no file, however hostile, crashes or stalls the validator


BIG = "9" * 5000  # Python refuses to convert an integer of more than 4300 digits to or from text


def test_a_5000_digit_integer_in_a_trial_line_is_a_violation_and_the_other_trials_are_kept(out: Path) -> None:
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + json.dumps(trial("grid", "02")).replace('"epochs": 2', f'"epochs": {BIG}') + "\n")
    assert lines(out) == ["trials.jsonl line 4: an integer with more than 64 digits"]
    assert len(read_trials(out / "trials.jsonl")[0]) == 3


def test_a_400_digit_integer_too_large_for_a_float_is_refused_too(out: Path) -> None:
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + json.dumps(trial("grid", "02", train_seconds=1)).replace(
        '"train_seconds": 1', f'"train_seconds": {"7" * 400}') + "\n")
    assert lines(out) == ["trials.jsonl line 4: an integer with more than 64 digits"]


def test_a_5000_digit_integer_in_search_spaces_is_a_violation(out: Path) -> None:
    (out / "search_spaces.json").write_text(json.dumps(SEARCH_SPACES).replace('"max_trials": 2', f'"max_trials": {BIG}'))
    assert lines(out) == ["search_spaces.json: an integer with more than 64 digits"]


def test_a_5000_digit_integer_in_answers_is_a_violation_with_its_position(out: Path) -> None:
    (out / "answers.yaml").write_text(ANSWERS.replace("search_seconds: {grid: 2.74", f"search_seconds: {{grid: {BIG}"))
    assert lines(out) == ["answers.yaml line 6, column 24: an integer with more than 64 digits"]


def test_a_5000_digit_number_in_comparison_is_a_short_violation(out: Path) -> None:
    (out / "comparison.csv").write_text(COMPARISON.replace("grid,2,2,01,0.95", f"grid,{BIG},2,01,0.95"))
    assert lines(out) == ["comparison.csv line 2: trials: trials has a number with more than 64 digits"]


def test_a_long_cell_is_quoted_short_and_escaped(out: Path) -> None:
    (out / "comparison.csv").write_text(COMPARISON.replace("grid,2,2,01,0.95", "grid,\x1b[2J" + "x" * 5000 + ",2,01,0.95"))
    assert lines(out) == ["comparison.csv line 2: trials: trials must be a whole number, got "
                          "'\\x1b[2Jxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"]


def test_a_trial_line_nested_deeper_than_64_levels_is_a_violation(out: Path) -> None:
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "[" * 100_000 + "]" * 100_000 + "\n" + '{"a": ' * 65 + "1" + "}" * 65 + "\n")
    assert lines(out) == ["trials.jsonl line 4: nested more than 64 levels deep",
                          "trials.jsonl line 5: nested more than 64 levels deep"]


def test_a_yaml_alias_bomb_is_refused_at_its_first_alias(out: Path) -> None:
    bomb = "contract_version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{k}: &{k} [{', '.join(['*' + p] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi"))
    (out / "answers.yaml").write_text(bomb)
    assert lines(out) == ["answers.yaml line 3, column 8: YAML aliases (*name) are not allowed"]


def test_a_lone_yaml_anchor_is_refused(out: Path) -> None:
    (out / "answers.yaml").write_text("contract_version: 1\nbetter_search: &pick grid\n")
    assert lines(out) == ["answers.yaml line 2, column 16: YAML anchors (&name) are not allowed"]


def test_answers_larger_than_the_yaml_limit_are_refused_unread(out: Path) -> None:
    (out / "answers.yaml").write_text(ANSWERS + "# " + "x" * validate.MAX_YAML_BYTES + "\n")
    assert lines(out) == ["answers.yaml: file is too large (256.5 KiB; the limit is 256 KiB)"]


def test_a_flood_of_lines_is_read_up_to_max_trial_lines(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_TRIAL_LINES", 5)
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "\n\n" + jsonl([trial("random", "01")]) + "{}\n" * 1000)
    trials, violations = read_trials(out / "trials.jsonl")
    assert len(trials) == 4
    assert [str(v) for v in violations if "required" not in v.message] == [
        "trials.jsonl line 8: the file has more than 5 trial lines; this one and the rest were not read"]


def test_trials_are_read_up_to_max_trial_values(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_TRIAL_VALUES", 100)
    (out / "trials.jsonl").write_text(jsonl(TRIALS + [trial("random", "01", history={"loss": [0.1] * 500})] + TRIALS))
    trials, violations = read_trials(out / "trials.jsonl")
    assert len(trials) == 3
    assert [str(v) for v in violations] == [
        "trials.jsonl line 4: the trials hold more than 100 values; this line and the rest were not read"]


def test_violations_past_the_cap_are_counted_exactly(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_VIOLATIONS_PER_FILE", 5)
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "{}\n" * 3 + '{"contract_version": 1, "x": NaN}\n')
    _, violations = read_trials(out / "trials.jsonl")
    monkeypatch.setattr(validate, "MAX_VIOLATIONS_PER_FILE", 1000)
    _, every = read_trials(out / "trials.jsonl")
    assert len(every) == 41  # 10 per {} line; the last line: NaN, 9 missing keys, 1 unexpected key
    assert violations == [*every[:5], Violation("trials.jsonl", "", "36 more violations not listed")]


def test_a_16_mib_flood_of_trial_lines_is_read_in_linear_time(out: Path) -> None:
    good = json.dumps(trial("grid", "x")).encode()
    cycle = b"{}\n" + b"junk\n" + b'{"a": ' + BIG.encode() + b"}\n" + good + b"\n"
    flood = (cycle * (16 * 2**20 // len(cycle)))[: 16 * 2**20]
    start = time.process_time()
    result = validate.read_trials_bytes(flood)
    elapsed = time.process_time() - start
    assert len(result.records) == 1 and len(result.violations) == validate.MAX_VIOLATIONS_PER_FILE + 2
    assert str(result.violations[-1]).endswith("this one and the rest were not read")
    assert elapsed < 10.0, elapsed  # it took minutes when each line built its own schema validator


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(out: Path) -> None:
    (out / "trials.jsonl").unlink()
    os.mkfifo(out / "trials.jsonl")
    assert lines(out) == ["trials.jsonl: not a regular file"]


def test_comparison_is_read_up_to_max_csv_rows(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_CSV_ROWS", 3)
    (out / "comparison.csv").write_text(COMPARISON + "\n".join(["bayesian,1,1"] * 10) + "\n")
    assert lines(out) == ["comparison.csv line 4: has 3 cells, the header has 15",
                          "comparison.csv line 4: search: row for search bayesian, which has no trials in trials.jsonl",
                          "comparison.csv line 5: the file has more than 3 rows; this one and the rest were not read"]


def test_a_header_with_many_unexpected_columns_is_named_in_short(out: Path) -> None:
    header = ",".join(contract.COMPARISON_COLUMNS) + "," + ",".join(f"x{i}" for i in range(5000))
    (out / "comparison.csv").write_text(header + "\n" + "\n".join(COMPARISON.splitlines()[1:]) + "\n")
    expected = ",".join(contract.COMPARISON_COLUMNS)
    assert lines(out)[0] == (f"comparison.csv line 1: header must be {expected} "
                             "(unexpected x0, x1, x2, x3, x4 and 4995 more)")


# ---------------------------------------------------------------------------------------------
# Bytes and document entry points: the path checkers are thin wrappers


def test_each_checker_has_a_bytes_entry_point_giving_the_same_violations(out: Path) -> None:
    (out / "answers.yaml").write_text("contract_version: 1\nbetter_search: both\n")
    (out / "search_spaces.json").write_text(json.dumps(with_range("dropout", {"type": "float", "min": 0.5, "max": 0.1,
                                                                              "sampling": "linear"})))
    (out / "trials.jsonl").write_text(jsonl(TRIALS) + "nope\n")
    (out / "comparison.csv").write_text(COMPARISON.replace("grid,2,2,01,0.95", "grid,two,2,01,0.95"))
    assert validate.check_answers_bytes((out / "answers.yaml").read_bytes()) == validate.check_answers(out / "answers.yaml")
    assert validate.check_answers_doc({"contract_version": 1, "better_search": "both"}) == validate.check_answers(
        out / "answers.yaml")
    assert validate.check_search_spaces_bytes((out / "search_spaces.json").read_bytes()) == validate.check_search_spaces(
        out / "search_spaces.json")
    read = validate.read_trials_bytes((out / "trials.jsonl").read_bytes())
    assert (list(read.records), list(read.violations)) == read_trials(out / "trials.jsonl")
    assert read.lines == (1, 2, 3) and read.searches == {"grid", "random"}
    assert validate.check_comparison_bytes((out / "comparison.csv").read_bytes(), {"grid", "random"}) == \
        validate.check_comparison(out / "comparison.csv", {"grid", "random"})
    assert [str(v) for v in validate.check_answers_bytes(b"contract_version: 1\nbetter_search: both\n", "cell")] == [
        "cell $.better_search: 'both' is not one of ['grid', 'random', 'bayesian', 'manual']"]


def test_read_trials_bytes_applies_transform_before_checking() -> None:
    renamed = trial("grid", "00", hyperparameters={"lr": 0.01})
    read = validate.read_trials_bytes(jsonl([renamed]).encode(), transform=lambda r: {
        **r, "hyperparameters": {"learning_rate": r["hyperparameters"]["lr"]}})
    assert read.violations == () and read.records[0]["hyperparameters"] == {"learning_rate": 0.01}


def test_cv_results_files_stand_for_trials_jsonl_in_a_scikit_learn_output_dir(out: Path) -> None:
    (out / "trials.jsonl").unlink()
    header = "mean_fit_time,param_model__learning_rate,param_model__batch_size,mean_test_score\n"
    (out / "cv_results_grid.csv").write_text(header + "1.5,0.001,32,0.91\n2.0,0.01,32,0.93\n")
    (out / "cv_results_random.csv").write_text(header + "1.0,0.003,64,0.92\n1.2,0.0005,NaN,0.9\n")
    assert lines(out) == ["cv_results_random.csv line 3: param_model__batch_size must be a finite number, got 'NaN'"]
