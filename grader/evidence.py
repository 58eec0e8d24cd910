"""Gather what the rubric checks judge from one finished run: its output dir, run status and model evaluations.

All reading happens here, once, and the checks only judge the frozen `Evidence` it
returns. Trials come from `trials.jsonl`; when it is missing or holds no usable trial,
from scikit-learn searches' saved `cv_results_<search>.csv|json` (grader.cv_results);
else natively from KerasTuner project dirs (`<dir>/oracle.json` with `trial_*/trial.json`,
COMPLETED trials only), found in the output dir and, as a fallback for tutorial-style
notebooks that tune into their own folder (`directory="my_dir"`), in the grader's copy
of the work dir's KerasTuner files (`work_projects`, made by grader.runner through
grader.harvest); a project in the output dir wins over one of the same search elsewhere.
A project's search is read from the oracle class the sandbox recorded in its oracle.json
(grader/gpu_site/grader_fallbacks.py), else from its folder's name, else from its oracle's
state. Hyperband counts as random search: it samples configurations at random from the
declared ranges and only spends epochs unevenly (successive halving), so its trials are
judged as random ones; its bookkeeping values (`tuner/epochs`, `tuner/bracket`...) are not
hyperparameters and are skipped. The declared spaces come from `search_spaces.json`,
or from a project's `oracle.json` for a search the file does not usably declare.
Answers come from `answers.yaml`, or from the notebook cell tagged `answers` when
there is no such file. The rubric's hyperparameter aliases (`lr` -> `learning_rate`)
are applied everywhere before anything is validated or judged.

Nothing here raises for what a submission wrote: every problem becomes a
`grader.validate.Violation` naming its file and line (or JSON path), and whatever
is still usable is kept. The grader gathers from its own copy of the output dir
(grader.harvest), and even so each file is read once (never through a symbolic link,
never a FIFO or device) and parsed within grader.parse's bounds; `grader.validate`'s bytes and
document entry points check what was read. When aliases changed a file's content, the
checker is given the renamed content, so its messages describe what the grader uses.
Every value of a submission's quoted in a message is cut short (grader.parse.show_value).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grader import contract
from grader.jsonio import finite_number
from grader.parse import (
    BoundedParseError,
    check_value,
    count_values,
    load_json,
    escaped_line,
    show_value,
)
from grader.result import ModelEvaluation
from grader.validate import (
    MAX_CSV_COLUMNS,
    MAX_TEXT_BYTES,
    MAX_YAML_BYTES,
    PNG_SIGNATURE,
    FileProblem,
    Violation,
    check_answers_bytes,
    check_answers_doc,
    check_comparison_bytes,
    check_keras_archive,
    check_search_spaces_bytes,
    check_search_spaces_doc,
    comparison_rows,
    load_answers,
    read_regular,
    read_trials_bytes,
)
from tunekit.spaces import GridSpace, RandomSpace, Range

MAX_FILES = 5000  # entries of the output dir looked at; a hostile dir cannot stall the grader
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024  # an executed notebook carries its outputs (plots)
MAX_PNG_PIXEL_BYTES = 256 * 1024 * 1024  # a PNG whose decoded size would exceed this is refused, not inflated
MAX_TUNER_DEPTH = 3  # oracle.json may sit at most this many folders below the output dir
MAX_DEPTH = 12  # folders deeper than this are not walked (os.walk recurses; a hostile tree must not exhaust the stack)
MAX_GRID_VALUES = 1000  # values enumerated for one stepped Int/Float of a KerasTuner grid
MAX_TUNER_JSON_BYTES = 4 * 1024 * 1024  # one KerasTuner oracle.json or trial.json (a few KiB in a real run)
MAX_TUNER_BYTES = 64 * 1024 * 1024  # the trial.json files of one KerasTuner project, all together
MAX_JSON_VALUES = 100_000  # values of one KerasTuner JSON file looked at
MAX_LISTED_VALUES = 10  # declared values named in one message
ANSWERS_TAG = "answers"
ANSWERS_VARIABLE = "ANSWERS"

Space = GridSpace | RandomSpace

# The oracle class a KerasTuner project ran (recorded in oracle.json by the sandbox's hook) -> the contract's search.
ORACLE_SEARCHES = {"GridSearchOracle": "grid", "RandomSearchOracle": "random", "HyperbandOracle": "random",
                   "BayesianOptimizationOracle": "bayesian", "ManualOracle": "manual"}
ORACLE_CLASS_KEY = "oracle_class"
TUNER_BOOKKEEPING = "tuner/"  # Hyperband's own values in trial.json (tuner/epochs, tuner/round...)


@dataclass(frozen=True)
class Trial:
    """One finished trial as the checks see it: canonical hyperparameter names, where it was read.

    ``outside`` names the hyperparameters whose value the search's declared space does
    not allow (empty when the trial follows it, or when the search declares no space).
    ``reason`` is the student's one line on why the trial was chosen (a manual search's trials in
    trials.jsonl), as they wrote it: escape it before showing it.
    """

    search: str
    trial_id: str
    hyperparameters: Mapping[str, float]
    status: str
    val_accuracy: float | None
    val_loss: float | None
    train_seconds: float | None
    file: str
    line: int | None = None
    outside: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED" and finite_number(self.val_accuracy)

    @property
    def source(self) -> str:
        """Where the trial was read: 'trials.jsonl line 4' or 'tuner/grid/trial_03/trial.json'."""
        return f"{self.file} line {self.line}" if self.line is not None else self.file

    def as_record(self) -> dict[str, Any]:
        """The trial in trials.jsonl's shape, as tunekit.analysis and the feedback's plots read it.

        search, trial_id, status and val_accuracy are always there (a plot needs no more);
        hyperparameters use the canonical names, whichever source the trial was read from.
        """
        return {
            "search": self.search,
            "trial_id": self.trial_id,
            "hyperparameters": dict(self.hyperparameters),
            "status": self.status,
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "train_seconds": self.train_seconds,
        }


@dataclass(frozen=True)
class TunerProject:
    """Where one search's KerasTuner project was found, and its best completed trial's folder.

    ``origin`` is "output" (inside the output dir) or "work" (elsewhere in the work dir);
    ``folder`` and ``best_trial`` are paths relative to that root ('my_dir/intro_to_kt',
    'my_dir/intro_to_kt/trial_0003'); ``oracle`` is the oracle's class when the sandbox recorded it.
    ``completed`` counts its completed trials and ``best_val_accuracy`` is the best one's, as read from its
    trial.json files: what the consistency check holds trials.jsonl against when both exist.
    """

    search: str
    origin: str
    folder: str
    oracle: str | None = None
    best_trial: str | None = None
    completed: int = 0
    best_val_accuracy: float | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything the checks may judge about one run; built by `gather`, or directly in tests.

    ``files`` maps each file of the output dir (path relative to it) to None when it is
    what its name claims, or to a one-line reason when it is not. ``spaces`` holds the
    declared space of each search and ``spaces_source`` where it was read. ``comparison``
    maps a search to its first row of comparison.csv (None: no usable file). ``problems``
    lists every violation found, in the order the inputs were read.
    """

    output_dir: Path
    run_status: str | None = None
    run_message: str = ""
    trials: tuple[Trial, ...] = ()
    trials_source: str | None = None
    spaces: Mapping[str, Space] = field(default_factory=dict)
    spaces_source: Mapping[str, str] = field(default_factory=dict)
    comparison: Mapping[str, Mapping[str, str]] | None = None
    answers: Mapping[str, Any] | None = None
    answers_source: str | None = None
    evaluations: tuple[ModelEvaluation, ...] = ()
    files: Mapping[str, str | None] = field(default_factory=dict)
    problems: tuple[Violation, ...] = ()
    tuner_projects: Mapping[str, TunerProject] = field(default_factory=dict)
    run_seconds: float | None = None  # the run's measured wall time (None: the grader did not run it)
    verification: Any = None  # grader.verify.Verification: the claims re-trained by `grader verify` (None: not yet)

    def trials_of(self, search: str) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.search == search)

    def completed_of(self, search: str) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.search == search and t.completed)

    def best_of(self, search: str) -> Trial | None:
        """The completed trial of a search with the highest val accuracy (the first on a tie)."""
        done = self.completed_of(search)
        return max(done, key=lambda t: float(t.val_accuracy or 0.0)) if done else None

    def evaluation(self, search: str) -> ModelEvaluation | None:
        return next((e for e in self.evaluations if e.search == search), None)

    def evaluation_at(self, path: str) -> ModelEvaluation | None:
        return next((e for e in self.evaluations if e.path == path), None)

    def problems_in(self, *files: str) -> tuple[Violation, ...]:
        """The problems of the named files (a name ending in '/' takes every file under that folder)."""
        return tuple(p for p in self.problems
                     if any(p.file == f or (f.endswith("/") and p.file.startswith(f)) for f in files))


