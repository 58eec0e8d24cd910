"""Tests for grader.evidence: what gather reads from an output dir, from KerasTuner dirs and notebooks, and every problem's line."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from grader.evidence import Evidence, canonical_name, gather, notebook_answers, png_problem, search_of_project
from grader.result import ModelEvaluation
from grader.validate import Violation
from tunekit.spaces import GridSpace, RandomSpace

OUTPUTS = ROOT / "tests" / "fixtures" / "outputs"
REFERENCE = OUTPUTS / "reference_quick"  # a real quick-profile reference run (models left out: they are made below)
KERAS_TUNER_ONLY = OUTPUTS / "keras_tuner_only"  # the same run's KerasTuner project dirs, trial.json/oracle.json only
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
ALIASES = {"lr": "learning_rate", "batch": "batch_size", "n_filters": "filters", "dropout_rate": "dropout"}

# The grader's own evaluation of the models of the run in REFERENCE on the 10,000 MNIST test images.
REFERENCE_EVALUATIONS = (
    ModelEvaluation("grid", "models/best_grid.keras", 0.9385, 10000, None, 3.0),
    ModelEvaluation("random", "models/best_random.keras", 0.91, 10000, None, 3.0),
)


# ---------------------------------------------------------------------------------------------
# Builders shared with test_checks


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real greyscale PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(range(width)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_keras_stand_in(path: Path) -> None:
    """A zip laid out like a Keras v3 archive (the grader's own process only looks inside the zip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")


def reference_output(dest: Path) -> Path:
    """A copy of the reference run's output dir, with stand-ins for its two models."""
    shutil.copytree(REFERENCE, dest)
    for search in ("grid", "random"):
        write_keras_stand_in(dest / "models" / f"best_{search}.keras")
    return dest


def trial_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, records: list[Any]) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# ---------------------------------------------------------------------------------------------
# A complete output dir


def test_the_reference_run_is_read_whole_and_without_a_problem(tmp_path: Path) -> None:
    ev = gather(reference_output(tmp_path / "out"), aliases=ALIASES, run_status="completed",
                run_message="ran to the end", evaluations=REFERENCE_EVALUATIONS)
    assert ev.problems == ()
    assert ev.trials_source == "trials.jsonl"
    assert [t.source for t in ev.trials] == [f"trials.jsonl line {n}" for n in range(1, 25)]
    assert (len(ev.trials_of("grid")), len(ev.completed_of("random"))) == (16, 8)
    assert ev.spaces_source == {"grid": "search_spaces.json", "random": "search_spaces.json"}
    assert isinstance(ev.spaces["grid"], GridSpace) and ev.spaces["grid"].size == 16
    assert isinstance(ev.spaces["random"], RandomSpace) and ev.spaces["random"].max_trials == 8
    assert ev.answers_source == "answers.yaml" and ev.answers is not None
    assert ev.answers["most_important_hyperparameter"] == "learning_rate"
    assert ev.comparison is not None and ev.comparison["grid"]["trials"] == "16"
    assert ev.files == {name: None for name in (
        "answers.yaml", "comparison.csv", "search_spaces.json", "trials.jsonl", "models/best_grid.keras",
        "models/best_random.keras", "plots/best_so_far.png", "plots/grid_trials.png", "plots/random_trials.png")}
    best = ev.best_of("grid")
    assert best is not None and (best.trial_id, best.val_accuracy) == ("10", pytest.approx(0.947))
    assert ev.evaluation("random") == REFERENCE_EVALUATIONS[1]
    assert all(t.outside == () for t in ev.trials)


def test_a_missing_output_dir_is_one_problem_not_an_exception(tmp_path: Path) -> None:
    ev = gather(tmp_path / "never-written", run_status="crashed")
    assert ev.problems == (Violation("output dir", "", "the run left no output dir"),)
    assert (ev.trials, ev.files, ev.answers, ev.comparison, ev.run_status) == ((), {}, None, None, "crashed")


