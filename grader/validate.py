"""Check a submission's output dir against submission contract v1 and list every violation found.

Judging only: nothing here runs, imports or loads student code or Keras. A model is
checked by looking inside its zip, a plot by its first bytes. Every problem with the
content becomes a `Violation` (file, where, message); only a missing output dir raises.

Each file's checker has a bytes entry point (`check_search_spaces_bytes`,
`read_trials_bytes`, `check_comparison_bytes`, `check_answers_bytes`) and, where a
caller holds parsed content, a document one (`check_search_spaces_doc`,
`check_answers_doc`); the path functions are thin wrappers that read the file (never
through a symbolic link, never a FIFO or device) and call them. grader.evidence reads
each file once and calls the bytes or document entry points.

A hostile or broken output dir must not stall or crash the grader. Text files larger than
`MAX_TEXT_BYTES` (answers.yaml: `MAX_YAML_BYTES`) are refused; JSON and YAML are parsed
by grader.parse within its bounds (integers of at most 64 digits, nesting at most 64
levels deep, no YAML aliases or anchors); trials.jsonl is read up to `MAX_TRIAL_LINES`
lines and `MAX_TRIAL_VALUES` values, comparison.csv up to `MAX_CSV_ROWS` rows, and one
violation says where reading stopped; each file lists at most `MAX_VIOLATIONS_PER_FILE`
violations plus one line counting the rest; every value quoted in a message is cut short
(grader.parse.show_value).
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import math
import os
import re
import stat
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema

from grader import contract
from grader.jsonio import finite_number, json_path, load_schema
from grader.parse import (
    MAX_INT_DIGITS,
    BoundedParseError,
    load_json,
    load_yaml,
    escaped_line,
    show_value,
    too_large,
)

MAX_TEXT_BYTES = 16 * 1024 * 1024
MAX_YAML_BYTES = 256 * 1024  # answers.yaml: a few KiB of answers; PyYAML reads about 200 KiB/s
MAX_VIOLATIONS_PER_FILE = 1000
MAX_MESSAGE_CHARS = 300
MAX_TRIAL_LINES = 10_000  # non-blank lines of trials.jsonl looked at
MAX_TRIAL_VALUES = 300_000  # JSON values (numbers, strings, lists, ...) of trials.jsonl checked, all lines together
MAX_DOC_VALUES = 100_000  # JSON/YAML values of search_spaces.json or answers.yaml checked
MAX_CSV_ROWS = 100  # rows of comparison.csv read below its header (it has one per search)
MAX_CSV_COLUMNS = 100  # cells of one comparison.csv row looked at

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KERAS_ARCHIVE_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
MAX_KERAS_MEMBERS = 100  # entries of a model's zip directory looked at (Keras writes three)
_EOCD_SEARCH_BYTES = 22 + 65535  # the end-of-central-directory record and the longest zip comment

# comparison.csv: which cells must be numbers, which whole numbers, which may stay empty
# (a search with no completed trial has no best trial; a hyperparameter a search never set).
_CSV_INT_COLUMNS = ("trials", "completed_trials")
_CSV_NUMBER_COLUMNS = ("best_val_accuracy", "best_val_loss", "total_train_seconds", *contract.HYPERPARAMETERS)
_CSV_MAY_BE_EMPTY = ("best_trial_id", "best_val_accuracy", "best_val_loss", *contract.HYPERPARAMETERS)

JsonPath = tuple[str | int, ...]

# The key whose const picks the branch of a oneOf in the bundled schemas ("type": "float" | "int" | "choice").
_DISCRIMINATOR = "type"


@dataclass(frozen=True)
class Violation:
    """One way an output dir breaks the contract: the file (relative to the dir), where in it, what is wrong."""

    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.message}" if self.where else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """Every violation found in one output dir, in file order; ok when there are none."""

    path: Path
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


# ---------------------------------------------------------------------------------------------
# The whole dir


def validate_output_dir(
    path: str | Path, *, searches: Sequence[str] = ("grid", "random")
) -> ValidationReport:
    """Check every file of contract v1 in the output dir at path; raise FileNotFoundError if there is no such dir."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"output dir not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"output dir is not a directory: {root}")

    violations: list[Violation] = []
    violations += check_search_spaces(root / contract.SEARCH_SPACES_FILE)
    trials = _read_trials(root / contract.TRIALS_FILE)
    trial_searches = trials.searches
    cv = _cv_results(root)
    if cv is not None:  # a scikit-learn submission: its cv_results_ files stand for trials.jsonl
        violations += cv.problems
        trial_searches = frozenset(t.search for t in cv.trials)
    else:
        violations += [*trials.violations, *check_manual_reasons(trials)]
    violations += check_comparison(root / contract.COMPARISON_FILE, trial_searches)
    violations += check_answers(root / contract.ANSWERS_FILE)
    for search in searches:
        violations += check_keras_archive(root, contract.best_model_path(search))
    violations += check_plots(root / contract.PLOTS_DIR)
    return ValidationReport(path=root, violations=tuple(violations))


