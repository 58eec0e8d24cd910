"""Tests for grader.cv_results: scikit-learn searches' cv_results_ read as trials, bounded, graded end to end."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console

from conftest import ROOT
from grader import contract, grade
from grader.cv_results import MAX_CV_BYTES, MAX_CV_ROWS, hyperparameter_name, read_cv_results
from grader.evidence import Trial, gather
from grader.result import read_result
from grader.validate import Violation

FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
ALIASES = {"lr": "learning_rate", "batch": "batch_size", "n_filters": "filters", "dropout_rate": "dropout"}

# The first columns of pd.DataFrame(GridSearchCV(..., cv=2).cv_results_).to_csv(index=False), trimmed to what matters.
HEADER = ("mean_fit_time,std_fit_time,param_model__n_filters,param_optimizer__learning_rate,params,"
          "split0_test_score,split1_test_score,mean_test_score,rank_test_score")


def grid_csv(*rows: str) -> str:
    return HEADER + "\n" + "".join(row + "\n" for row in rows)


def row(fit: str, filters: str, lr: str, score: str) -> str:
    return f"{fit},0.1,{filters},{lr},\"{{'model__n_filters': {filters}}}\",{score},{score},{score},1"


def write(root: Path, name: str, text: str | bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(("column", "canonical"), [
    ("param_model__learning_rate", "learning_rate"),
    ("param_optimizer__learning_rate", "learning_rate"),
    ("param_learning_rate", "learning_rate"),
    ("param_clf__model__lr", "learning_rate"),
    ("param_lr", "learning_rate"),
    ("param_model__dropout_rate", "dropout"),
    ("param_batch_size", "batch_size"),
    ("param_model__n_filters", "filters"),
    ("param_model__activation", None),
])
def test_param_columns_are_mapped_through_the_rubric_aliases(column: str, canonical: str | None) -> None:
    assert hyperparameter_name(column, ALIASES) == canonical


# ---------------------------------------------------------------------------------------------
# CSV


def test_a_grid_searchs_csv_becomes_one_completed_trial_per_row(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", grid_csv(row("1.5", "4", "0.01", "0.8"), row("2.0", "8", "0.001", "0.9")))
    read = read_cv_results(tmp_path, ALIASES)
    assert read.files == ("cv_results_grid.csv",) and read.source == "cv_results_grid.csv"
    assert read.problems == ()
    assert read.trials == (
        Trial("grid", "0", {"filters": 4, "learning_rate": 0.01}, "COMPLETED", 0.8, None, 3.0, "cv_results_grid.csv", 2),
        Trial("grid", "1", {"filters": 8, "learning_rate": 0.001}, "COMPLETED", 0.9, None, 4.0, "cv_results_grid.csv", 3),
    )


def test_fit_time_is_taken_once_per_fold_and_as_is_without_fold_columns(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", "mean_fit_time,param_lr,split0_test_score,split1_test_score,"
                                           "split2_test_score,mean_test_score\n2.5,0.01,0.5,0.5,0.5,0.5\n")
    write(tmp_path, "cv_results_random.csv", "mean_fit_time,param_lr,mean_test_score\n2.5,0.01,0.5\n")
    seconds = {t.search: t.train_seconds for t in read_cv_results(tmp_path, ALIASES).trials}
    assert seconds == {"grid": 7.5, "random": 2.5}


def test_pandas_index_column_and_a_parameter_a_candidate_did_not_set_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", ",mean_fit_time,param_model__dropout,param_model__l2,mean_test_score\n"
                                           "0,1.0,0.2,,0.7\n1,1.0,,0.001,0.6\n")
    read = read_cv_results(tmp_path)
    assert read.problems == ()
    assert [dict(t.hyperparameters) for t in read.trials] == [{"dropout": 0.2}, {"l2": 0.001}]


def test_a_nan_score_is_a_failed_trial_as_sklearn_records_a_fit_that_raised(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", grid_csv(row("1.0", "4", "0.01", ""), row("1.0", "8", "0.01", "nan")))
    read = read_cv_results(tmp_path, ALIASES)
    assert read.problems == ()
    assert [(t.status, t.val_accuracy, t.completed) for t in read.trials] == [("FAILED", None, False)] * 2


def test_malformed_rows_are_refused_with_their_line_and_the_rest_kept(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", grid_csv(
        row("1.0", "4", "0.01", "0.8"),
        row("1.0", "4", "relu", "0.8"),
        row("nan", "4", "0.01", "0.8"),
        row("1.0", "nan", "0.01", "0.8"),
        row("1.0", "4", "0.01", "-0.31"),
        row("1.0", "4", "0.01", "inf"),
        "1.0,0.1,4",
        row("1.0", "8", "0.01", "0.9"),
    ))
    read = read_cv_results(tmp_path, ALIASES)
    assert [t.line for t in read.trials] == [2, 9]
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.csv line 3: param_optimizer__learning_rate must be a finite number, got 'relu'",
        "cv_results_grid.csv line 4: mean_fit_time must be a finite number of seconds, got 'nan'",
        "cv_results_grid.csv line 5: param_model__n_filters must be a finite number, got 'nan'",
        "cv_results_grid.csv line 6: mean_test_score -0.31 is not an accuracy in [0, 1]: score the search by "
        "accuracy (scoring='accuracy')",
        "cv_results_grid.csv line 7: mean_test_score must be a number, got 'inf'",
        "cv_results_grid.csv line 8: has 3 cells, the header has 9",
    ]


def test_unknown_and_repeated_parameters_are_named_and_ignored(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", "mean_fit_time,param_model__activation,param_model__lr,"
                                           "param_optimizer__learning_rate,mean_test_score\n1.0,relu,0.1,0.2,0.5\n")
    read = read_cv_results(tmp_path, ALIASES)
    assert dict(read.trials[0].hyperparameters) == {"learning_rate": 0.1}
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.csv line 1: param_model__activation: 'activation' is not a canonical hyperparameter name; "
        "it is ignored (use one of learning_rate, batch_size, epochs, filters, kernel_size, dropout, l1, l2)",
        "cv_results_grid.csv line 1: param_optimizer__learning_rate: is learning_rate again (first as "
        "param_model__lr); only that column is read",
    ]


def test_a_file_without_scores_or_that_is_not_csv_gives_one_reason(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", "mean_fit_time,param_lr\n1.0,0.1\n")
    write(tmp_path, "cv_results_random.csv", b"mean_test_score\n\xff\xfe\n")
    read = read_cv_results(tmp_path, ALIASES)
    assert read.trials == ()
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.csv: has no mean_test_score column: save the search's cv_results_ with every column "
        "(pd.DataFrame(search.cv_results_))",
        "cv_results_random.csv: not UTF-8 text (byte 16)",
    ]


def test_a_huge_file_is_refused_unread_and_a_long_one_is_read_to_the_row_limit(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", b"mean_test_score\n" + b"0.5\n" * (MAX_CV_BYTES // 4 + 1))
    write(tmp_path, "cv_results_random.csv", "mean_fit_time,param_lr,mean_test_score\n"
                                             + "1,0.1,0.5\n" * (MAX_CV_ROWS + 5))
    started = time.monotonic()
    read = read_cv_results(tmp_path, ALIASES)
    assert time.monotonic() - started < 5
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.csv: file is too large (4.0 MiB; the limit is 4 MiB)",
        f"cv_results_random.csv line {MAX_CV_ROWS + 2}: the file has more than {MAX_CV_ROWS} rows; "
        "this one and the rest were not read",
    ]
    assert len(read.trials) == MAX_CV_ROWS and {t.search for t in read.trials} == {"random"}


def test_an_oversized_csv_field_is_refused_by_the_csv_field_limit(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", "mean_fit_time,param_lr,mean_test_score,params\n1,0.1,0.5,{}\n"
                                           "1,0.1,0.5,\"" + "x" * 200_000 + "\"\n1,0.1,0.6,{}\n")
    read = read_cv_results(tmp_path, ALIASES)
    assert [t.line for t in read.trials] == [2]
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.csv line 3: not valid CSV: field larger than field limit (131072); this line and the rest "
        "were not read",
    ]


def test_a_symlinked_cv_results_is_not_followed(tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere", "secret.csv", grid_csv(row("1.0", "4", "0.01", "0.8")))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cv_results_grid.csv").symlink_to(secret)
    read = read_cv_results(tmp_path / "out", ALIASES)
    assert read.trials == ()
    assert read.problems == (Violation("cv_results_grid.csv", "", "is a symbolic link, not a regular file"),)


# ---------------------------------------------------------------------------------------------
# JSON


@pytest.mark.parametrize("layout", ["columns", "records", "split", "lists"])
def test_json_in_each_layout_pandas_or_cv_results_itself_writes_reads_the_same(tmp_path: Path, layout: str) -> None:
    columns = {"mean_fit_time": [1.0, 2.0], "param_model__dropout": [0.1, None],
               "params": [{"model__dropout": 0.1}, {}], "split0_test_score": [0.5, float("nan")],
               "split1_test_score": [0.7, float("nan")], "mean_test_score": [0.6, float("nan")]}
    n = 2
    if layout == "columns":
        doc = {k: {str(i): v[i] for i in range(n)} for k, v in columns.items()}
    elif layout == "records":
        doc = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    elif layout == "split":
        doc = {"columns": list(columns), "index": list(range(n)), "data": [[v[i] for v in columns.values()]
                                                                            for i in range(n)]}
    else:
        doc = columns
    write(tmp_path, "cv_results_random.json", json.dumps(doc))
    read = read_cv_results(tmp_path, ALIASES)
    assert read.problems == ()
    assert read.trials == (
        Trial("random", "0", {"dropout": 0.1}, "COMPLETED", 0.6, None, 2.0, "cv_results_random.json"),
        Trial("random", "1", {}, "FAILED", None, None, 4.0, "cv_results_random.json"),
    )


def test_json_rows_are_refused_by_row_and_params_objects_are_read_when_there_are_no_param_columns(
        tmp_path: Path) -> None:
    rows = [{"mean_fit_time": 1, "params": {"model__lr": 0.01, "batch_size": 64}, "mean_test_score": 0.5},
            {"mean_fit_time": 1, "params": {"model__lr": "fast"}, "mean_test_score": 0.5},
            {"mean_fit_time": True, "params": {}, "mean_test_score": 0.5},
            "not a row"]
    write(tmp_path, "cv_results_grid.json", json.dumps(rows))
    read = read_cv_results(tmp_path, ALIASES)
    assert [dict(t.hyperparameters) for t in read.trials] == [{"learning_rate": 0.01, "batch_size": 64}]
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.json row 1: param_model__lr must be a finite number, got 'fast'",
        "cv_results_grid.json row 2: mean_fit_time must be a finite number of seconds, got True",
        "cv_results_grid.json row 3: expected an object of column: value, got 'not a row'",
    ]


def test_a_csv_and_a_json_for_one_search_read_the_csv_only(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", grid_csv(row("1.0", "4", "0.01", "0.8")))
    write(tmp_path, "cv_results_grid.json", "[]")
    read = read_cv_results(tmp_path, ALIASES)
    assert read.files == ("cv_results_grid.csv",) and len(read.trials) == 1
    assert [str(p) for p in read.problems] == [
        "cv_results_grid.json: the grid search also has cv_results_grid.csv; only that file is read"]


# ---------------------------------------------------------------------------------------------
# In gather: which source wins


def trials_line(search: str, trial_id: str) -> str:
    return json.dumps({"contract_version": 1, "search": search, "trial_id": trial_id,
                       "hyperparameters": {"learning_rate": 0.01}, "status": "COMPLETED", "val_accuracy": 0.5,
                       "val_loss": 1.0, "history": {}, "train_seconds": 1.0,
                       "finished_at": "2026-11-26T00:00:00Z"}) + "\n"


def test_gather_reads_cv_results_when_there_is_no_trials_jsonl_and_marks_trials_outside_the_grid(
        tmp_path: Path) -> None:
    write(tmp_path, contract.SEARCH_SPACES_FILE, json.dumps(
        {"contract_version": 1, "grid": {"values": {"learning_rate": [0.01, 0.001], "filters": [4, 8]}, "fixed": {}}}))
    write(tmp_path, "cv_results_grid.csv", grid_csv(row("1.0", "4", "0.01", "0.8"), row("1.0", "16", "0.01", "0.9")))
    ev = gather(tmp_path, aliases=ALIASES)
    assert ev.trials_source == "cv_results_grid.csv"
    assert [(t.source, t.outside) for t in ev.trials] == [("cv_results_grid.csv line 2", ()),
                                                          ("cv_results_grid.csv line 3", ("filters",))]
    assert ev.problems_in("cv_results_grid.csv") == (Violation(
        "cv_results_grid.csv", "line 3: $.hyperparameters.filters", "filters=16 is not one of the declared grid "
                                                                     "values 4, 8"),)
    assert ev.problems_in(contract.TRIALS_FILE) == ()


def test_a_usable_trials_jsonl_wins_over_cv_results_and_an_unusable_one_does_not(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_grid.csv", grid_csv(row("1.0", "4", "0.01", "0.8")))
    write(tmp_path, contract.TRIALS_FILE, trials_line("random", "7"))
    ev = gather(tmp_path, aliases=ALIASES)
    assert (ev.trials_source, [t.trial_id for t in ev.trials]) == ("trials.jsonl", ["7"])
    write(tmp_path, contract.TRIALS_FILE, "{not json\n")
    ev = gather(tmp_path, aliases=ALIASES)
    assert (ev.trials_source, [t.source for t in ev.trials]) == ("cv_results_grid.csv", ["cv_results_grid.csv line 2"])
    assert [p.where for p in ev.problems_in(contract.TRIALS_FILE)] == ["line 1"]


def test_cv_results_without_a_usable_row_still_name_the_source_and_say_why(tmp_path: Path) -> None:
    write(tmp_path, "cv_results_random.json", json.dumps([{"mean_test_score": 2.0, "mean_fit_time": 1}]))
    ev = gather(tmp_path, aliases=ALIASES)
    assert (ev.trials, ev.trials_source) == ((), "cv_results_random.json")
    assert [str(p) for p in ev.problems_in("cv_results_random.json")] == [
        "cv_results_random.json: has no param_<name> column naming a hyperparameter, so no trial says which values "
        "it used",
        "cv_results_random.json row 0: mean_test_score 2 is not an accuracy in [0, 1]: score the search by accuracy "
        "(scoring='accuracy')",
    ]
    assert ev.problems_in(contract.TRIALS_FILE) == ()


# ---------------------------------------------------------------------------------------------
# End to end: a real scikit-learn submission graded by `grader grade`


@pytest.mark.slow
def test_a_scikit_learn_submission_is_graded_from_its_cv_results(tmp_path: Path) -> None:
    subs = tmp_path / "submissions"
    shutil.copytree(FIXTURES / "sklearn_grid_search", subs / "sklearn_grid_search")
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc["time_limit_s"] = 180
    doc["checks"] = [
        {"id": "files", "kind": "artifacts", "points": 3, "title": "Files",
         "params": {"files": ["search_spaces.json", "cv_results_grid.csv", "cv_results_random.json",
                              "models/best_grid.keras", "models/best_random.keras"]}},
        {"id": "grid-coverage", "kind": "grid_coverage", "points": 15, "title": "Grid coverage",
         "params": {"min_combinations": 4}},
        {"id": "random-coverage", "kind": "random_coverage", "points": 10, "title": "Random coverage",
         "params": {"min_trials": 3, "continuous": ["learning_rate", "dropout"]}},
        {"id": "runtime", "kind": "runtime", "points": 4, "title": "Runtime", "params": {}},
    ]
    rubric = tmp_path / "rubric.json"
    rubric.write_text(json.dumps(doc))
    out = tmp_path / "out"
    grade.main(submissions=[subs], rubric=rubric, out=out, gpus="none", jobs=1,
               console=Console(file=io.StringIO(), width=200))
    res = read_result(out / "sklearn_grid_search" / "result.json")
    assert res is not None
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    checks = {c.id: (c.points, c.max_points, c.message) for c in res.checks}
    assert checks["grid-coverage"] == (15, 15, "the grid covers all 4 combinations")
    assert checks["random-coverage"] == (10, 10, "3 distinct completed random trials inside the declared ranges "
                                                 "(needs 3), learning_rate and dropout sampled continuously")
    assert checks["files"][0] == 3 and checks["runtime"][0] == 4
    assert {e.search for e in res.evaluations} == {"grid", "random"}
    assert all(e.error is None and e.n_test == 10000 for e in res.evaluations)
    assert ("Trials read from cv_results_grid.csv, cv_results_random.json (there is no usable trials.jsonl)."
            in (out / "sklearn_grid_search" / "feedback.md").read_text())
    ev = gather(out / "sklearn_grid_search" / "collected" / "outputs", aliases=doc["aliases"])
    assert ev.trials_source == "cv_results_grid.csv, cv_results_random.json"
    assert [t.source for t in ev.trials_of("grid")] == [f"cv_results_grid.csv line {n}" for n in (2, 3, 4, 5)]
    assert all(t.train_seconds and t.train_seconds > 0 for t in ev.trials)


def test_hostile_cv_results_are_refused_row_by_row_or_file_by_file_in_one_escaped_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    header = "mean_fit_time,param_model__learning_rate,param_model__batch_size,mean_test_score\n"
    (out / "cv_results_grid.csv").write_text(header + "1.5,0.001,32,0.91\n1.0," + "9" * 5000 + ",32,0.9\n"
                                             "1.0,0.01,\x1b[31m32,0.9\n")
    (out / "cv_results_random.csv").write_bytes(header.encode() + b"1.0,0.01,\xff32,0.9\n")
    os.mkfifo(out / "cv_results_bayesian.csv")
    found = read_cv_results(out)
    assert [t.hyperparameters for t in found.trials] == [{"learning_rate": 0.001, "batch_size": 32}]
    assert [str(p) for p in found.problems] == [
        "cv_results_grid.csv line 3: param_model__learning_rate must be a finite number, got "
        "'9999999999999999999999999999999999999...'",
        "cv_results_grid.csv line 4: param_model__batch_size must be a finite number, got '\\x1b[31m32'",
        "cv_results_random.csv: not UTF-8 text (byte 90)",
        "cv_results_bayesian.csv: not a regular file",
    ]
    (out / "cv_results_random.csv").unlink()
    (out / "cv_results_random.json").write_text('{"mean_test_score": [' + "9" * 5000 + "]}")
    assert "cv_results_random.json: an integer with more than 64 digits" in [str(p) for p in read_cv_results(out).problems]