def test_an_empty_output_dir_names_each_missing_file(tmp_path: Path) -> None:
    ev = gather(tmp_path)
    assert [str(p) for p in ev.problems] == [
        "trials.jsonl: file is missing", "comparison.csv: file is missing", "answers.yaml: file is missing"]
    assert ev.trials_source is None and ev.spaces == {}


# ---------------------------------------------------------------------------------------------
# trials.jsonl: every malformed input has its own message, and the rest is still used


def _break_line(out: Path, line: int, change: Any) -> None:
    path = out / "trials.jsonl"
    records: list[Any] = trial_lines(path)
    records[line - 1] = change(records[line - 1])
    write_lines(path, records)


def _set(**fields: Any) -> Any:
    def change(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, **fields}
    return change


def _set_hp(**values: Any) -> Any:
    def change(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "hyperparameters": {**record["hyperparameters"], **values}}
    return change


@pytest.mark.parametrize(("line", "change", "used", "message"), [
    (3, lambda r: json.dumps(r)[:60], 23,
     "trials.jsonl line 3: not valid JSON: Expecting property name enclosed in double quotes at column 61"),
    (4, lambda r: json.dumps(r).replace(f'"val_accuracy": {r["val_accuracy"]},', '"val_accuracy": NaN,'), 23,
     "trials.jsonl line 4: $.val_accuracy: numbers must be finite, got NaN"),
    (5, _set(val_accuracy=1.5), 23, "trials.jsonl line 5: $.val_accuracy: 1.5 is greater than the maximum of 1"),
    (7, _set(trial_id="05"), 23, "trials.jsonl line 7: $.trial_id: duplicate trial_id '05' in search grid (first on line 6)"),
    (21, _set_hp(learning_rate=0.5), 24,
     "trials.jsonl line 21: $.hyperparameters.learning_rate: learning_rate=0.5 is outside the declared random range "
     "0.0001..0.1"),
    (2, _set_hp(learning_rate=0.005), 24,
     "trials.jsonl line 2: $.hyperparameters.learning_rate: learning_rate=0.005 is not one of the declared grid "
     "values 0.001, 0.01"),
    (1, _set_hp(epochs=3), 24,
     "trials.jsonl line 1: $.hyperparameters.epochs: epochs=3 differs from the grid search's fixed value 1"),
    (17, _set_hp(batch_size=256), 24,
     "trials.jsonl line 17: $.hyperparameters.batch_size: batch_size=256 is not one of the declared random choices "
     "32, 64, 128"),
])
def test_each_malformed_trial_line_is_reported_by_file_and_line_and_the_rest_is_used(
        tmp_path: Path, line: int, change: Any, used: int, message: str) -> None:
    out = reference_output(tmp_path / "out")
    _break_line(out, line, change)
    ev = gather(out, aliases=ALIASES)
    assert [str(p) for p in ev.problems if p.file == "trials.jsonl"] == [message]
    assert len(ev.trials) == used
    assert ev.files["trials.jsonl"] is None  # still a trials file: it has usable trials