def _cv_results(root: Path) -> Any:
    """What grader.cv_results reads, when there is no trials.jsonl and at least one cv_results_ file; else None."""
    if (root / contract.TRIALS_FILE).exists() or (root / contract.TRIALS_FILE).is_symlink():
        return None
    from grader.cv_results import read_cv_results  # it builds on this module's Violation

    found = read_cv_results(root)
    return found if found.files else None


# ---------------------------------------------------------------------------------------------
# search_spaces.json


def check_search_spaces(path: Path) -> list[Violation]:
    """Violations of the search_spaces.json at path (see check_search_spaces_bytes)."""
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except FileProblem as exc:
        return [Violation(path.name, "", str(exc))]
    return check_search_spaces_bytes(data, path.name)


def check_search_spaces_bytes(data: bytes, name: str = contract.SEARCH_SPACES_FILE) -> list[Violation]:
    """Violations of search_spaces.json's content: syntax, bounds, non-finite numbers, schema, the rules beyond it."""
    try:
        doc = load_json(data, max_bytes=MAX_TEXT_BYTES)
    except BoundedParseError as exc:
        return [Violation(name, exc.where, exc.message)]
    return check_search_spaces_doc(doc, name)


def check_search_spaces_doc(doc: Any, name: str = contract.SEARCH_SPACES_FILE) -> list[Violation]:
    """Violations of a parsed search_spaces.json (one whose hyperparameter names the caller renamed, say)."""
    found, count = _nonfinite(doc, MAX_DOC_VALUES)
    if count > MAX_DOC_VALUES:
        return [Violation(name, "", _too_many_values(MAX_DOC_VALUES))]
    skip = {where for where, _ in found}
    found += [(where, message) for where, message in _schema_findings(doc, "search_spaces") if where not in skip]
    found += [(json_path(parts), message) for parts, message in search_space_rules(doc)]
    return _capped(name, (Violation(name, where, message) for where, message in found))


def search_space_rules(doc: Any) -> list[tuple[JsonPath, str]]:
    """The rules of search_spaces.json beyond its schema: min <= max, log ranges above 0, varied xor fixed."""
    if not isinstance(doc, dict):
        return []
    found: list[tuple[JsonPath, str]] = []
    for search in contract.SEARCHES:
        block = doc.get(search)
        if not isinstance(block, dict):
            continue
        varied_key = "values" if search == "grid" else "ranges"
        varied = block.get(varied_key)
        fixed = block.get("fixed")
        if varied_key == "ranges" and isinstance(varied, dict):
            for hp, spec in varied.items():
                found += _range_rules((search, "ranges", hp), spec)
        if isinstance(varied, dict) and isinstance(fixed, dict):
            for hp in fixed:
                if hp in varied:
                    shown = _name(hp, quote=False)
                    found.append(((search, "fixed", hp), f"{shown} is both in {varied_key} and in fixed of {search}"))
    return found


def _range_rules(at: JsonPath, spec: Any) -> list[tuple[JsonPath, str]]:
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int"):
        return []
    low, high = spec.get("min"), spec.get("max")
    found: list[tuple[JsonPath, str]] = []
    if finite_number(low) and finite_number(high) and low > high:
        found.append(((*at, "min"), f"min {show_value(low)} is greater than max {show_value(high)}"))
    if spec.get("sampling") == "log" and finite_number(low) and low <= 0:
        found.append(((*at, "min"), f"a log-sampled range needs min > 0, got {show_value(low)}"))
    return found