# ---------------------------------------------------------------------------------------------
# The whole run


def gather(
    output_dir: str | os.PathLike[str],
    *,
    aliases: Mapping[str, str] | None = None,
    run_status: str | None = None,
    run_message: str = "",
    evaluations: Iterable[ModelEvaluation] = (),
    notebook: str | os.PathLike[str] | None = None,
    refused: Iterable[tuple[str, str]] = (),
    unread: str | None = None,
    work_projects: str | os.PathLike[str] | None = None,
    run_seconds: float | None = None,
) -> Evidence:
    """Read one run's output dir into Evidence; never raises for what the submission wrote.

    aliases are the rubric's (`rubric.aliases`); run_status and run_message the Result's
    (None when the grader did not run it); evaluations the grader's ModelEvaluations;
    notebook the executed notebook, whose `answers` cell is read when there is no answers.yaml.
    output_dir is the grader's own copy (grader.harvest): refused lists the (display name,
    reason) of each entry it did not copy, which count as files that are not what they claim;
    unread says why the submission's output dir could not be copied at all. work_projects is
    the grader's copy of the KerasTuner files found elsewhere in the work dir (None: none looked for).
    run_seconds is the run's wall time as the sandbox measured it (None when it did not run).
    """
    root = Path(output_dir)
    names = dict(aliases or {})
    problems: list[Violation] = []
    if unread is not None or not root.is_dir() or root.is_symlink():
        why = (f"not read: it {unread}" if unread is not None
               else "not a folder" if root.exists() or root.is_symlink() else "the run left no output dir")
        problems.append(Violation("output dir", "", why))
        return Evidence(output_dir=root, run_status=run_status, run_message=run_message,
                        evaluations=tuple(evaluations), problems=tuple(problems), run_seconds=run_seconds)

    files, projects, walk_problems = _walk(root)
    problems += walk_problems
    native = [_read_project(root, project, names) for project in projects]
    native += _work_projects(work_projects, names)
    native = _one_project_per_search(native, problems)

    declared, declared_problems = _declared_spaces(root, names)
    spaces: dict[str, Space] = {}
    spaces_source: dict[str, str] = {}
    for search, space in declared.items():
        spaces[search], spaces_source[search] = space, contract.SEARCH_SPACES_FILE
    problems += declared_problems

    jsonl_trials, jsonl_problems, jsonl_present = _jsonl_trials(root, names)
    from grader.cv_results import read_cv_results  # imported here: grader.cv_results builds this module's Trial
    sklearn = read_cv_results(root, names)
    native_trials = [t for project in native for t in project.trials]
    if not jsonl_trials and sklearn.trials:  # scikit-learn searches: graded from their saved cv_results_
        trials, source = list(sklearn.trials), sklearn.source
        problems += (jsonl_problems if jsonl_present else []) + list(sklearn.problems)
    elif not jsonl_trials and native_trials:  # a plain KerasTuner run: graded from its trial files
        trials, source = native_trials, "tuner"
        problems += (jsonl_problems if jsonl_present else []) + list(sklearn.problems)
    else:
        trials, source = jsonl_trials, (contract.TRIALS_FILE if jsonl_present else sklearn.source)
        problems += (jsonl_problems if jsonl_present or not sklearn.files else []) + (
            [] if jsonl_trials else list(sklearn.problems))
    for project in native:
        if project.search not in spaces and project.space is not None:
            spaces[project.search], spaces_source[project.search] = project.space, project.oracle_file
            problems += project.space_problems
        if not jsonl_trials and not sklearn.trials:
            problems += project.trial_problems

    trials, outside_problems = _mark_outside(trials, spaces)
    problems += outside_problems

    comparison, comparison_problems, comparison_status = _comparison(
        root, {t.search for t in trials} if source == contract.TRIALS_FILE else None)
    problems += comparison_problems
    answers, answers_source, answer_problems = _answers(root, names, Path(notebook) if notebook else None)
    problems += answer_problems

    statuses = _file_statuses(root, files, problems, trials, comparison_status, answers, answers_source)
    for display, reason in refused:
        statuses[display] = f"not read: it {reason}"
        problems.append(Violation(display, "", statuses[display]))
    return Evidence(
        output_dir=root,
        run_status=run_status,
        run_message=run_message,
        trials=tuple(trials),
        trials_source=source,
        spaces=spaces,
        spaces_source=spaces_source,
        comparison=comparison,
        answers=answers,
        answers_source=answers_source,
        evaluations=tuple(evaluations),
        files=statuses,
        problems=tuple(_unique(problems)),
        tuner_projects={p.search: p.where for p in native if p.search is not None and p.where is not None},
        run_seconds=run_seconds,
    )