def test_a_trial_outside_the_declared_space_is_kept_but_marked(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    _break_line(out, 21, _set_hp(learning_rate=0.5, dropout=0.9))
    ev = gather(out)
    marked = [t for t in ev.trials if t.outside]
    assert [(t.search, t.trial_id, t.source, t.outside) for t in marked] == [
        ("random", "4", "trials.jsonl line 21", ("learning_rate", "dropout"))]


def test_a_trials_file_without_one_usable_line_is_not_what_it_claims(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    (out / "trials.jsonl").write_text("not json\n")
    ev = gather(out)
    assert ev.trials == ()
    assert ev.files["trials.jsonl"] == "line 1: not valid JSON: Expecting value at column 1"


def test_aliases_in_trials_and_search_spaces_become_canonical_names(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    text = (out / "trials.jsonl").read_text().replace('"learning_rate"', '"lr"').replace('"batch_size"', '"batch"')
    (out / "trials.jsonl").write_text(text)
    spaces = (out / "search_spaces.json").read_text().replace('"learning_rate"', '"lr"')
    (out / "search_spaces.json").write_text(spaces)
    ev = gather(out, aliases=ALIASES)
    assert ev.problems == ()
    assert [t.source for t in ev.trials][-1] == "trials.jsonl line 24"
    assert set(ev.trials[0].hyperparameters) == {"learning_rate", "batch_size", "epochs", "filters", "kernel_size",
                                                 "dropout", "l2"}
    assert set(ev.spaces["grid"].values) == {"learning_rate", "batch_size", "filters", "dropout"}  # type: ignore[union-attr]


def test_without_the_alias_the_same_file_is_a_contract_violation(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    (out / "trials.jsonl").write_text((out / "trials.jsonl").read_text().replace('"learning_rate"', '"lr"', 1))
    ev = gather(out)
    assert [str(p) for p in ev.problems] == [
        "trials.jsonl line 1: $.hyperparameters: 'lr' is not one of ['learning_rate', 'batch_size', 'epochs', "
        "'filters', 'kernel_size', 'dropout', 'l1', 'l2']"]


def test_a_symlinked_trials_file_is_refused_and_never_followed(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    elsewhere = tmp_path / "elsewhere.jsonl"
    (out / "trials.jsonl").rename(elsewhere)
    (out / "trials.jsonl").symlink_to(elsewhere)
    ev = gather(out)
    assert ev.trials == ()
    assert ev.files["trials.jsonl"] == "is a symbolic link, not a regular file"
    assert str(ev.problems[0]) == "trials.jsonl: is a symbolic link, not a regular file"


# ---------------------------------------------------------------------------------------------
# KerasTuner project dirs


def test_a_keras_tuner_only_output_dir_is_read_from_its_trial_files() -> None:
    ev = gather(KERAS_TUNER_ONLY, aliases=ALIASES)
    assert ev.trials_source == "tuner"
    assert ev.spaces_source == {"grid": "tuner/grid/oracle.json", "random": "tuner/random/oracle.json"}
    assert [str(p) for p in ev.problems] == ["comparison.csv: file is missing", "answers.yaml: file is missing"]
    grid = ev.spaces["grid"]
    assert isinstance(grid, GridSpace)
    assert dict(grid.values) == {"learning_rate": (0.001, 0.01), "batch_size": (32, 64), "filters": (8, 16),
                                 "dropout": (0.0, 0.3)}
    assert dict(grid.fixed) == {"epochs": 1, "kernel_size": 3, "l2": 0.0}
    rand = ev.spaces["random"]
    assert isinstance(rand, RandomSpace) and rand.ranges["learning_rate"].sampling == "log"
    assert rand.ranges["filters"].step == 8 and rand.ranges["batch_size"].values == (32, 64, 128)
    # the same trials as the run's trials.jsonl: ids, hyperparameters and best val accuracy
    from_jsonl = {(r["search"], r["trial_id"]): r for r in trial_lines(REFERENCE / "trials.jsonl")}
    assert len(ev.trials) == len(from_jsonl) == 24
    for t in ev.trials:
        record = from_jsonl[(t.search, t.trial_id)]
        assert dict(t.hyperparameters) == record["hyperparameters"]
        assert (t.val_accuracy, t.val_loss) == (record["val_accuracy"], record["val_loss"])
        assert t.train_seconds is None and t.source == f"tuner/{t.search}/trial_{t.trial_id}/trial.json"


def _copy_tuner(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(KERAS_TUNER_ONLY, out)
    return out


def test_only_completed_keras_tuner_trials_are_read_and_a_broken_trial_file_is_named(tmp_path: Path) -> None:
    out = _copy_tuner(tmp_path)
    running = out / "tuner" / "grid" / "trial_15" / "trial.json"
    running.write_text(running.read_text().replace('"COMPLETED"', '"RUNNING"'))
    (out / "tuner" / "grid" / "trial_14" / "trial.json").write_text("{")
    ev = gather(out)
    assert len(ev.trials_of("grid")) == 14
    assert [str(p) for p in ev.problems if "tuner" in p.file] == [
        "tuner/grid/trial_14/trial.json: not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"]


def test_keras_tuner_hyperparameter_names_go_through_the_aliases(tmp_path: Path) -> None:
    out = _copy_tuner(tmp_path)
    for path in (out / "tuner").rglob("*.json"):
        path.write_text(path.read_text().replace('"learning_rate"', '"lr"').replace('"dropout"', '"units"'))
    ev = gather(out, aliases=ALIASES)
    assert set(ev.trials[0].hyperparameters) == {"learning_rate", "batch_size", "epochs", "filters", "kernel_size", "l2"}
    assert [str(p) for p in ev.problems if "tuner" in p.file] == [
        "tuner/grid/trial_00/trial.json $.hyperparameters.values.units: 'units' is not a canonical hyperparameter "
        "name; it is ignored (use one of learning_rate, batch_size, epochs, filters, kernel_size, dropout, l1, l2)",
        "tuner/random/trial_0/trial.json $.hyperparameters.values.units: 'units' is not a canonical hyperparameter "
        "name; it is ignored (use one of learning_rate, batch_size, epochs, filters, kernel_size, dropout, l1, l2)"]


def test_a_keras_tuner_metric_out_of_range_drops_that_trial_with_its_file(tmp_path: Path) -> None:
    out = _copy_tuner(tmp_path)
    path = out / "tuner" / "random" / "trial_3" / "trial.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"] = [1.7]
    path.write_text(json.dumps(doc))
    ev = gather(out)
    assert len(ev.trials_of("random")) == 7
    assert [str(p) for p in ev.problems if "tuner" in p.file] == [
        "tuner/random/trial_3/trial.json $.metrics.metrics.val_accuracy: val_accuracy 1.7 is not a number in [0, 1]"]


def test_trials_jsonl_wins_over_the_keras_tuner_dirs_when_it_has_trials(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    shutil.copytree(KERAS_TUNER_ONLY / "tuner", out / "tuner")
    ev = gather(out)
    assert ev.trials_source == "trials.jsonl" and ev.problems == ()
    assert "tuner/grid/oracle.json" in ev.files and not any("trial_" in name for name in ev.files)


@pytest.mark.parametrize(("project", "oracle", "search"), [
    ("tuner/grid", {}, "grid"),
    ("tuner/Random_Search", {}, "random"),
    ("random_search/project", {}, "random"),
    ("tuner/bayes_opt", {}, "bayesian"),
    ("tuner/project", {"num_initial_points": 3, "alpha": 1e-4, "beta": 2.6}, "bayesian"),
    ("tuner/project", {}, None),
])
def test_the_search_of_a_keras_tuner_project_comes_from_its_dir_name_or_its_oracle(
        project: str, oracle: dict[str, Any], search: str | None) -> None:
    assert search_of_project(Path(project), oracle) == search


def test_a_project_whose_search_cannot_be_told_is_named(tmp_path: Path) -> None:
    out = _copy_tuner(tmp_path)
    (out / "tuner" / "random").rename(out / "tuner" / "second")
    ev = gather(out)
    assert len(ev.trials_of("random")) == 0
    assert str(ev.problems[0]) == ("tuner/second/oracle.json: cannot tell which search this KerasTuner project ran: "
                                   "name its project dir grid or random")


# ---------------------------------------------------------------------------------------------
# answers.yaml and the notebook's answers cell


def _notebook(path: Path, cells: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _cell(kind: str, source: str, tags: tuple[str, ...] = ("answers",)) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": source.splitlines(True)}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


@pytest.mark.parametrize("cell", [
    _cell("raw", "most_important_hyperparameter: lr\nbetter_search: Grid\nbest_val_accuracy: {grid: 0.95}\n"),
    _cell("markdown", "My answers:\n\n```yaml\nmost_important_hyperparameter: Learning rate\nbetter_search: grid\n"
                      "best_val_accuracy:\n  grid: 0.95\n```\n"),
    _cell("code", "%load_ext autoreload\nANSWERS = {\n    'most_important_hyperparameter': 'learning_rate',\n"
                  "    'better_search': 'grid', 'best_val_accuracy': {'grid': 0.95},\n}\nprint(ANSWERS)\n"),
])
def test_answers_come_from_the_notebook_cell_tagged_answers_when_there_is_no_answers_yaml(
        tmp_path: Path, cell: dict[str, Any]) -> None:
    notebook = _notebook(tmp_path / "run.ipynb", [_cell("code", "x = 1", ()), cell])
    ev = gather(tmp_path, aliases=ALIASES, notebook=notebook)
    assert ev.answers_source == "run.ipynb cell 1"
    assert ev.answers is not None
    assert (ev.answers["most_important_hyperparameter"], ev.answers["better_search"], ev.answers["best_val_accuracy"]) \
        == ("learning_rate", "grid", {"grid": 0.95})
    assert not ev.problems_in("run.ipynb", "answers.yaml")


def test_a_code_cell_is_never_run_and_a_computed_answer_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = f"ANSWERS = {{'better_search': open({str(marker)!r}, 'w').write('x')}}\n"
    answers, where, problems = notebook_answers(_notebook(tmp_path / "nb.ipynb", [_cell("code", source)]))
    assert (answers, where) == (None, None)
    assert [str(p) for p in problems] == [
        "nb.ipynb cell 0: ANSWERS must be a literal dict (plain strings, numbers, lists), not computed"]
    assert not marker.exists()


def test_an_answers_cell_too_long_to_be_answers_is_refused_unparsed(tmp_path: Path) -> None:
    source = "ANSWERS = {'x': [" + "1," * 200_000 + "]}\n"  # 400 KB: Python's parser would take gigabytes for 64 MiB
    answers, where, problems = notebook_answers(_notebook(tmp_path / "nb.ipynb", [_cell("code", source)]))
    assert (answers, where) == (None, None)
    assert [str(p) for p in problems] == ["nb.ipynb cell 0: the answers cell is longer than 256 KiB; answers are short"]


@pytest.mark.parametrize(("cells", "message"), [
    ([_cell("code", "x = 1", ())], "nb.ipynb: no cell is tagged answers and there is no answers.yaml"),
    ([_cell("code", "answers = {}")], "nb.ipynb cell 0: the answers cell does not assign ANSWERS = {...}"),
    ([_cell("code", "ANSWERS = {")], "nb.ipynb cell 0: the answers cell is not valid Python: SyntaxError"),
    ([_cell("raw", "better_search: [grid\n")],
     "nb.ipynb cell 0: line 2, column 1: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    ([_cell("raw", "better_search: both\n")],
     "nb.ipynb cell 0: $.better_search: 'both' is not one of ['grid', 'random', 'bayesian', 'manual']"),
])
def test_a_broken_answers_cell_is_named_by_cell(tmp_path: Path, cells: list[dict[str, Any]], message: str) -> None:
    ev = gather(tmp_path, notebook=_notebook(tmp_path / "nb.ipynb", cells))
    assert [str(p) for p in ev.problems_in("nb.ipynb")] == [message]


def test_answers_yaml_wins_over_the_notebook_and_its_aliases_are_applied(tmp_path: Path) -> None:
    (tmp_path / "answers.yaml").write_text("contract_version: 1\nmost_important_hyperparameter: lr\n"
                                           "hyperparameter_ranking: [lr, Batch_Size]\n")
    notebook = _notebook(tmp_path / "nb.ipynb", [_cell("raw", "most_important_hyperparameter: dropout\n")])
    ev = gather(tmp_path, aliases=ALIASES, notebook=notebook)
    assert ev.answers_source == "answers.yaml" and ev.answers is not None
    assert ev.answers["most_important_hyperparameter"] == "learning_rate"
    assert ev.answers["hyperparameter_ranking"] == ["learning_rate", "batch_size"]
    assert not ev.problems_in("answers.yaml")


def test_an_answers_yaml_with_aliases_is_refused_and_not_read(tmp_path: Path) -> None:
    (tmp_path / "answers.yaml").write_text("contract_version: 1\nx: &a grid\nbetter_search: *a\n")
    ev = gather(tmp_path)
    assert ev.answers is None
    assert [str(p) for p in ev.problems_in("answers.yaml")] == [
        "answers.yaml line 3, column 16: YAML aliases (*name) are not allowed"]


@pytest.mark.parametrize(("written", "name"), [
    ("lr", "learning_rate"), ("Learning Rate", "learning_rate"), ("batch-size", "batch_size"), (" L2 ", "l2"),
    ("units", "units"),
])
def test_canonical_name_reads_a_hyperparameter_as_students_write_it(written: str, name: str) -> None:
    assert canonical_name(written, ALIASES) == name


# ---------------------------------------------------------------------------------------------
# Files: PNGs decode, models are archives, CSV has its columns


@pytest.mark.parametrize(("data", "problem"), [
    (png_bytes(), None),
    (b"GIF89a", "not a PNG image: it does not start with the PNG signature"),
    (png_bytes()[:50], "not a PNG image: its IDAT chunk is cut off"),
    (png_bytes()[:-12], "not a PNG image: it ends before its IEND chunk"),
    (png_bytes()[:30] + bytes([png_bytes()[30] ^ 0xFF]) + png_bytes()[31:], "not a PNG image: its IHDR chunk fails its checksum"),
])
def test_a_png_must_decode(data: bytes, problem: str | None) -> None:
    assert png_problem(data) == problem


def test_a_png_whose_image_data_is_short_is_refused() -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100, 100, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    assert png_problem(data) == "not a PNG image: its image data is cut short (10 of 30100 bytes)"


def test_each_file_says_whether_it_is_what_its_name_claims(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    (out / "plots" / "grid_trials.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (out / "models" / "best_random.keras").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (out / "comparison.csv").write_text("search,trials\ngrid,16\n")
    ev = gather(out)
    assert {k: v for k, v in ev.files.items() if v} == {
        "plots/grid_trials.png": "not a PNG image: its \x00\x00\x00\x00 chunk fails its checksum",
        "models/best_random.keras": "not a Keras v3 archive: the zip lacks config.json, metadata.json, model.weights.h5",
        "comparison.csv": "lacks the columns completed_trials, best_trial_id, best_val_accuracy, best_val_loss, "
                          "total_train_seconds, learning_rate, batch_size, epochs, filters, kernel_size, dropout, l2",
    }


# ---------------------------------------------------------------------------------------------
# No input, however malformed, makes gather raise


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_contract_keys = st.sampled_from(["search", "trial_id", "hyperparameters", "status", "val_accuracy", "val_loss",
                                  "history", "train_seconds", "learning_rate", "grid", "random", "values", "ranges",
                                  "metrics", "observations", "space", "cells", "source", "ANSWERS", "better_search"])
_near_json = st.recursive(
    _json, lambda inner: st.dictionaries(_contract_keys | st.text(max_size=6), inner, max_size=6), max_leaves=20)
_blob = st.one_of(st.binary(max_size=200), _near_json.map(lambda v: json.dumps(v).encode()),
                  st.lists(_near_json, max_size=4).map(lambda vs: "\n".join(json.dumps(v) for v in vs).encode()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trials=_blob, spaces=_blob, answers=_blob, comparison=_blob, oracle=_blob, trial_json=_blob, notebook=_blob,
       plot=_blob)
def test_gather_never_raises_whatever_the_files_hold(trials: bytes, spaces: bytes, answers: bytes, comparison: bytes,
                                                     oracle: bytes, trial_json: bytes, notebook: bytes, plot: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "trials.jsonl").write_bytes(trials)
        (out / "search_spaces.json").write_bytes(spaces)
        (out / "comparison.csv").write_bytes(comparison)
        (out / "plots").mkdir()
        (out / "plots" / "a.png").write_bytes(PNG_HEAD + plot)
        (out / "tuner" / "random_x" / "trial_0").mkdir(parents=True)
        (out / "tuner" / "random_x" / "oracle.json").write_bytes(oracle)
        (out / "tuner" / "random_x" / "trial_0" / "trial.json").write_bytes(trial_json)
        (out / "nb.ipynb").write_bytes(notebook)
        ev = gather(out, aliases=ALIASES, notebook=out / "nb.ipynb")
        assert isinstance(ev, Evidence)
        (out / "answers.yaml").write_bytes(answers)
        assert isinstance(gather(out, aliases=ALIASES), Evidence)



def test_a_deep_or_crowded_output_dir_is_walked_only_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / "/".join(["d"] * 15)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    monkeypatch.setattr("grader.evidence.MAX_FILES", 3)
    for name in ("a", "b", "c", "e"):
        (tmp_path / f"{name}.txt").write_text(name)
    ev = gather(tmp_path)
    assert sorted(ev.files) == ["a.txt", "b.txt", "c.txt"]
    assert str(ev.problems[0]) == "output dir: holds more than 3 files; the rest were not looked at"
    monkeypatch.setattr("grader.evidence.MAX_FILES", 100)
    assert str(gather(tmp_path).problems[0]) == (
        "d/d/d/d/d/d/d/d/d/d/d/d: folders nested more than 12 levels deep were not looked at")


# ---------------------------------------------------------------------------------------------
# Bounds: 5000-digit integers, deep nesting and floods become problems, never exceptions


BIG = "9" * 5000


@pytest.mark.parametrize(("file", "old", "new", "problem"), [
    ("trials.jsonl", '"batch_size":32,', f'"batch_size":{BIG},', "trials.jsonl line 1: an integer with more than 64 digits"),
    ("search_spaces.json", '"max_trials": 8', f'"max_trials": {BIG}', "search_spaces.json: an integer with more than 64 digits"),
    ("answers.yaml", "grid: 0.947", f"grid: {BIG}", "answers.yaml line 12, column 9: an integer with more than 64 digits"),
    ("comparison.csv", "grid,16,16,", f"grid,{BIG},16,", "comparison.csv line 2: trials: trials has a number with more "
                                                          "than 64 digits"),
], ids=["trials", "search-spaces", "answers", "comparison"])
def test_a_5000_digit_integer_is_a_problem_of_its_file_and_gather_goes_on(tmp_path: Path, file: str, old: str, new: str,
                                                                         problem: str) -> None:
    out = reference_output(tmp_path / "out")
    text = (out / file).read_text()
    assert old in text
    (out / file).write_text(text.replace(old, new, 1))
    ev = gather(out, aliases=ALIASES)
    assert [str(p) for p in ev.problems] == [problem]
    assert len(ev.trials) == (23 if file == "trials.jsonl" else 24)


def test_a_5000_digit_integer_in_a_keras_tuner_trial_drops_that_trial(tmp_path: Path) -> None:
    out = _copy_tuner(tmp_path)
    path = out / "tuner" / "grid" / "trial_03" / "trial.json"
    path.write_text(path.read_text().replace('"epochs": 1', f'"epochs": {BIG}', 1))
    ev = gather(out)
    assert [str(p) for p in ev.problems if "tuner" in p.file] == [
        "tuner/grid/trial_03/trial.json: an integer with more than 64 digits"]
    assert len(ev.trials_of("grid")) == 15


def test_a_long_integer_in_a_code_answers_cell_is_refused(tmp_path: Path) -> None:
    source = f"ANSWERS = {{'search_seconds': {{'grid': {'9' * 400}}}}}\n"
    answers, where, problems = notebook_answers(_notebook(tmp_path / "nb.ipynb", [_cell("code", source)]))
    assert (answers, where) == (None, None)
    assert [str(p) for p in problems] == ["nb.ipynb cell 0: ANSWERS holds an integer with more than 64 digits"]


def test_deep_nesting_and_an_alias_bomb_are_problems(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    (out / "search_spaces.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "answers.yaml").write_text("contract_version: 1\na: &a [x, x, x, x, x, x, x, x]\n"
                                      + "".join(f"{k}: &{k} [{', '.join(['*' + p] * 8)}]\n"
                                                for p, k in zip("abcdefgh", "bcdefghi")))
    ev = gather(out)
    assert [str(p) for p in ev.problems] == ["search_spaces.json: nested more than 64 levels deep",
                                             "answers.yaml line 3, column 8: YAML aliases (*name) are not allowed"]
    assert ev.answers is None and ev.spaces == {}


def test_a_16_mib_flood_of_trial_lines_is_gathered_quickly(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    good = (REFERENCE / "trials.jsonl").read_bytes().splitlines()
    cycle = b"\n".join([b"{}", b"junk", b'{"a": ' + BIG.encode() + b"}", b"[" * 5000 + b"]" * 5000, *good]) + b"\n"
    (out / "trials.jsonl").write_bytes((cycle * (16 * 2**20 // len(cycle) + 1))[: 16 * 2**20])
    import time

    start = time.process_time()
    ev = gather(out, aliases=ALIASES)
    assert time.process_time() - start < 10.0  # minutes before: a schema validator was built for every line
    assert len(ev.trials) == 24  # the first copy of each trial; the rest repeat their ids
    trial_problems = [p for p in ev.problems if p.file == "trials.jsonl"]
    assert str(trial_problems[-1]).endswith("more than 10000 trial lines; this one and the rest were not read")
    assert str(trial_problems[-2]).endswith("more violations not listed")


def test_a_huge_grid_is_named_in_short_in_a_trials_problem(tmp_path: Path) -> None:
    out = reference_output(tmp_path / "out")
    doc = json.loads((out / "search_spaces.json").read_text())
    doc["grid"]["values"]["learning_rate"] = [0.001 * (i + 1) for i in range(5000)]
    (out / "search_spaces.json").write_text(json.dumps(doc))
    _break_line(out, 1, _set_hp(learning_rate=0.0005))
    ev = gather(out)
    problem = next(str(p) for p in ev.problems if p.file == "trials.jsonl")
    assert problem == ("trials.jsonl line 1: $.hyperparameters.learning_rate: learning_rate=0.0005 is not one of the "
                       "declared grid values 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01 "
                       "and 4990 more")


# ---------------------------------------------------------------------------------------------
# One reading: each file is read once, validate is given bytes, nothing is copied to a temp dir


def test_gather_writes_no_temp_copy_even_when_aliases_change_the_files(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = reference_output(tmp_path / "out")
    (out / "trials.jsonl").write_text((out / "trials.jsonl").read_text().replace('"learning_rate"', '"lr"'))
    (out / "answers.yaml").write_text((out / "answers.yaml").read_text().replace(
        "most_important_hyperparameter: learning_rate", "most_important_hyperparameter: lr"))

    def no_temp(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("gather must not write temp copies")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", no_temp)
    monkeypatch.setattr(tempfile, "mkdtemp", no_temp)
    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    ev = gather(out, aliases=ALIASES)
    assert ev.problems == ()
    assert ev.answers is not None and ev.answers["most_important_hyperparameter"] == "learning_rate"


def test_a_trial_record_holds_what_a_plot_needs_whatever_its_source(tmp_path: Path) -> None:
    for ev in (gather(reference_output(tmp_path / "out")), gather(KERAS_TUNER_ONLY)):
        record = ev.trials[0].as_record()
        assert {"search", "trial_id", "val_accuracy", "status", "hyperparameters"} <= set(record)
        assert record["status"] == "COMPLETED" and isinstance(record["val_accuracy"], float)
        assert set(record["hyperparameters"]) <= set(ALIASES.values()) | {"epochs", "kernel_size", "l2"}
