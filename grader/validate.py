"""Check a submission's output dir against submission contract v1 and list every violation found.

Judging only: nothing here runs, imports or loads student code or Keras. A model is
checked by looking inside its zip, a plot by its first bytes. Every problem with the
content becomes a `Violation` (file, where, message); only a missing output dir raises.

A hostile or broken output dir must not stall the grader, so text files larger than
`MAX_TEXT_BYTES` are refused, YAML aliases are refused (no alias bombs) and each file
lists at most `MAX_VIOLATIONS_PER_FILE` violations plus one line counting the rest.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from grader import contract
from grader.jsonio import finite_number, json_path, load_schema

MAX_TEXT_BYTES = 16 * 1024 * 1024
MAX_VIOLATIONS_PER_FILE = 1000
MAX_MESSAGE_CHARS = 300

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KERAS_ARCHIVE_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")

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


class _FileProblem(ValueError):
    """A file could not be read as text (missing, not a file, too large, unreadable, not UTF-8)."""


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
    _, trial_violations, trial_searches = _read_trials(root / contract.TRIALS_FILE)
    violations += trial_violations
    violations += check_comparison(root / contract.COMPARISON_FILE, trial_searches)
    violations += check_answers(root / contract.ANSWERS_FILE)
    for search in searches:
        violations += check_keras_archive(root, contract.best_model_path(search))
    violations += check_plots(root / contract.PLOTS_DIR)
    return ValidationReport(path=root, violations=tuple(violations))


# ---------------------------------------------------------------------------------------------
# search_spaces.json


def check_search_spaces(path: Path) -> list[Violation]:
    """Violations of search_spaces.json: syntax, non-finite numbers, schema, and the rules a schema can't state."""
    name = path.name
    try:
        doc = json.loads(_read_text(path))
    except _FileProblem as exc:
        return [Violation(name, "", str(exc))]
    except json.JSONDecodeError as exc:
        return [Violation(name, f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {_json_problem(exc)}")]
    except RecursionError:
        return [Violation(name, "", "nested too deeply to read")]

    found = [(where, message) for where, message in _nonfinite(doc)]
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
                    found.append(((search, "fixed", hp), f"{hp} is both in {varied_key} and in fixed of {search}"))
    return found


def _range_rules(at: JsonPath, spec: Any) -> list[tuple[JsonPath, str]]:
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int"):
        return []
    low, high = spec.get("min"), spec.get("max")
    found: list[tuple[JsonPath, str]] = []
    if finite_number(low) and finite_number(high) and low > high:
        found.append(((*at, "min"), f"min {low} is greater than max {high}"))
    if spec.get("sampling") == "log" and finite_number(low) and low <= 0:
        found.append(((*at, "min"), f"a log-sampled range needs min > 0, got {low}"))
    return found


# ---------------------------------------------------------------------------------------------
# trials.jsonl


def read_trials(path: str | Path) -> tuple[list[dict[str, Any]], list[Violation]]:
    """The trials of a trials.jsonl file that break no rule, in file order, and the violations of the rest.

    Blank lines are skipped. A line with any violation (bad JSON, NaN, schema, a repeated
    (search, trial_id), history lists of unequal length, status and metrics at odds) is left
    out of the trials; the first line of a repeated id is kept. A missing file is a violation.
    """
    trials, violations, _ = _read_trials(Path(path))
    return trials, violations


def _read_trials(path: Path) -> tuple[list[dict[str, Any]], list[Violation], set[str] | None]:
    """read_trials, plus the searches named by lines that parse (None when the file could not be read)."""
    name = path.name
    try:
        raw = _read_bytes(path)
    except _FileProblem as exc:
        return [], [Violation(name, "", str(exc))], None

    trials: list[dict[str, Any]] = []
    found: list[Violation] = []
    searches: set[str] = set()
    first_line: dict[tuple[str, str], int] = {}
    chunks = raw.split(b"\n")
    last_index = len(chunks) - 1  # the text after the last newline: b"" when the file ends with one
    seen_any = False
    for index, chunk in enumerate(chunks):
        if not chunk.strip():
            continue
        seen_any = True
        line_no = index + 1
        parsed, problems = _parse_trial_line(chunk, line_no, cut_off=index == last_index)
        if parsed is _UNPARSED:
            found += [Violation(name, where, message) for where, message in problems]
            continue
        record: Any = parsed
        if isinstance(record, dict):
            search, trial_id = record.get("search"), record.get("trial_id")
            if search in contract.SEARCHES:
                searches.add(search)
            if isinstance(search, str) and isinstance(trial_id, str):
                first = first_line.setdefault((search, trial_id), line_no)
                if first != line_no:
                    problems.append(
                        (
                            f"line {line_no}: $.trial_id",
                            f"duplicate trial_id '{trial_id}' in search {search} (first on line {first})",
                        )
                    )
        if not problems:
            trials.append(record)
        found += [Violation(name, where, message) for where, message in problems]
    if not seen_any:
        found.append(Violation(name, "", "file has no trials"))
    return trials, _capped(name, found), searches


_UNPARSED = object()


def _parse_trial_line(chunk: bytes, line_no: int, *, cut_off: bool) -> tuple[Any, list[tuple[str, str]]]:
    """One line's value (or _UNPARSED) and its violations: JSON, non-finite numbers, schema, trial rules."""
    where = f"line {line_no}"
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return _UNPARSED, [(where, "not UTF-8 text")]
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {_json_problem(exc)} at column {exc.colno}"
        if cut_off:
            message += "; it is the last line and has no newline, so the run was probably stopped while writing it"
        return _UNPARSED, [(where, message)]
    except RecursionError:
        return _UNPARSED, [(where, "nested too deeply to read")]
    found = _nonfinite(record)
    skip = {p for p, _ in found}
    found += [(p, m) for p, m in _schema_findings(record, "trial", _skip_conditional) if p not in skip]
    found += [(json_path(parts), m) for parts, m in trial_rules(record)]
    return record, [(f"{where}: {p}", m) for p, m in found]


def trial_rules(record: Any) -> list[tuple[JsonPath, str]]:
    """The rules of a trial beyond its schema: equal-length history lists; metrics numbers iff COMPLETED."""
    if not isinstance(record, dict):
        return []
    found: list[tuple[JsonPath, str]] = []
    history = record.get("history")
    if isinstance(history, dict):
        lengths = {key: len(value) for key, value in history.items() if isinstance(value, list)}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{key} {n}" for key, n in lengths.items())
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
                found.append(((key,), f"a {status} trial has null here, got {value}"))
    return found


def _skip_conditional(error: jsonschema.ValidationError) -> bool:
    """The trial schema's if/then/else (metrics vs status) is reported by trial_rules in plainer words."""
    return bool(error.relative_schema_path) and error.relative_schema_path[0] in ("then", "else")


# ---------------------------------------------------------------------------------------------
# comparison.csv


def check_comparison(path: Path, trial_searches: set[str] | None) -> list[Violation]:
    """Violations of comparison.csv: exact header, numeric cells, one row per search that has trials.

    trial_searches are the searches trials.jsonl names; None when it could not be read (no cross-check).
    """
    name = path.name
    try:
        text = _read_text(path, encoding="utf-8-sig")
    except _FileProblem as exc:
        return [Violation(name, "", str(exc))]
    try:
        rows = list(_csv_rows(text))
    except csv.Error as exc:
        return [Violation(name, "", f"not valid CSV: {exc}")]
    if not rows:
        return [Violation(name, "", "file is empty")]

    found: list[Violation] = []
    _, header = rows[0]
    expected = list(contract.COMPARISON_COLUMNS)
    if header != expected:
        missing = [c for c in expected if c not in header]
        unexpected = [c for c in header if c not in expected]
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(unexpected)}" if unexpected else "",
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
        row = dict(zip(header, cells))
        search = row.get("search")
        if search is not None:
            if search not in contract.SEARCHES:
                found.append(
                    Violation(name, f"{where}: search", f"'{search}' is not one of {', '.join(contract.SEARCHES)}")
                )
            elif search in row_of:
                found.append(
                    Violation(name, f"{where}: search", f"second row for search {search} (first on line {row_of[search]})")
                )
            else:
                row_of[search] = line_no
                if trial_searches is not None and search not in trial_searches:
                    found.append(
                        Violation(name, f"{where}: search", f"row for search {search}, which has no trials in trials.jsonl")
                    )
        for column, cell in row.items():
            message = _csv_cell_problem(column, cell)
            if message:
                found.append(Violation(name, f"{where}: {column}", message))
    for search in contract.SEARCHES:
        if trial_searches is not None and search in trial_searches and search not in row_of:
            found.append(Violation(name, "", f"no row for search {search}, which has trials in trials.jsonl"))
    return _capped(name, found)


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        if cells:
            yield reader.line_num, cells


def _csv_cell_problem(column: str, cell: str) -> str | None:
    if column not in _CSV_INT_COLUMNS and column not in _CSV_NUMBER_COLUMNS:
        return None
    if not cell.strip():
        return None if column in _CSV_MAY_BE_EMPTY else f"{column} is empty, it needs a number"
    try:
        value = float(cell)
    except ValueError:
        kind = "a whole number" if column in _CSV_INT_COLUMNS else "a number"
        return f"{column} must be {kind}, got '{_shorten(cell, 40)}'"
    if not math.isfinite(value):
        return f"{column} must be a finite number, got '{cell}'"
    if column in _CSV_INT_COLUMNS and not value.is_integer():
        return f"{column} must be a whole number, got '{cell}'"
    return None


# ---------------------------------------------------------------------------------------------
# answers.yaml


def check_answers(path: Path) -> list[Violation]:
    """Violations of answers.yaml: YAML syntax, aliases, non-finite numbers, the answers schema."""
    name = path.name
    try:
        text = _read_text(path)
    except _FileProblem as exc:
        return [Violation(name, "", str(exc))]
    try:
        alias = next((e for e in yaml.parse(text, Loader=yaml.SafeLoader) if isinstance(e, yaml.AliasEvent)), None)
        if alias is not None:
            mark = alias.start_mark
            return [Violation(name, f"line {mark.line + 1}, column {mark.column + 1}", "YAML aliases (*name) are not allowed")]
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return [Violation(name, where, f"not valid YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return [Violation(name, "", f"not valid YAML: {_shorten(str(exc).splitlines()[0] if str(exc) else 'error')}")]
    except RecursionError:
        return [Violation(name, "", "nested too deeply to read")]
    if doc is None:
        return [Violation(name, "", "file is empty")]
    found = _nonfinite(doc)
    skip = {where for where, _ in found}
    found += [(where, message) for where, message in _schema_findings(doc, "answers") if where not in skip]
    return _capped(name, (Violation(name, where, message) for where, message in found))


# ---------------------------------------------------------------------------------------------
# models/ and plots/


def check_keras_archive(root: Path, relative: str) -> list[Violation]:
    """Violations of one exported model: it must be a Keras v3 archive (a zip with config, metadata, weights)."""
    path = root / relative
    problem = _not_regular(path)
    if problem:
        return [Violation(relative, "", problem)]
    try:
        if not zipfile.is_zipfile(path):
            return [Violation(relative, "", "not a Keras v3 archive: not a zip file")]
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [Violation(relative, "", f"not a Keras v3 archive: {_shorten(str(exc))}")]
    missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in members]
    if missing:
        return [Violation(relative, "", f"not a Keras v3 archive: the zip lacks {', '.join(missing)}")]
    return []


def check_plots(path: Path) -> list[Violation]:
    """Violations of plots/: it holds at least one file, and every .png really is a PNG."""
    name = path.name
    if not path.exists():
        return [Violation(f"{name}/", "", "folder is missing")]
    if not path.is_dir():
        return [Violation(f"{name}/", "", "not a folder")]
    files = sorted(p for p in path.iterdir() if p.is_file() or p.is_symlink())
    if not files:
        return [Violation(f"{name}/", "", "folder has no files")]
    found: list[Violation] = []
    for file in files:
        if file.suffix.lower() != ".png":
            continue
        relative = f"{name}/{file.name}"
        problem = _not_regular(file)
        if problem:
            found.append(Violation(relative, "", problem))
            continue
        try:
            with file.open("rb") as fh:
                head = fh.read(len(PNG_SIGNATURE))
        except OSError as exc:
            found.append(Violation(relative, "", f"cannot be read: {exc.strerror or exc}"))
            continue
        if head != PNG_SIGNATURE:
            found.append(Violation(relative, "", "not a PNG image: it does not start with the PNG signature"))
    return _capped(f"{name}/", found)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _not_regular(path: Path) -> str | None:
    """Why path is not a regular file the validator may read, or None when it is.

    A symbolic link is refused: it could point outside the output dir (and its content
    would end up in feedback) or at something that never ends, such as a FIFO.
    """
    if path.is_symlink():
        return "is a symbolic link, not a regular file"
    if not path.exists():
        return "file is missing"
    if not path.is_file():
        return "not a regular file"
    return None


def _read_bytes(path: Path) -> bytes:
    problem = _not_regular(path)
    if problem:
        raise _FileProblem(problem)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise _FileProblem(
                f"file is too large ({size / 2**20:.1f} MiB; the limit is {MAX_TEXT_BYTES // 2**20} MiB)"
            )
        return path.read_bytes()
    except OSError as exc:
        raise _FileProblem(f"cannot be read: {exc.strerror or exc}") from exc


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    raw = _read_bytes(path)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _FileProblem(f"not UTF-8 text (byte {exc.start})") from exc


def _json_problem(exc: json.JSONDecodeError) -> str:
    """The decoder's message without its dangling 'starting at' (the position is given separately)."""
    return exc.msg.removesuffix(" starting at")


def _nonfinite(doc: Any) -> list[tuple[str, str]]:
    """(json path, message) for every NaN or infinite number in doc, in document order.

    json.loads reads the tokens NaN, Infinity and -Infinity (and overflows such as 1e999)
    as floats, and YAML has .nan and .inf: walking the parsed value catches them all.
    Iterative, so a deeply nested document cannot exhaust the stack.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[JsonPath, Any]] = [((), doc)]
    while stack:
        parts, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            token = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            found.append((json_path(parts), f"numbers must be finite, got {token}"))
        elif isinstance(value, dict):
            stack.extend(((*parts, str(k)), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend(((*parts, i), v) for i, v in reversed(list(enumerate(value))))
    return found


def _schema_findings(
    obj: Any, schema_name: str, skip: Callable[[jsonschema.ValidationError], bool] | None = None
) -> list[tuple[str, str]]:
    """(json path, message) for every violation of a bundled schema, oneOf/anyOf unpacked to the branch meant."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    try:
        top = [e for e in validator.iter_errors(obj) if skip is None or not skip(e)]
        errors = [e for error in top for e in _unpack(error, top)]
    except RecursionError:
        return [("$", "nested too deeply to check")]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [(json_path(e.absolute_path), _shorten(e.message)) for e in errors]


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
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """`grader validate DIR`: print every violation of contract v1 (or an OK line); 0 when there are none, else 1."""
    parser = argparse.ArgumentParser(
        prog="grader validate", description="Check a submission's output dir against submission contract v1."
    )
    parser.add_argument("output_dir", type=Path, help="the dir a submission wrote (GRADER_OUTPUT_DIR)")
    parser.add_argument(
        "--searches",
        default="grid,random",
        help="comma-separated searches whose best model must be exported (default: grid,random)",
    )
    args = parser.parse_args(argv)
    searches = tuple(s.strip() for s in args.searches.split(",") if s.strip())
    unknown = [s for s in searches if s not in contract.SEARCHES]
    if unknown:
        parser.error(f"--searches: unknown search {', '.join(unknown)} (known: {', '.join(contract.SEARCHES)})")
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