def gather_graded(student_dir: str | os.PathLike[str], *, aliases: Mapping[str, str] | None = None) -> Evidence:
    """What grading read, read again from the grader's own copy in a graded student's folder (OUT/<student>): the
    collected output dir, the executed notebook's answers and the KerasTuner files found in the work dir, no link
    followed. For the verbs that come after grading (review, verify, report); the run itself is not known here."""
    from grader.session import EXECUTED_NOTEBOOK, Layout

    layout = Layout(Path(student_dir))
    notebook = layout.collected_notebook / EXECUTED_NOTEBOOK
    work = layout.collected_work
    return gather(layout.collected_outputs, aliases=aliases,
                  notebook=notebook if notebook.is_file() and not notebook.is_symlink() else None,
                  work_projects=work if work.is_dir() and not work.is_symlink() else None)


def find_tuner_projects(output_dir: str | os.PathLike[str], work_projects: str | os.PathLike[str] | None = None,
                        aliases: Mapping[str, str] | None = None) -> dict[str, TunerProject]:
    """Each search's KerasTuner project, as gather reads them (output dir first), without the rest of the evidence."""
    root = Path(output_dir)
    found: list[_Project] = []
    if root.is_dir() and not root.is_symlink():
        found = [_read_project(root, project, dict(aliases or {})) for project in _walk(root)[1]]
    found += _work_projects(work_projects, dict(aliases or {}))
    kept = _one_project_per_search(found, [])
    return {p.search: p.where for p in kept if p.search is not None and p.where is not None}


def _work_projects(work_projects: str | os.PathLike[str] | None, aliases: Mapping[str, str]) -> list[_Project]:
    """The KerasTuner projects in the grader's copy of the work dir's tuner files (none when it was not made)."""
    if work_projects is None:
        return []
    root = Path(work_projects)
    if not root.is_dir() or root.is_symlink():
        return []
    return [_read_project(root, project, aliases, origin="work") for project in _walk(root)[1]]


# ---------------------------------------------------------------------------------------------
# The output dir's files


def _walk(root: Path) -> tuple[list[str], list[Path], list[Violation]]:
    """Relative paths of the files in root (symlinks included, never followed), KerasTuner project dirs, problems.

    A project dir's trial_* folders are not listed (checkpoints); their trial.json files
    are read by _read_project.
    """
    files: list[str] = []
    projects: list[Path] = []
    problems: list[Violation] = []
    seen = 0
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(folder)
        rel_dir = here.relative_to(root)
        depth = len(rel_dir.parts)
        if depth >= MAX_DEPTH and dirnames:
            problems.append(Violation(rel_dir.as_posix(), "", f"folders nested more than {MAX_DEPTH} levels deep "
                                                              "were not looked at"))
            dirnames[:] = []
        if "oracle.json" in filenames and 0 < depth <= MAX_TUNER_DEPTH:
            projects.append(here)
            dirnames[:] = [d for d in dirnames if not d.startswith("trial_")]
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            seen += 1
            if seen > MAX_FILES:
                problems.append(Violation("output dir", "", f"holds more than {MAX_FILES} files; the rest were not looked at"))
                return files, projects, problems
            files.append((rel_dir / name).as_posix())
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return files, projects, problems


def _file_statuses(root: Path, files: Sequence[str], problems: Sequence[Violation], trials: Sequence[Trial],
                   comparison_status: str | None, answers: Mapping[str, Any] | None,
                   answers_source: str | None) -> dict[str, str | None]:
    """Each file -> None when it is what its name claims, else why not (one line)."""
    out: dict[str, str | None] = {}
    for rel in files:
        path = root / rel
        if path.is_symlink():
            out[rel] = "is a symbolic link, not a regular file"
        elif rel == contract.SEARCH_SPACES_FILE:
            out[rel] = _first(problems, rel)
        elif rel == contract.TRIALS_FILE:
            mine = [t for t in trials if t.file == rel]
            out[rel] = None if mine else (_first(problems, rel) or "holds no usable trial")
        elif rel == contract.COMPARISON_FILE:
            out[rel] = comparison_status
        elif rel == contract.ANSWERS_FILE:
            out[rel] = None if answers is not None and answers_source == rel else (_first(problems, rel) or "not readable")
        elif rel.startswith(f"{contract.MODELS_DIR}/") and rel.endswith(".keras"):
            found = check_keras_archive(root, rel)
            out[rel] = found[0].message if found else None
        elif rel.lower().endswith(".png"):
            data, why = _read(path, MAX_TEXT_BYTES)
            out[rel] = why if data is None else png_problem(data)
        else:
            out[rel] = None
    return out