# ---------------------------------------------------------------------------------------------
# trials.jsonl


@dataclass(frozen=True)
class TrialLines:
    """What read_trials_bytes found: the trials that break no rule with their line numbers, and the violations.

    ``searches`` are the searches named by lines that parse (None when the file could not be read).
    """

    records: tuple[dict[str, Any], ...]
    lines: tuple[int, ...]
    violations: tuple[Violation, ...]
    searches: frozenset[str] | None


def read_trials(path: str | Path) -> tuple[list[dict[str, Any]], list[Violation]]:
    """The trials of a trials.jsonl file that break no rule, in file order, and the violations of the rest.

    A missing or unreadable file is a violation; see read_trials_bytes for the rest.
    """
    result = _read_trials(Path(path))
    return list(result.records), list(result.violations)


def check_manual_reasons(trials: TrialLines) -> list[Violation]:
    """A manual search's trial without its reason (one line on why the configuration was chosen)."""
    return [Violation(contract.TRIALS_FILE, f"line {line}", 'a manual trial needs its "reason": one line on why it '
                                                            "was chosen")
            for record, line in zip(trials.records, trials.lines)
            if record["search"] == "manual" and not str(record.get("reason") or "").strip()]


def _read_trials(path: Path) -> TrialLines:
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except FileProblem as exc:
        return TrialLines((), (), (Violation(path.name, "", str(exc)),), None)
    return read_trials_bytes(data, path.name)


_CONTENT = re.compile(rb"[^ \t\r\n\x0b\x0c]")  # what makes a line non-blank (bytes.strip's whitespace)


