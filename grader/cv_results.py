"""Read scikit-learn searches' saved `cv_results_` (cv_results_<search>.csv or .json) into the grader's Trial records.

A submission that tunes with GridSearchCV / RandomizedSearchCV (scikeras wraps the Keras
model) saves each search's ``cv_results_`` in its output dir, named for the search
(``grader.contract.cv_results_file``): ``cv_results_grid.csv`` from
``pd.DataFrame(search.cv_results_).to_csv(path, index=False)``, or ``cv_results_grid.json``
from ``pd.DataFrame(search.cv_results_).to_json(path)`` (any of pandas' ``columns``,
``records`` or ``split`` layouts, or a dict of column -> list). When both are there the
CSV is read. One row is one trial:

* ``trial_id`` is the row's index in cv_results_ (0, 1, ...), the candidate sklearn numbers;
* hyperparameters come from the ``param_<name>`` columns (a JSON row without any falls back
  to its ``params`` object). ``<name>`` is mapped through the rubric's aliases whole
  (``param_lr``) or by its last ``__`` part, so ``param_model__learning_rate``,
  ``param_optimizer__learning_rate`` and ``param_clf__model__lr`` all become ``learning_rate``;
  an empty cell (a parameter this candidate did not set) is left out of the trial;
* ``mean_test_score`` (``mean_test_accuracy`` for a multi-metric search) is the validation
  accuracy. An empty or NaN score is how sklearn records a fit that raised
  (``error_score=nan``): that row becomes a FAILED trial, so coverage counts it as tried;
* ``train_seconds`` is ``mean_fit_time`` times the number of folds (its ``split<k>_test_*``
  columns; 1 when there are none): the time the search spent training that configuration,
  so the trials' seconds add up to the search's fitting time as the contract's trials do;
* ``val_loss`` is minus ``mean_test_neg_log_loss`` when the search scored that too, else None.

Everything is hostile: files are read through grader.evidence's no-link, size-bounded
readers (at most ``MAX_CV_BYTES``), CSV by the csv module (its field size limit stays in
force) up to ``MAX_CV_ROWS`` rows and ``MAX_CV_COLUMNS`` columns, JSON by grader.parse within
its bounds. A row with a cell that is not what it must be (a hyperparameter or fit time
that is not a finite number, a score that is not an accuracy in [0, 1], the wrong number of
cells) is refused with a violation naming its line (CSV) or row (JSON); the rest is kept.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from grader import contract
from grader.evidence import (
    MAX_TUNER_JSON_BYTES,
    Trial,
    _read,
    _read_json,
    canonical_name,
)
from grader.parse import escaped_line, show_value
from grader.validate import MAX_VIOLATIONS_PER_FILE, Violation

MAX_CV_BYTES = MAX_TUNER_JSON_BYTES  # one saved cv_results_ (a 1000-candidate search writes about 300 KiB)
MAX_CV_ROWS = 10_000  # rows (trials) of one file read; one violation says where reading stopped
MAX_CV_COLUMNS = 1000  # columns of one file looked at (10-fold, multi-metric, train scores: a few hundred)
MAX_NUMBER_CHARS = 64  # a cell longer than this is not a number
SCORE_COLUMNS = ("mean_test_score", "mean_test_accuracy")  # single-metric, then multi-metric with an accuracy scorer
FIT_COLUMN = "mean_fit_time"
LOSS_COLUMN = "mean_test_neg_log_loss"
PARAM_PREFIX = "param_"
_SPLIT = re.compile(r"split(\d+)_test_(\w+)")


@dataclass(frozen=True)
class CvResults:
    """The trials read from an output dir's cv_results_ files, their violations, and which files were read."""

    trials: tuple[Trial, ...] = ()
    problems: tuple[Violation, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def source(self) -> str | None:
        """Evidence.trials_source when these trials are used: 'cv_results_grid.csv, cv_results_random.json'."""
        return ", ".join(self.files) or None


def read_cv_results(root: Path, aliases: Mapping[str, str] | None = None) -> CvResults:
    """The trials of each search's cv_results_<search>.csv|json in the output dir root (CSV first), and the problems."""
    trials: list[Trial] = []
    problems: list[Violation] = []
    files: list[str] = []
    for search in contract.SEARCHES:
        present = [name for name in (contract.cv_results_file(search, fmt) for fmt in contract.CV_RESULTS_FORMATS)
                   if (root / name).exists() or (root / name).is_symlink()]
        if not present:
            continue
        name = present[0]
        files.append(name)
        for other in present[1:]:
            problems.append(Violation(other, "", f"the {search} search also has {name}; only that file is read"))
        data, why = _read_json(root / name)[:2] if name.endswith(".json") else _read(root / name, MAX_CV_BYTES)
        if why is not None:
            problems.append(Violation(name, "", why))
            continue
        found, found_problems = (read_cv_json(data, name, search, aliases) if name.endswith(".json")
                                 else read_cv_csv(data, name, search, aliases))
        trials += found
        problems += found_problems
    return CvResults(tuple(trials), tuple(problems), tuple(files))


def read_cv_csv(data: bytes, name: str, search: str, aliases: Mapping[str, str] | None = None
                ) -> tuple[list[Trial], list[Violation]]:
    """The trials of a cv_results_ saved as CSV (bytes read within MAX_CV_BYTES), and its violations."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Violation(name, "", f"not UTF-8 text (byte {exc.start})")]
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = _csv_rows(reader)
    problems: list[Violation] = []
    try:
        first = next(rows, None)
    except csv.Error as exc:
        return [], [Violation(name, f"line {reader.line_num}", f"not valid CSV: {escaped_line(str(exc), 200)}")]
    if first is None:
        return [], [Violation(name, "", "file is empty")]
    header_line, header = first
    if len(header) > MAX_CV_COLUMNS:
        problems.append(Violation(name, f"line {header_line}", f"has {len(header)} columns; only the first "
                                                               f"{MAX_CV_COLUMNS} are read"))
    columns = [cell.strip() for cell in header[:MAX_CV_COLUMNS]]
    layout, layout_problems = _layout(columns, name, lambda column: f"line {header_line}: {_col(column)}", aliases)
    problems += layout_problems
    if layout is None:
        return [], problems
    trials: list[Trial] = []
    index = 0
    while True:
        try:
            item = next(rows, None)
        except csv.Error as exc:
            problems.append(Violation(name, f"line {reader.line_num}", f"not valid CSV: {escaped_line(str(exc), 200)}; "
                                                                       "this line and the rest were not read"))
            return trials, _capped(name, problems)
        if item is None:
            break
        line, cells = item
        if index >= MAX_CV_ROWS:
            problems.append(Violation(name, f"line {line}", f"the file has more than {MAX_CV_ROWS} rows; "
                                                            "this one and the rest were not read"))
            break
        where = f"line {line}"
        if len(cells) != len(header):
            problems.append(Violation(name, where, f"has {len(cells)} cells, the header has {len(header)}"))
        else:
            trial, why = _trial(layout, dict(zip(columns, cells)), search, str(index), name, line)
            if trial is not None:
                trials.append(trial)
            else:
                problems.append(Violation(name, where, why))
        index += 1
    if not index:
        problems.append(Violation(name, "", "file has no trials: it holds a header only"))
    return trials, _capped(name, problems)


def read_cv_json(doc: Any, name: str, search: str, aliases: Mapping[str, str] | None = None
                 ) -> tuple[list[Trial], list[Violation]]:
    """The trials of a cv_results_ saved as JSON (the value grader.evidence._read_json parsed), and its violations."""
    rows, problems = _json_rows(doc, name)
    if rows is None:
        return [], problems
    columns: dict[str, None] = {}
    for row in rows:
        if isinstance(row, dict):
            columns.update(dict.fromkeys(str(k) for k in islice(row, MAX_CV_COLUMNS)))
            if len(columns) >= MAX_CV_COLUMNS:
                break
    layout, layout_problems = _layout(list(columns)[:MAX_CV_COLUMNS], name, _col, aliases)
    problems += layout_problems
    if layout is None:
        return [], problems
    trials: list[Trial] = []
    for index, row in enumerate(rows):
        where = f"row {index}"
        if index >= MAX_CV_ROWS:
            problems.append(Violation(name, where, f"the file has more than {MAX_CV_ROWS} rows; "
                                                   "this one and the rest were not read"))
            break
        if not isinstance(row, dict):
            problems.append(Violation(name, where, f"expected an object of column: value, got {_show(row)}"))
            continue
        trial, why = _trial(layout, row, search, str(index), name, None)
        if trial is not None:
            trials.append(trial)
        else:
            problems.append(Violation(name, where, why))
    if not rows:
        problems.append(Violation(name, "", "file has no trials"))
    return trials, _capped(name, problems)


# ---------------------------------------------------------------------------------------------
# Columns


@dataclass(frozen=True)
class _Layout:
    """Which columns of a file hold what: the score, the fit time, the loss, the folds, each hyperparameter."""

    score: str
    fit: str | None
    loss: str | None
    folds: int
    params: Mapping[str, str]  # column -> canonical hyperparameter name
    params_object: bool  # JSON rows without param_ columns: read their params object
    aliases: Mapping[str, str]  # the rubric's, for the names in a params object


def _layout(columns: Sequence[str], name: str, where: Any, aliases: Mapping[str, str] | None
            ) -> tuple[_Layout | None, list[Violation]]:
    """What the columns hold, and a violation for each column that cannot be used (None: no score column)."""
    problems: list[Violation] = []
    score = next((c for c in SCORE_COLUMNS if c in columns), None)
    if score is None:
        return None, [Violation(name, "", "has no mean_test_score column: save the search's cv_results_ "
                                          "with every column (pd.DataFrame(search.cv_results_))")]
    metric = score.removeprefix("mean_test_")
    folds = sum(1 for c in columns if (m := _SPLIT.fullmatch(c)) and m.group(2) == metric)
    fit = FIT_COLUMN if FIT_COLUMN in columns else None
    if fit is None:
        problems.append(Violation(name, "", f"has no {FIT_COLUMN} column, so the trials' training seconds are unknown"))
    params: dict[str, str] = {}
    first_of: dict[str, str] = {}
    for column in columns:
        if not column.startswith(PARAM_PREFIX):
            continue
        canonical = hyperparameter_name(column, aliases)
        if canonical is None:
            short = column.removeprefix(PARAM_PREFIX).rsplit("__", 1)[-1]
            problems.append(Violation(name, where(column), f"'{_col(short)}' is not a canonical hyperparameter name; "
                                                           f"it is ignored (use one of "
                                                           f"{', '.join(contract.HYPERPARAMETERS)})"))
        elif canonical in first_of:
            problems.append(Violation(name, where(column), f"is {canonical} again (first as "
                                                           f"{_col(first_of[canonical])}); only that column is read"))
        else:
            params[column], first_of[canonical] = canonical, column
    params_object = not any(c.startswith(PARAM_PREFIX) for c in columns) and "params" in columns
    if not params and not params_object:
        problems.append(Violation(name, "", "has no param_<name> column naming a hyperparameter, so no trial says "
                                            "which values it used"))
    loss = LOSS_COLUMN if LOSS_COLUMN in columns else None
    return _Layout(score, fit, loss, max(folds, 1), params, params_object, dict(aliases or {})), problems


def hyperparameter_name(column: str, aliases: Mapping[str, str] | None = None) -> str | None:
    """The canonical hyperparameter a param_ column names ('param_model__lr' -> 'learning_rate'), or None.

    The name after 'param_' is tried whole, then its last '__' part (the estimator's own
    parameter, whatever the pipeline step or scikeras routing prefix before it).
    """
    name = column.removeprefix(PARAM_PREFIX)
    for candidate in (name, name.rsplit("__", 1)[-1]):
        canonical = canonical_name(candidate, aliases)
        if canonical in contract.HYPERPARAMETERS:
            return canonical
    return None


# ---------------------------------------------------------------------------------------------
# Rows


def _trial(layout: _Layout, row: Mapping[str, Any], search: str, trial_id: str, name: str, line: int | None
           ) -> tuple[Trial | None, str]:
    """The row as a Trial, or None and why it is refused (one message naming the first bad cell)."""
    kind, score = _number(row.get(layout.score))
    if kind == "bad":
        return None, f"{layout.score} must be a number, got {_show(row.get(layout.score))}"
    if kind == "number" and not 0 <= score <= 1:
        return None, (f"{layout.score} {score:g} is not an accuracy in [0, 1]: score the search by accuracy "
                      "(scoring='accuracy')")
    completed = kind == "number"
    seconds = None
    if layout.fit is not None:
        fit_kind, fit = _number(row.get(layout.fit))
        if fit_kind != "number" or fit < 0:
            return None, f"{layout.fit} must be a finite number of seconds, got {_show(row.get(layout.fit))}"
        seconds = float(fit) * layout.folds
    loss = None
    if layout.loss is not None and completed:
        loss_kind, value = _number(row.get(layout.loss))
        loss = -float(value) if loss_kind == "number" else None
    cells = dict(row)
    if layout.params_object and isinstance(row.get("params"), dict):
        cells = {f"{PARAM_PREFIX}{k}": v for k, v in islice(row["params"].items(), MAX_CV_COLUMNS)}
        params = {c: n for c in cells if (n := hyperparameter_name(c, layout.aliases)) is not None}
    else:
        params = dict(layout.params)
    hps: dict[str, float] = {}
    for column, canonical in params.items():
        value_kind, value = _number(cells.get(column))
        if value_kind == "empty":
            continue
        if value_kind != "number":
            return None, f"{_col(column)} must be a finite number, got {_show(cells.get(column))}"
        hps.setdefault(canonical, value)
    return Trial(search=search, trial_id=trial_id, hyperparameters=hps,
                 status="COMPLETED" if completed else "FAILED", val_accuracy=float(score) if completed else None,
                 val_loss=loss, train_seconds=seconds, file=name, line=line), ""


def _number(value: Any) -> tuple[str, Any]:
    """('number', the int or float), ('empty', None) for a missing cell, ('nan', None), or ('bad', None)."""
    if value is None:
        return "empty", None
    if isinstance(value, bool):
        return "bad", None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "nan", None
        try:
            return ("number", value) if math.isfinite(value) else ("bad", None)
        except OverflowError:  # an integer too large for a float
            return "bad", None
    if not isinstance(value, str):
        return "bad", None
    text = value.strip()
    if not text:
        return "empty", None
    if len(text) > MAX_NUMBER_CHARS:
        return "bad", None
    try:
        number = float(text)
    except ValueError:
        return "bad", None
    if math.isnan(number):
        return "nan", None
    if not math.isfinite(number):
        return "bad", None
    whole = number.is_integer() and re.fullmatch(r"[+-]?\d+", text) is not None
    return "number", int(number) if whole else number


def _csv_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    for cells in reader:
        if cells:
            yield reader.line_num, cells


def _json_rows(doc: Any, name: str) -> tuple[list[Any] | None, list[Violation]]:
    """The rows of a JSON cv_results_ in any accepted layout (None when it is none of them), and its violations."""
    if isinstance(doc, list):
        return doc, []
    if isinstance(doc, dict) and {"columns", "data"} <= set(doc) and isinstance(doc["columns"], list) \
            and isinstance(doc["data"], list):  # pandas orient="split"
        columns = [str(c) for c in doc["columns"][:MAX_CV_COLUMNS]]
        return [dict(zip(columns, r)) if isinstance(r, list) else r for r in doc["data"]], []
    if isinstance(doc, dict) and doc:
        score = next((c for c in SCORE_COLUMNS if c in doc), None)
        if score is None:
            return None, [Violation(name, "", "has no mean_test_score column: save the search's cv_results_ "
                                              "with every column (pd.DataFrame(search.cv_results_))")]
        anchor = doc[score]
        problems: list[Violation] = []
        if isinstance(anchor, list):  # cv_results_ itself, each column a list
            keys: list[Any] = list(range(len(anchor)))
        elif isinstance(anchor, dict):  # pandas' default orient="columns": each column an {index: value} object
            keys = list(anchor)
        else:
            return None, [Violation(name, f"$.{score}", f"expected a list or an object, got {_show(anchor)}")]
        rows: list[dict[str, Any]] = [{} for _ in keys[:MAX_CV_ROWS + 1]]
        for column, values in islice(doc.items(), MAX_CV_COLUMNS):
            if isinstance(anchor, list) and isinstance(values, list) and len(values) == len(anchor):
                for row, value in zip(rows, values):
                    row[str(column)] = value
            elif isinstance(anchor, dict) and isinstance(values, dict):
                for row, key in zip(rows, keys):
                    row[str(column)] = values.get(key)
            else:
                problems.append(Violation(name, f"$.{_col(str(column))}", f"does not have one value per row as "
                                                                         f"{score} has; it is ignored"))
        return rows, problems
    return None, [Violation(name, "", "not a saved cv_results_: expected a list of rows or an object of columns "
                                      "(pd.DataFrame(search.cv_results_).to_json(path))")]


# ---------------------------------------------------------------------------------------------
# Helpers


def _col(column: str) -> str:
    """A column name from the file, escaped and cut short for a message."""
    return escaped_line(column, 60)


def _show(value: Any) -> str:
    return f"'{escaped_line(value, 40)}'" if isinstance(value, str) else show_value(value, 40)


def _capped(name: str, problems: list[Violation]) -> list[Violation]:
    if len(problems) <= MAX_VIOLATIONS_PER_FILE:
        return problems
    rest = len(problems) - MAX_VIOLATIONS_PER_FILE
    return [*problems[:MAX_VIOLATIONS_PER_FILE], Violation(name, "", f"{rest} more violations not listed")]