def png_problem(data: bytes) -> str | None:
    """Why data is not a PNG image that decodes (signature, chunk checksums, IHDR, complete image data), or None."""
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG image: it does not start with the PNG signature"
    pos, header, idat, ended = len(PNG_SIGNATURE), None, [], False
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        name = kind.decode("latin-1")
        if end > len(data):
            return f"not a PNG image: its {name} chunk is cut off"
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"not a PNG image: its {name} chunk fails its checksum"
        if header is None and kind != b"IHDR":
            return "not a PNG image: it does not begin with an IHDR chunk"
        if kind == b"IHDR":
            header = data[pos + 8:end - 4]
        elif kind == b"IDAT":
            idat.append(data[pos + 8:end - 4])
        elif kind == b"IEND":
            ended = True
            break
        pos = end
    if header is None or len(header) != 13:
        return "not a PNG image: it has no valid IHDR chunk"
    if not ended:
        return "not a PNG image: it ends before its IEND chunk"
    if not idat:
        return "not a PNG image: it has no image data"
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color, interlace = header[8], header[9], header[12]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if width == 0 or height == 0 or channels is None or depth not in (1, 2, 4, 8, 16):
        return "not a PNG image: its IHDR chunk is invalid"
    expected = height * (1 + math.ceil(width * channels * depth / 8))
    if expected > MAX_PNG_PIXEL_BYTES:
        return f"refused: a {width}x{height} image is too large to check"
    inflater, total, pending = zlib.decompressobj(), 0, b"".join(idat)
    try:
        while pending and total <= expected:
            total += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error:
        return "not a PNG image: its image data is corrupt"
    if interlace == 0 and total < expected:
        return f"not a PNG image: its image data is cut short ({total} of {expected} bytes)"
    return None


# ---------------------------------------------------------------------------------------------
# search_spaces.json


def _declared_spaces(root: Path, aliases: Mapping[str, str]) -> tuple[dict[str, Space], list[Violation]]:
    """The spaces search_spaces.json declares usably (a search's block without violations), and its violations."""
    path = root / contract.SEARCH_SPACES_FILE
    if not (path.exists() or path.is_symlink()):
        return {}, []
    data, why = _read(path, MAX_TEXT_BYTES)
    if data is None:
        return {}, [Violation(contract.SEARCH_SPACES_FILE, "", why or "not readable")]
    try:
        doc = load_json(data, max_bytes=MAX_TEXT_BYTES)
    except BoundedParseError:
        return {}, check_search_spaces_bytes(data)
    renamed = _rename_space_doc(doc, aliases)
    violations = check_search_spaces_doc(renamed)
    if any(not v.where for v in violations):  # the whole file is at fault (too many values, say)
        return {}, violations
    spaces: dict[str, Space] = {}
    for search in contract.SEARCHES:
        block = renamed.get(search) if isinstance(renamed, dict) else None
        if not isinstance(block, dict) or any(v.where == f"$.{search}" or v.where.startswith((f"$.{search}.", f"$.{search}["))
                                              for v in violations):
            continue
        try:
            spaces[search] = _space_from_json(search, block)
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
    return spaces, violations


def _space_from_json(search: str, block: Mapping[str, Any]) -> Space:
    fixed = dict(block.get("fixed") or {})
    if search == "grid":
        return GridSpace(values={k: tuple(v) for k, v in block["values"].items()}, fixed=fixed)
    ranges = {}
    for name, spec in block["ranges"].items():
        if spec["type"] == "choice":
            ranges[name] = Range.choice(*spec["values"])
        elif spec["type"] == "int":
            ranges[name] = Range.int(spec["min"], spec["max"], step=spec.get("step"), sampling=spec["sampling"])
        else:
            ranges[name] = Range.float(spec["min"], spec["max"], sampling=spec["sampling"])
    return RandomSpace(ranges=ranges, max_trials=int(block["max_trials"]), fixed=fixed)


def _rename_space_doc(doc: Any, aliases: Mapping[str, str]) -> Any:
    if not aliases or not isinstance(doc, dict):
        return doc
    out = dict(doc)
    for search in contract.SEARCHES:
        block = doc.get(search)
        if isinstance(block, dict):
            out[search] = {k: _rename_keys(v, aliases) if k in ("values", "ranges", "fixed") else v for k, v in block.items()}
    return out


def _rename_keys(mapping: Any, aliases: Mapping[str, str]) -> Any:
    """mapping with alias keys renamed to their canonical names (an alias whose canonical name is also a key stays)."""
    if not isinstance(mapping, dict) or not any(k in aliases for k in mapping):
        return mapping
    return {(aliases[k] if k in aliases and aliases[k] not in mapping else k): v for k, v in mapping.items()}


# ---------------------------------------------------------------------------------------------
# trials.jsonl


def _jsonl_trials(root: Path, aliases: Mapping[str, str]) -> tuple[list[Trial], list[Violation], bool]:
    """The usable trials of trials.jsonl with their line numbers, its violations, and whether the file is there."""
    path = root / contract.TRIALS_FILE
    present = path.exists() or path.is_symlink()
    data, why = _read(path, MAX_TEXT_BYTES)
    if data is None:
        return [], [Violation(contract.TRIALS_FILE, "", why or "not readable")], present
    transform = (lambda record: _rename_hyperparameters(record, aliases)) if aliases else None
    read = read_trials_bytes(data, contract.TRIALS_FILE, transform=transform)
    trials = []
    for record, line in zip(read.records, read.lines):
        trials.append(Trial(
            search=record["search"],
            trial_id=record["trial_id"],
            hyperparameters=dict(record["hyperparameters"]),
            status=record["status"],
            val_accuracy=record["val_accuracy"],
            val_loss=record["val_loss"],
            train_seconds=float(record["train_seconds"]),
            file=contract.TRIALS_FILE,
            line=line,
            reason=record.get("reason"),
        ))
    return trials, list(read.violations), present