def read_trials_bytes(data: bytes, name: str = contract.TRIALS_FILE, *,
                      transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> TrialLines:
    """The trials in trials.jsonl's content that break no rule, with their line numbers, and the violations.

    Blank lines are skipped. A line with any violation (bad JSON, a refused bound, NaN,
    schema, a repeated (search, trial_id), history lists of unequal length, status and
    metrics at odds) is left out of the trials; the first line of a repeated id is kept.
    transform, when given, is applied to each line's object before it is checked (the
    grader renames hyperparameter aliases this way). Reading stops, with one violation
    saying so, after MAX_TRIAL_LINES non-blank lines or MAX_TRIAL_VALUES values.
    Linear in the size of data: one schema validator, each line parsed once.
    """
    if len(data) > MAX_TEXT_BYTES:
        return TrialLines((), (), (Violation(name, "", too_large(len(data), MAX_TEXT_BYTES)),), None)
    records: list[dict[str, Any]] = []
    kept_lines: list[int] = []
    found: list[Violation] = []
    stopped: Violation | None = None
    searches: set[str] = set()
    first_line: dict[tuple[str, str], int] = {}
    pos, line_at_pos, looked, budget = 0, 1, 0, MAX_TRIAL_VALUES
    size = len(data)
    while True:
        match = _CONTENT.search(data, pos)
        if match is None:
            break
        start = data.rfind(b"\n", pos, match.start()) + 1 or pos
        line_no = line_at_pos + data.count(b"\n", pos, start)
        end = data.find(b"\n", match.start())
        end = size if end < 0 else end
        if looked >= MAX_TRIAL_LINES:
            stopped = Violation(name, f"line {line_no}", f"the file has more than {MAX_TRIAL_LINES} trial lines; "
                                                         "this one and the rest were not read")
            break
        looked += 1
        parsed, problems, used = _parse_trial_line(data[start:end], line_no, cut_off=end == size, budget=budget,
                                                   transform=transform, describe=len(found) < MAX_VIOLATIONS_PER_FILE)
        budget -= used
        if budget < 0:
            stopped = Violation(name, f"line {line_no}", f"the trials hold more than {MAX_TRIAL_VALUES} values; "
                                                         "this line and the rest were not read")
            break
        pos, line_at_pos = end + 1, line_no + 1
        if parsed is _UNPARSED:
            found += [Violation(name, where, message) for where, message in problems]
            continue
        record: Any = parsed
        if isinstance(record, dict):
            search, trial_id = record.get("search"), record.get("trial_id")
            if isinstance(search, str) and search in contract.SEARCHES:
                searches.add(search)
            if isinstance(search, str) and isinstance(trial_id, str):
                first = first_line.setdefault((search, trial_id), line_no)
                if first != line_no:
                    problems.append(
                        (
                            f"line {line_no}: $.trial_id",
                            f"duplicate trial_id {_name(trial_id)} in search {_name(search, quote=False)} "
                            f"(first on line {first})",
                        )
                    )
        if not problems:
            records.append(record)
            kept_lines.append(line_no)
        found += [Violation(name, where, message) for where, message in problems]
    if not looked:
        found.append(Violation(name, "", "file has no trials"))
    violations = _capped(name, found) + ([stopped] if stopped else [])
    return TrialLines(tuple(records), tuple(kept_lines), tuple(violations), frozenset(searches))


_UNPARSED = object()


def _parse_trial_line(chunk: bytes, line_no: int, *, cut_off: bool, budget: int,
                      transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None, describe: bool = True,
                      ) -> tuple[Any, list[tuple[str, str]], int]:
    """One line's value (or _UNPARSED), its violations and how many values it holds (budget + 1 when over budget).

    describe=False (the file already lists as many violations as it will show) counts the
    schema's violations without writing their messages.
    """
    where = f"line {line_no}"
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return _UNPARSED, [(where, "not UTF-8 text")], 0
    try:
        record = load_json(text, max_bytes=MAX_TEXT_BYTES)
    except BoundedParseError as exc:
        message = exc.message
        if exc.column is not None:
            message += f" at column {exc.column}"
            if cut_off:
                message += "; it is the last line and has no newline, so the run was probably stopped while writing it"
        return _UNPARSED, [(where, message)], 0
    found, count = _nonfinite(record, budget)
    if count > budget:
        return _UNPARSED, [], count
    if transform is not None and isinstance(record, dict):
        record = transform(record)
    skip = {p for p, _ in found}
    found += [(p, m) for p, m in _schema_findings(record, "trial", _skip_conditional, describe=describe)
              if not p or p not in skip]
    found += [(json_path(parts), m) for parts, m in trial_rules(record)]
    return record, [(f"{where}: {p}", m) for p, m in found], count


def trial_rules(record: Any) -> list[tuple[JsonPath, str]]:
    """The rules of a trial beyond its schema: equal-length history lists; metrics numbers iff COMPLETED."""
    if not isinstance(record, dict):
        return []
    found: list[tuple[JsonPath, str]] = []
    history = record.get("history")
    if isinstance(history, dict):
        lengths = {key: len(value) for key, value in history.items() if isinstance(value, list)}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{_name(key, quote=False)} {n}" for key, n in list(lengths.items())[:10])
            if len(lengths) > 10:
                listed += f" and {len(lengths) - 10} more"
            found.append((("history",), f"history lists differ in length ({listed})"))
    status = record.get("status")
    if status in contract.TRIAL_STATUSES:
        for key in ("val_accuracy", "val_loss"):
            if key not in record:
                continue  # the schema reports it missing
            value = record[key]
            if status == "COMPLETED" and value is None:
                found.append(((key,), "a COMPLETED trial needs a number here, got null"))
            elif status != "COMPLETED" and finite_number(value):
                found.append(((key,), f"a {status} trial has null here, got {show_value(value)}"))
    return found


def _skip_conditional(error: jsonschema.ValidationError) -> bool:
    """The trial schema's if/then/else (metrics vs status) is reported by trial_rules in plainer words."""
    return bool(error.relative_schema_path) and error.relative_schema_path[0] in ("then", "else")


# ---------------------------------------------------------------------------------------------
# comparison.csv


def check_comparison(path: Path, trial_searches: Iterable[str] | None) -> list[Violation]:
    """Violations of the comparison.csv at path (see check_comparison_bytes)."""
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except FileProblem as exc:
        return [Violation(path.name, "", str(exc))]
    return check_comparison_bytes(data, trial_searches, path.name)


def comparison_rows(data: bytes) -> list[tuple[int, list[str]]]:
    """The non-empty rows of comparison.csv's content with their line numbers: the header, at most MAX_CSV_ROWS rows
    and one more when there are more.

    Raises FileProblem when the content is not UTF-8 and csv.Error when it is not CSV.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not UTF-8 text (byte {exc.start})") from exc
    return list(islice(_csv_rows(text), MAX_CSV_ROWS + 2))


def check_comparison_bytes(data: bytes, trial_searches: Iterable[str] | None,
                           name: str = contract.COMPARISON_FILE) -> list[Violation]:
    """Violations of comparison.csv's content: exact header, numeric cells, one row per search that has trials.

    trial_searches are the searches trials.jsonl names; None when it could not be read (no cross-check).
    """
    searches_with_trials = None if trial_searches is None else set(trial_searches)
    if len(data) > MAX_TEXT_BYTES:
        return [Violation(name, "", too_large(len(data), MAX_TEXT_BYTES))]
    try:
        rows = comparison_rows(data)
    except FileProblem as exc:
        return [Violation(name, "", str(exc))]
    except csv.Error as exc:
        return [Violation(name, "", f"not valid CSV: {_shorten(str(exc))}")]
    if not rows:
        return [Violation(name, "", "file is empty")]
    stopped = None
    if len(rows) > MAX_CSV_ROWS + 1:
        line_no = rows[-1][0]
        rows = rows[:-1]
        stopped = Violation(name, f"line {line_no}", f"the file has more than {MAX_CSV_ROWS} rows; "
                                                     "this one and the rest were not read")

    found: list[Violation] = []
    _, header = rows[0]
    expected = list(contract.COMPARISON_COLUMNS)
    if header != expected and header != [c for c in expected if c not in contract.OPTIONAL_COMPARISON_COLUMNS]:
        missing = [c for c in expected if c not in header]
        unexpected = [c for c in header[:MAX_CSV_COLUMNS] if c not in expected]
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {_names(unexpected, len(header) - MAX_CSV_COLUMNS)}" if unexpected else "",
                "columns out of order" if not missing and not unexpected else "",
            )
            if part
        )
        found.append(Violation(name, "line 1", f"header must be {','.join(expected)} ({detail})"))

    row_of: dict[str, int] = {}
    for line_no, cells in rows[1:]:
        where = f"line {line_no}"
        if len(cells) != len(header):
            found.append(Violation(name, where, f"has {len(cells)} cells, the header has {len(header)}"))
        row = dict(zip(header[:MAX_CSV_COLUMNS], cells[:MAX_CSV_COLUMNS]))
        search = row.get("search")
        if search is not None:
            if search not in contract.SEARCHES:
                found.append(
                    Violation(name, f"{where}: search", f"{_name(search)} is not one of {', '.join(contract.SEARCHES)}")
                )
            elif search in row_of:
                found.append(
                    Violation(name, f"{where}: search", f"second row for search {search} (first on line {row_of[search]})")
                )
            else:
                row_of[search] = line_no
                if searches_with_trials is not None and search not in searches_with_trials:
                    found.append(
                        Violation(name, f"{where}: search", f"row for search {search}, which has no trials in trials.jsonl")
                    )
        for column, cell in row.items():
            message = _csv_cell_problem(column, cell)
            if message:
                found.append(Violation(name, f"{where}: {column}", message))
    for search in contract.SEARCHES:
        if searches_with_trials is not None and search in searches_with_trials and search not in row_of:
            found.append(Violation(name, "", f"no row for search {search}, which has trials in trials.jsonl"))
    return _capped(name, found) + ([stopped] if stopped else [])


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        if cells:
            yield reader.line_num, cells


_DIGIT = re.compile(r"\d")


def _csv_cell_problem(column: str, cell: str) -> str | None:
    if column not in _CSV_INT_COLUMNS and column not in _CSV_NUMBER_COLUMNS:
        return None
    if not cell.strip():
        return None if column in _CSV_MAY_BE_EMPTY else f"{column} is empty, it needs a number"
    if len(_DIGIT.findall(cell, 0, 4 * MAX_INT_DIGITS)) > MAX_INT_DIGITS:
        return f"{column} has a number with more than {MAX_INT_DIGITS} digits"
    try:
        value = float(cell)
    except ValueError:
        kind = "a whole number" if column in _CSV_INT_COLUMNS else "a number"
        return f"{column} must be {kind}, got '{_shorten(cell, 40)}'"
    if not math.isfinite(value):
        return f"{column} must be a finite number, got '{_shorten(cell, 40)}'"
    if column in _CSV_INT_COLUMNS and not value.is_integer():
        return f"{column} must be a whole number, got '{_shorten(cell, 40)}'"
    return None


# ---------------------------------------------------------------------------------------------
# answers.yaml


def check_answers(path: Path) -> list[Violation]:
    """Violations of the answers.yaml at path (see check_answers_bytes)."""
    try:
        data = read_regular(path, MAX_YAML_BYTES)
    except FileProblem as exc:
        return [Violation(path.name, "", str(exc))]
    return check_answers_bytes(data, path.name)


def check_answers_bytes(data: bytes, name: str = contract.ANSWERS_FILE) -> list[Violation]:
    """Violations of answers.yaml's content: YAML syntax, bounds (aliases, anchors, long integers), the schema."""
    try:
        doc = load_answers(data)
    except BoundedParseError as exc:
        return [Violation(name, exc.where, exc.message)]
    if doc is None:
        return [Violation(name, "", "file is empty")]
    return check_answers_doc(doc, name)


def load_answers(data: bytes | str) -> Any:
    """The YAML document of answers.yaml's content (None when empty), read by grader.parse.load_yaml within bounds."""
    return load_yaml(data, max_bytes=MAX_YAML_BYTES)


def check_answers_doc(doc: Any, name: str = contract.ANSWERS_FILE) -> list[Violation]:
    """Violations of parsed answers (read from a notebook cell, or with names the caller made canonical)."""
    found, count = _nonfinite(doc, MAX_DOC_VALUES)
    if count > MAX_DOC_VALUES:
        return [Violation(name, "", _too_many_values(MAX_DOC_VALUES))]
    skip = {where for where, _ in found}
    found += [(where, message) for where, message in _schema_findings(doc, "answers") if where not in skip]
    return _capped(name, (Violation(name, where, message) for where, message in found))


# ---------------------------------------------------------------------------------------------
# models/ and plots/


def check_keras_archive(root: Path, relative: str) -> list[Violation]:
    """Violations of one exported model: it must be a Keras v3 archive (a zip with config, metadata, weights)."""
    path = root / relative
    try:
        fh = open_regular(path)
    except FileProblem as exc:
        return [Violation(relative, "", str(exc))]
    try:
        with fh:
            if not zipfile.is_zipfile(fh):
                return [Violation(relative, "", "not a Keras v3 archive: not a zip file")]
            entries = _zip_entry_count(fh)
            if entries is None or entries > MAX_KERAS_MEMBERS:
                listed = "more entries than it can count" if entries is None else f"{entries} entries"
                return [Violation(relative, "", f"not a Keras v3 archive: the zip lists {listed} "
                                                f"(a Keras archive holds a handful; at most {MAX_KERAS_MEMBERS} are read)")]
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                members = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return [Violation(relative, "", f"not a Keras v3 archive: {_shorten(str(exc))}")]
    missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in members]
    if missing:
        return [Violation(relative, "", f"not a Keras v3 archive: the zip lacks {', '.join(missing)}")]
    return []


def _zip_entry_count(fh: Any) -> int | None:
    """The entry count a zip's end-of-central-directory record declares, read before the directory itself is parsed
    (a directory of millions of entries would cost the grader gigabytes); None for a zip64 count or no record."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    tail_size = min(size, _EOCD_SEARCH_BYTES)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    return None if count == 0xFFFF else count


def check_plots(path: Path) -> list[Violation]:
    """Violations of plots/: it holds at least one file, and every .png really is a PNG."""
    name = path.name
    if not path.exists():
        return [Violation(f"{name}/", "", "folder is missing")]
    if not path.is_dir() or path.is_symlink():
        return [Violation(f"{name}/", "", "not a folder")]
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() or p.is_symlink())
    except OSError as exc:
        return [Violation(f"{name}/", "", f"cannot be listed: {exc.strerror or exc}")]
    if not files:
        return [Violation(f"{name}/", "", "folder has no files")]
    found: list[Violation] = []
    for file in files:
        if file.suffix.lower() != ".png":
            continue
        relative = f"{name}/{file.name}"
        try:
            with open_regular(file) as fh:
                head = fh.read(len(PNG_SIGNATURE))
        except FileProblem as exc:
            found.append(Violation(relative, "", str(exc)))
            continue
        except OSError as exc:
            found.append(Violation(relative, "", f"cannot be read: {exc.strerror or exc}"))
            continue
        if head != PNG_SIGNATURE:
            found.append(Violation(relative, "", "not a PNG image: it does not start with the PNG signature"))
    return _capped(f"{name}/", found)


# ---------------------------------------------------------------------------------------------
# Reading a file without following a link


class FileProblem(ValueError):
    """A file that cannot be read: missing, a symbolic link, not a regular file, too large, unreadable, not UTF-8."""


_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))


def open_regular(path: Path) -> io.BufferedReader:
    """path opened for reading when it is a regular file; never through a final symbolic link, never a FIFO or device.

    Raises FileProblem with the reason ('is a symbolic link, not a regular file',
    'file is missing', 'not a regular file', 'cannot be read: ...').
    """
    try:
        seen = os.lstat(path)  # a device is never opened (opening one can have effects), nor a FIFO (it blocks)
        if stat.S_ISLNK(seen.st_mode):
            raise FileProblem("is a symbolic link, not a regular file")
        if not stat.S_ISREG(seen.st_mode):
            raise FileProblem("not a regular file")
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(path)):  # EMLINK: the BSDs
            raise FileProblem("is a symbolic link, not a regular file") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileProblem("file is missing") from None
        raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            raise FileProblem("not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of the regular file at path (see open_regular), refused with FileProblem when larger than limit."""
    with open_regular(path) as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise FileProblem(too_large(size, limit))
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew while being read
        raise FileProblem(too_large(len(data), limit))
    return data


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _nonfinite(doc: Any, limit: int = MAX_DOC_VALUES) -> tuple[list[tuple[str, str]], int]:
    """(json path, message) for every NaN or infinite number in doc, in document order; and how many values it holds.

    json.loads reads the tokens NaN, Infinity and -Infinity (and overflows such as 1e999)
    as floats, and YAML has .nan and .inf: walking the parsed value catches them all.
    Iterative, so a deeply nested document cannot exhaust the stack; the walk stops once it
    has counted more than limit values (the count then exceeds limit).
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[JsonPath, Any]] = [((), doc)]
    count = 0
    while stack:
        parts, value = stack.pop()
        count += 1
        if count > limit:
            break
        if isinstance(value, float):
            if not math.isfinite(value):
                token = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
                found.append((_path(parts), f"numbers must be finite, got {token}"))
        elif isinstance(value, dict):
            stack.extend(((*parts, k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend(((*parts, i), v) for i, v in reversed(list(enumerate(value))))
    return found, count


def _too_many_values(limit: int) -> str:
    return f"holds more than {limit} values, more than the grader checks"


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    """One validator per bundled schema, built once (building one per line made a flood of lines quadratic-slow)."""
    return jsonschema.Draft202012Validator(load_schema(schema_name))


def _schema_findings(
    obj: Any, schema_name: str, skip: Callable[[jsonschema.ValidationError], bool] | None = None, *,
    describe: bool = True,
) -> list[tuple[str, str]]:
    """(json path, message) for every violation of a bundled schema, oneOf/anyOf unpacked to the branch meant.

    describe=False gives one ("", "") per violation: the count, without the cost of the messages.
    """
    validator = _validator(schema_name)
    try:
        top = [e for e in validator.iter_errors(obj) if skip is None or not skip(e)]
        errors = [e for error in top for e in _unpack(error, top)]
    except RecursionError:
        return [("$", "nested too deeply to check")]
    if not describe:
        return [("", "")] * len(errors)
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [(_path(e.absolute_path), _message(e)) for e in errors]


def _message(error: jsonschema.ValidationError) -> str:
    """The error's message with a long string the submission wrote cut short, so that what is wrong still shows."""
    text = error.message
    if isinstance(error.instance, str) and len(error.instance) > 40:
        text = text.replace(repr(error.instance), _name(error.instance), 1)
    return _shorten(text)