def _rename_hyperparameters(record: dict[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """A trials.jsonl record with alias hyperparameter names renamed (the same record when none is an alias)."""
    hps = record.get("hyperparameters")
    if not isinstance(hps, dict):
        return record
    renamed = _rename_keys(hps, aliases)
    return record if renamed is hps else {**record, "hyperparameters": renamed}


# ---------------------------------------------------------------------------------------------
# KerasTuner project dirs


@dataclass(frozen=True)
class _Project:
    """One KerasTuner project dir: its search, declared space and completed trials, each with its problems."""

    search: str | None
    oracle_file: str
    space: Space | None
    space_problems: tuple[Violation, ...]
    trials: tuple[Trial, ...]
    trial_problems: tuple[Violation, ...]
    where: TunerProject | None = None


def _read_project(root: Path, folder: Path, aliases: Mapping[str, str], origin: str = "output") -> _Project:
    oracle_file = (folder / "oracle.json").relative_to(root).as_posix()
    oracle, why, _ = _read_json(folder / "oracle.json")
    problems: list[Violation] = []
    if why:
        problems.append(Violation(oracle_file, "", why))
    search = search_of_project(folder.relative_to(root), oracle)
    if search is None:
        problems.append(Violation(oracle_file, "", "cannot tell which search this KerasTuner project ran: "
                                                   "name its project dir grid or random"))
        return _Project(None, oracle_file, None, tuple(problems), (), ())
    trial_problems: list[Violation] = []
    trials: list[Trial] = []
    unknown: dict[str, str] = {}
    try:
        trial_dirs = sorted(d for d in folder.iterdir() if d.name.startswith("trial_") and d.is_dir() and not d.is_symlink())
    except OSError as exc:
        trial_dirs = []
        problems.append(Violation(oracle_file, "", f"its folder cannot be listed: {exc.strerror or exc}"))
    trial_dirs = trial_dirs[:MAX_FILES]
    read_bytes = 0
    for trial_dir in trial_dirs:
        rel = (trial_dir / "trial.json").relative_to(root).as_posix()
        if read_bytes > MAX_TUNER_BYTES:
            trial_problems.append(Violation(rel, "", f"the project's trial files add up to more than "
                                                     f"{MAX_TUNER_BYTES // 2**20} MiB; this one and the rest were "
                                                     "not read"))
            break
        doc, why, size = _read_json(trial_dir / "trial.json")
        read_bytes += size
        if why:
            trial_problems.append(Violation(rel, "", why))
            continue
        trial, found = _native_trial(search, doc, rel, aliases, unknown)
        trial_problems += found
        if trial is not None:
            trials.append(trial)
    for name, first in unknown.items():
        trial_problems.append(Violation(first, f"$.hyperparameters.values.{name}",
                                        f"'{name}' is not a canonical hyperparameter name; it is ignored "
                                        f"(use one of {', '.join(contract.HYPERPARAMETERS)})"))
    space, space_problems = None, []
    if isinstance(oracle, dict):
        space, space_problems = _space_from_oracle(search, oracle, aliases, oracle_file, len(trial_dirs))
    done = [t for t in trials if t.completed]
    best = max(done, key=lambda t: float(t.val_accuracy or 0.0)) if done else None
    oracle_class = oracle.get(ORACLE_CLASS_KEY) if isinstance(oracle, dict) else None
    where = TunerProject(search, origin, folder.relative_to(root).as_posix(),
                         oracle_class if isinstance(oracle_class, str) and oracle_class in ORACLE_SEARCHES else None,
                         best.file.rsplit("/", 1)[0] if best is not None else None, len(done),
                         best.val_accuracy if best is not None else None)
    return _Project(search, oracle_file, space, tuple(problems + space_problems), tuple(trials), tuple(trial_problems),
                    where)


def search_of_project(project: Path, oracle: Any) -> str | None:
    """The search a KerasTuner project ran: from the oracle class the sandbox recorded in its oracle.json, else from
    its dir name (or its parent's), else from the oracle's state.

    KerasTuner's own oracle.json names no tuner class (grader/gpu_site/grader_fallbacks.py adds
    it for runs in the grader's sandbox); only the Bayesian oracle (num_initial_points) and
    Hyperband (hyperband_iterations, counted as random search) add keys of their own, so grid and
    random runs outside the sandbox need a telling dir name.
    """
    if isinstance(oracle, dict) and oracle.get(ORACLE_CLASS_KEY) in ORACLE_SEARCHES:
        return ORACLE_SEARCHES[oracle[ORACLE_CLASS_KEY]]
    for name in reversed(project.parts):
        lowered = name.lower()
        for word, search in (("grid", "grid"), ("random", "random"), ("bayes", "bayesian"), ("manual", "manual")):
            if word in lowered:
                return search
    if isinstance(oracle, dict) and "num_initial_points" in oracle:
        return "bayesian"
    if isinstance(oracle, dict) and "hyperband_iterations" in oracle:
        return "random"
    return None


def _one_project_per_search(projects: list[_Project], problems: list[Violation]) -> list[_Project]:
    kept: dict[str, _Project] = {}
    for project in projects:
        if project.search is None:
            problems.extend(project.space_problems)
        elif project.search in kept:
            problems.append(Violation(project.oracle_file, "", f"a second KerasTuner project for the {project.search} "
                                                               f"search; only {kept[project.search].oracle_file} is read"))
        else:
            kept[project.search] = project
    return list(kept.values())


def _native_trial(search: str, doc: Any, rel: str, aliases: Mapping[str, str], unknown: dict[str, str]
                  ) -> tuple[Trial | None, list[Violation]]:
    """A COMPLETED KerasTuner trial.json as a Trial (None for other statuses or unusable files), and its problems."""
    if not isinstance(doc, dict):
        return None, [Violation(rel, "", "not a KerasTuner trial: expected a JSON object")]
    if doc.get("status") != "COMPLETED":
        return None, []
    values = doc.get("hyperparameters", {}).get("values") if isinstance(doc.get("hyperparameters"), dict) else None
    metrics = doc.get("metrics", {}).get("metrics") if isinstance(doc.get("metrics"), dict) else None
    trial_id = doc.get("trial_id")
    if not isinstance(values, dict) or not isinstance(metrics, dict) or not isinstance(trial_id, str):
        return None, [Violation(rel, "", "not a KerasTuner trial: it lacks trial_id, hyperparameters.values or metrics")]
    found: list[Violation] = []
    hps: dict[str, float] = {}
    for name, value in values.items():
        canonical = aliases.get(name, name)
        if isinstance(name, str) and name.startswith(TUNER_BOOKKEEPING):
            continue
        if canonical not in contract.HYPERPARAMETERS:
            unknown.setdefault(name, rel)
        elif not finite_number(value):
            found.append(Violation(rel, f"$.hyperparameters.values.{name}", f"must be a finite number, got {_show(value)}"))
        elif canonical not in hps:
            hps[canonical] = value
    accuracy = _observations(metrics.get("val_accuracy"))
    if not accuracy:
        return None, found + [Violation(rel, "$.metrics.metrics.val_accuracy",
                                        "no val_accuracy recorded: train with validation data")]
    if any(not finite_number(v) or not 0 <= v <= 1 for _, v in accuracy):
        bad = next(v for _, v in accuracy if not finite_number(v) or not 0 <= v <= 1)
        return None, found + [Violation(rel, "$.metrics.metrics.val_accuracy",
                                        f"val_accuracy {_show(bad)} is not a number in [0, 1]")]
    step, best = max(accuracy, key=lambda sv: sv[1])
    losses = dict(_observations(metrics.get("val_loss")))
    loss = losses.get(step)
    trial = Trial(search=search, trial_id=trial_id, hyperparameters=hps, status="COMPLETED", val_accuracy=float(best),
                  val_loss=float(loss) if finite_number(loss) else None, train_seconds=None, file=rel)
    return trial, found


def _observations(history: Any) -> list[tuple[Any, Any]]:
    """(step, value) pairs of a KerasTuner metric history ({"observations": [{"value": [x], "step": n}]})."""
    if not isinstance(history, dict) or not isinstance(history.get("observations"), list):
        return []
    out = []
    for obs in history["observations"]:
        if isinstance(obs, dict):
            value = obs.get("value")
            value = value[0] if isinstance(value, list) and len(value) == 1 else value
            step = obs.get("step")
            out.append((step if isinstance(step, (int, float, str)) else None, value))
    return out


def _space_from_oracle(search: str, oracle: Mapping[str, Any], aliases: Mapping[str, str], rel: str, n_trials: int
                       ) -> tuple[Space | None, list[Violation]]:
    """The space a KerasTuner oracle.json declares, read as a grid (grid search) or as ranges (the others)."""
    space_list = oracle.get("hyperparameters", {}).get("space") if isinstance(oracle.get("hyperparameters"), dict) else None
    if not isinstance(space_list, list):
        return None, [Violation(rel, "$.hyperparameters.space", "no search space recorded")]
    values: dict[str, tuple[Any, ...]] = {}
    ranges: dict[str, Range] = {}
    fixed: dict[str, Any] = {}
    problems: list[Violation] = []
    for i, entry in enumerate(space_list):
        where = f"$.hyperparameters.space[{i}]"
        try:
            kind, config = entry["class_name"], entry["config"]
            name = aliases.get(config["name"], config["name"])
            if name not in contract.HYPERPARAMETERS:
                continue
            if kind == "Fixed":
                fixed[name] = config["value"]
            elif kind == "Choice":
                choices = tuple(v for v in config["values"] if finite_number(v))
                values[name], ranges[name] = choices, Range.choice(*choices)
            elif kind in ("Int", "Float"):
                low, high, step = config["min_value"], config["max_value"], config.get("step")
                sampling = "log" if config.get("sampling") in ("log", "reverse_log") else "linear"
                ranges[name] = (Range.int(low, high, step=step, sampling=sampling) if kind == "Int"
                                else Range.float(low, high, sampling=sampling))
                if search == "grid":
                    if kind == "Float" and not step:
                        problems.append(Violation(rel, where, f"{name} is a Float without step, which a grid cannot list"))
                    else:
                        values[name] = _stepped(low, high, step or 1, as_int=kind == "Int")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Violation(rel, where, f"not a KerasTuner hyperparameter: {type(exc).__name__}"))
    try:
        if search == "grid":
            return GridSpace(values=values, fixed={k: v for k, v in fixed.items() if k not in values}), problems
        return RandomSpace(ranges=ranges, max_trials=max(1, n_trials),
                           fixed={k: v for k, v in fixed.items() if k not in ranges}), problems
    except ValueError as exc:
        return None, problems + [Violation(rel, "$.hyperparameters.space", str(exc))]


def _stepped(low: float, high: float, step: float, *, as_int: bool) -> tuple[float, ...]:
    if step <= 0 or high < low or (high - low) / step >= MAX_GRID_VALUES:
        raise ValueError("too many values")
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    return tuple(int(low + i * step) if as_int else round(low + i * step, 12) for i in range(count))


# ---------------------------------------------------------------------------------------------
# Trials against the declared spaces


def _mark_outside(trials: Sequence[Trial], spaces: Mapping[str, Space]) -> tuple[list[Trial], list[Violation]]:
    """Each trial with `outside` set to the hyperparameters its search's space does not allow, and a violation for each."""
    out: list[Trial] = []
    problems: list[Violation] = []
    for trial in trials:
        space = spaces.get(trial.search)
        found = [] if space is None else _outside(trial, space)
        for name, message in found:
            where = f"line {trial.line}: $.hyperparameters.{name}" if trial.line else f"$.hyperparameters.{name}"
            problems.append(Violation(trial.file, where, message))
        out.append(replace(trial, outside=tuple(name for name, _ in found)) if found else trial)
    return out, problems


def _outside(trial: Trial, space: Space) -> list[tuple[str, str]]:
    found = []
    for name, value in trial.hyperparameters.items():
        shown = _fmt(value)
        if name in space.fixed and finite_number(space.fixed[name]):
            if not same_value(value, space.fixed[name]):
                found.append((name, f"{name}={shown} differs from the {trial.search} search's fixed value "
                                    f"{_fmt(space.fixed[name])}"))
        elif isinstance(space, GridSpace) and name in space.values:
            if not any(same_value(value, v) for v in space.values[name]):
                found.append((name, f"{name}={shown} is not one of the declared grid values "
                                    f"{_listed_values(space.values[name])}"))
        elif isinstance(space, RandomSpace) and name in space.ranges:
            rng = space.ranges[name]
            if rng.type == "choice":
                if not any(same_value(value, v) for v in rng.values):
                    found.append((name, f"{name}={shown} is not one of the declared {trial.search} choices "
                                        f"{_listed_values(rng.values)}"))
            elif not rng.contains(value):
                found.append((name, f"{name}={shown} is outside the declared {trial.search} range "
                                    f"{_fmt(rng.min)}..{_fmt(rng.max)}"))
    return found


def same_value(a: Any, b: Any) -> bool:
    """Whether two hyperparameter values are the same (floats up to rounding in the 9th significant digit)."""
    if not finite_number(a) or not finite_number(b):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# comparison.csv


def _comparison(root: Path, trial_searches: set[str] | None
                ) -> tuple[dict[str, dict[str, str]] | None, list[Violation], str | None]:
    """The first row of each search in comparison.csv (None when it cannot be read), its violations, and its status.

    The status is None when the file has every contract column, else why it is not a comparison table.
    """
    name = contract.COMPARISON_FILE
    data, why = _read(root / name, MAX_TEXT_BYTES)
    if data is None:
        problems = [Violation(name, "", why or "not readable")]
        return None, problems, _first(problems, name) or "not readable"
    problems = check_comparison_bytes(data, trial_searches)
    try:
        rows = comparison_rows(data)
    except FileProblem:
        return None, problems, _first(problems, name) or "not readable"
    except csv.Error as exc:
        return None, problems, f"not valid CSV: {escaped_line(str(exc), 200)}"
    header = rows[0][1][:MAX_CSV_COLUMNS] if rows else []
    out: dict[str, dict[str, str]] = {}
    for _, cells in rows[1:]:
        row = dict(zip(header, cells))
        search = row.get("search")
        if search is not None and search not in out:
            out[search] = row
    missing = [c for c in contract.COMPARISON_COLUMNS
               if c not in header and c not in contract.OPTIONAL_COMPARISON_COLUMNS]
    status = f"lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}" if missing else None
    return out, problems, status


# ---------------------------------------------------------------------------------------------
# answers.yaml and the notebook's answers cell


def _answers(root: Path, aliases: Mapping[str, str], notebook: Path | None
             ) -> tuple[dict[str, Any] | None, str | None, list[Violation]]:
    """The answers (aliases applied), where they were read, and their violations."""
    name = contract.ANSWERS_FILE
    path = root / name
    if not (path.exists() or path.is_symlink()) and notebook is not None:
        return notebook_answers(notebook, aliases)
    data, why = _read(path, MAX_YAML_BYTES)
    if data is None:
        return None, None, [Violation(name, "", why or "not readable")]
    try:
        doc = load_answers(data)
    except BoundedParseError as exc:
        return None, None, [Violation(name, exc.where, exc.message)]
    if not isinstance(doc, dict):
        return None, None, check_answers_doc(doc) if doc is not None else [Violation(name, "", "file is empty")]
    renamed = _rename_answers(doc, aliases)
    return renamed, name, check_answers_doc(renamed)


def notebook_answers(notebook: Path, aliases: Mapping[str, str] | None = None
                     ) -> tuple[dict[str, Any] | None, str | None, list[Violation]]:
    """The answers in a notebook's cell tagged `answers`, where they were read ('<notebook> cell N'), and violations.

    A raw or markdown cell holds YAML (optionally in a ```yaml fence); a code cell assigns
    `ANSWERS = {...}`, read with ast.literal_eval and never executed.
    """
    name = notebook.name
    aliases = aliases or {}
    data, why = _read(notebook, MAX_NOTEBOOK_BYTES)
    if data is None:
        return None, None, [Violation(name, "", why or "not readable")]
    try:  # only cell sources are used: outputs may nest deeper and hold longer integers than answers may
        doc = load_json(data, max_bytes=MAX_NOTEBOOK_BYTES, max_int_digits=1000, max_depth=10_000)
    except BoundedParseError as exc:
        return None, None, [Violation(name, "", "not a notebook: " + (
            "not valid JSON" if exc.message.startswith(("not valid JSON", "not UTF-8")) else exc.message))]
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        return None, None, [Violation(name, "", "not a notebook: it has no cells")]
    tagged = [i for i, cell in enumerate(cells) if isinstance(cell, dict) and isinstance(cell.get("metadata"), dict)
              and isinstance(cell["metadata"].get("tags"), list) and ANSWERS_TAG in cell["metadata"]["tags"]]
    if not tagged:
        return None, None, [Violation(name, "", f"no cell is tagged {ANSWERS_TAG} and there is no answers.yaml")]
    index = tagged[0]
    where = f"cell {index}"
    problems = []
    if len(tagged) > 1:
        problems.append(Violation(name, f"cell {tagged[1]}", f"a second cell tagged {ANSWERS_TAG}; only cell {index} is read"))
    cell = cells[index]
    source = cell.get("source", "")
    text = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else (
        source if isinstance(source, str) else "")
    if cell.get("cell_type") == "code":
        answers, why = _literal_answers(text)
        if answers is None:
            return None, None, problems + [Violation(name, where, why)]
    else:
        fenced = re.search(r"```[ \t]*(?:ya?ml)?[ \t]*\n(.*?)```", text, re.DOTALL | re.IGNORECASE)
        text = fenced.group(1) if fenced else text
        try:
            answers = load_answers(text)
        except BoundedParseError:
            answers = None
        if not isinstance(answers, dict):
            found = check_answers_bytes(text.encode("utf-8")) if answers is None else check_answers_doc(answers)
            found = found or [Violation(contract.ANSWERS_FILE, "", "expected question: answer pairs")]
            return None, None, problems + [Violation(name, f"{where}: {v.where}".rstrip(": "), v.message) for v in found]
    renamed = _rename_answers({"contract_version": contract.CONTRACT_VERSION, **answers}, aliases)
    found = check_answers_doc(renamed)
    problems += [Violation(name, f"{where}: {v.where}".rstrip(": "), v.message) for v in found]
    return renamed, f"{name} {where}", problems


def _literal_answers(text: str) -> tuple[dict[str, Any] | None, str]:
    """The dict a code cell assigns to ANSWERS, read without running the cell; or None and why not.

    A cell longer than answers.yaml may be is refused unparsed: Python's parser needs hundreds of
    bytes of memory per byte of source.
    """
    if len(text) > MAX_YAML_BYTES:
        return None, f"the answers cell is longer than {MAX_YAML_BYTES // 1024} KiB; answers are short"
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return None, f"the answers cell is not valid Python: {type(exc).__name__}"
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == ANSWERS_VARIABLE for t in node.targets):
            value = node.value
    if value is None:
        return None, f"the answers cell does not assign {ANSWERS_VARIABLE} = {{...}}"
    try:
        answers = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None, f"{ANSWERS_VARIABLE} must be a literal dict (plain strings, numbers, lists), not computed"
    if not isinstance(answers, dict):
        return None, f"{ANSWERS_VARIABLE} must be a dict of question: answer, got {type(answers).__name__}"
    try:
        check_value(answers)
    except BoundedParseError as exc:
        return None, f"{ANSWERS_VARIABLE} holds {exc.message}"
    return {str(k): v for k, v in answers.items()}, ""