def _unpack(error: jsonschema.ValidationError, siblings: Sequence[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    """Replace a failed oneOf/anyOf by the errors of the one branch the instance was meant for.

    A branch is not meant when the instance has the wrong JSON type for it or its
    discriminating key (`"type": "float"`) names another branch. When no single branch
    is meant and another error already covers this instance (its own `type`, `required`
    or `enum`), the bare "not valid under any of the given schemas" adds nothing and is dropped.
    """
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        yield error
        return
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [subs for subs in branches.values() if not any(_not_meant(sub) for sub in subs)]
    if len(meant) == 1:
        for sub in meant[0]:
            yield from _unpack(sub, meant[0])
        return
    here = list(error.absolute_path)
    covered = any(
        other is not error
        and other.validator not in ("oneOf", "anyOf")
        and list(other.absolute_path)[: len(here)] == here
        for other in siblings
    )
    if not covered:
        yield error


def _not_meant(sub: jsonschema.ValidationError) -> bool:
    path = list(sub.relative_path)
    return (not path and sub.validator in ("type", "const")) or (path == [_DISCRIMINATOR] and sub.validator == "const")


def _capped(file: str, violations: Iterable[Violation]) -> list[Violation]:
    listed = list(violations)
    if len(listed) <= MAX_VIOLATIONS_PER_FILE:
        return listed
    rest = len(listed) - MAX_VIOLATIONS_PER_FILE
    return [*listed[:MAX_VIOLATIONS_PER_FILE], Violation(file, "", f"{rest} more violations not listed")]


def _shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return escaped_line(text, limit)


def _path(parts: Iterable[Any]) -> str:
    """A JSON path for a message; each key cut to 40 characters and escaped, and the whole to MAX_MESSAGE_CHARS."""
    return _shorten(json_path(p if isinstance(p, int) and not isinstance(p, bool) else _name(p, quote=False)
                              for p in parts))


def _name(value: Any, *, quote: bool = True, limit: int = 40) -> str:
    """A name a submission wrote (a key, a trial id, a search), cut short and escaped: 'abc' (quote) or abc."""
    if not isinstance(value, str):
        return show_value(value, limit)
    if not quote and len(value) <= limit and value.isprintable():
        return value
    shown = show_value(value, limit + 2)
    if quote:
        return shown
    return shown[1:-1] if shown.endswith(("'", '"')) else shown[1:]


def _names(names: Sequence[Any], more: int = 0, shown: int = 5) -> str:
    """The first few names, each cut short, then how many more."""
    rest = max(0, len(names) - shown) + max(0, more)
    return ", ".join(_name(n, quote=False) for n in names[:shown]) + (f" and {rest} more" if rest else "")


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """`grader validate-output DIR [--searches grid,random,bayesian,manual]`: print every violation of contract v1 (or an OK
    line); 0 when there are none, else 1 (2 for a bad --searches)."""
    parser = argparse.ArgumentParser(
        prog="grader validate-output", description="Check a submission's output dir against submission contract v1."
    )
    parser.add_argument("output_dir", type=Path, help="the dir a submission wrote (GRADER_OUTPUT_DIR)")
    parser.add_argument(
        "--searches",
        default="grid,random",
        help="comma-separated searches whose best model must be exported, of grid, random, bayesian and manual "
             "(default: grid,random)",
    )
    args = parser.parse_args(argv)
    searches = tuple(s.strip() for s in args.searches.split(",") if s.strip())
    unknown = [s for s in searches if s not in contract.SEARCHES]
    if unknown or not searches:
        parser.error(f"--searches: unknown search {', '.join(unknown)} (known: {', '.join(contract.SEARCHES)})"
                     if unknown else f"--searches: name at least one of {', '.join(contract.SEARCHES)}")
    try:
        report = validate_output_dir(args.output_dir, searches=searches)
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for violation in report.violations:
        print(violation)
    if report.ok:
        print(f"OK: {report.path} follows contract v{contract.CONTRACT_VERSION}")
        return 0
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