def _rename_answers(doc: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """doc with hyperparameter names in the choice answers written canonically (aliases, case, spaces)."""
    out = dict(doc)
    if isinstance(out.get("most_important_hyperparameter"), str):
        out["most_important_hyperparameter"] = canonical_name(out["most_important_hyperparameter"], aliases)
    if isinstance(out.get("hyperparameter_ranking"), list):
        out["hyperparameter_ranking"] = [canonical_name(v, aliases) if isinstance(v, str) else v
                                         for v in out["hyperparameter_ranking"]]
    if isinstance(out.get("better_search"), str):
        out["better_search"] = out["better_search"].strip().lower()
    return out


def canonical_name(value: str, aliases: Mapping[str, str] | None = None) -> str:
    """A hyperparameter name as written by a student ('Learning rate', 'lr'), in its canonical form if it has one."""
    aliases = aliases or {}
    key = value.strip()
    if key in aliases:
        return aliases[key]
    normal = re.sub(r"[\s-]+", "_", key.lower())
    return aliases.get(normal, normal)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _read(path: Path, limit: int) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file no larger than limit, or None and why not (a symlink is never followed)."""
    try:
        return read_regular(path, limit), None
    except FileProblem as exc:
        return None, str(exc)


def _read_json(path: Path) -> tuple[Any, str | None, int]:
    """The JSON value of a KerasTuner file read within grader.parse's bounds (or None and why not), and its size."""
    data, why = _read(path, MAX_TUNER_JSON_BYTES)
    if data is None:
        return None, why, 0
    try:
        doc = load_json(data, max_bytes=MAX_TUNER_JSON_BYTES)
    except BoundedParseError as exc:
        if exc.line is not None:
            return None, f"{exc.message}: line {exc.line} column {exc.column} (char {exc.pos})", len(data)
        return None, exc.message, len(data)
    if count_values(doc, MAX_JSON_VALUES) > MAX_JSON_VALUES:
        return None, f"holds more than {MAX_JSON_VALUES} values, more than the grader checks", len(data)
    return doc, None, len(data)


def _first(problems: Sequence[Violation], file: str) -> str | None:
    mine = next((p for p in problems if p.file == file), None)
    if mine is None:
        return None
    return f"{mine.where}: {mine.message}" if mine.where else mine.message


def _unique(problems: Iterable[Violation]) -> list[Violation]:
    seen: set[Violation] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _listed_values(values: Sequence[Any]) -> str:
    """'0.001, 0.01' — the first MAX_LISTED_VALUES values, then how many more."""
    shown = ", ".join(_fmt(v) for v in values[:MAX_LISTED_VALUES])
    return shown + (f" and {len(values) - MAX_LISTED_VALUES} more" if len(values) > MAX_LISTED_VALUES else "")


def _fmt(value: Any) -> str:
    """A hyperparameter value for a message: floats as %g, anything else by grader.parse.show_value (cut short)."""
    return f"{value:g}" if isinstance(value, float) else show_value(value)


def _show(value: Any) -> str:
    """A value for a message in JSON's spelling (true, null, "text"), at most 40 characters."""
    if isinstance(value, str):
        text = json.dumps(value[:41])
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    else:
        text = _fmt(value)
    return text if len(text) <= 40 else text[:37] + "..."
