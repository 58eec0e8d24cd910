"""Rubric v1: load a JSON rubric, validate it against its schema, and expose it as a frozen dataclass."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from grader.contract import SEARCHES
from grader.errors import GraderError
from grader.jsonio import schema_errors

SHIPPED = Path(__file__).resolve().parent / "rubrics"  # package data: `--rubric quick` means SHIPPED/quick.json
DEFAULT_SEARCHES = ("grid", "random")  # the searches a rubric asks for when it names none


class RubricError(GraderError, ValueError):
    """A rubric that cannot be used; `problems` lists each one with its JSON path."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid rubric {path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


@dataclass(frozen=True)
class Check:
    """One rubric check: what it judges (kind), what it is worth, who sees it."""

    id: str
    kind: str
    points: float
    title: str
    visibility: str = "visible"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rubric:
    """A whole rubric, plus the hash that decides whether earlier results still stand.

    ``searches`` are the searches the submission is asked to run (GRADER_SEARCHES), in the contract's order.
    """

    path: Path
    assignment: str
    dataset: str
    profile: str
    time_limit_s: float
    entry_points: tuple[str, ...]
    aliases: Mapping[str, str]
    limits: Mapping[str, Any]
    checks: tuple[Check, ...]
    raw: Mapping[str, Any]
    hash: str
    searches: tuple[str, ...] = DEFAULT_SEARCHES

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)


def rubric_problems(doc: Any) -> list[str]:
    """Every problem with a parsed rubric document, each with its JSON path (empty when it is valid)."""
    problems = schema_errors(doc, "rubric")
    if problems:
        return problems
    seen: set[str] = set()
    for i, check in enumerate(doc["checks"]):
        if check["id"] in seen:
            problems.append(f"$.checks[{i}].id: duplicate check id {check['id']!r}")
        seen.add(check["id"])
    return problems


def shipped_rubrics() -> tuple[str, ...]:
    """The names of the rubrics installed with the grader (quick, full, ...), sorted."""
    return tuple(sorted(p.stem for p in SHIPPED.glob("*.json"))) if SHIPPED.is_dir() else ()


def resolve_rubric(name_or_path: str | Path) -> Path:
    """A rubric file: name_or_path when it is an existing file, else the shipped rubric of that name.

    RubricError when neither exists, naming the shipped rubrics (a student's copy of the
    grader ships none: its repository carries rubrics/quick.json instead).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_rubrics()
    if str(name_or_path) in shipped:
        return SHIPPED / f"{name_or_path}.json"
    known = f"the rubrics shipped with the grader are {', '.join(shipped)}" if shipped else "no rubric ships with this grader"
    raise RubricError(path, [f"cannot read it: no such file, and {known}"])


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric file; raise RubricError listing what is wrong."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RubricError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise RubricError(path, [f"byte {exc.start}: not UTF-8 text"]) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RubricError(path, [f"line {exc.lineno} column {exc.colno}: not JSON: {exc.msg}"]) from None
    except RecursionError:
        raise RubricError(path, ["nested too deeply to be a rubric"]) from None
    problems = rubric_problems(doc)
    if problems:
        raise RubricError(path, problems)
    checks = tuple(Check(c["id"], c["kind"], float(c["points"]), c["title"], c.get("visibility", "visible"),
                         c.get("params", {})) for c in doc["checks"])
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return Rubric(
        path=path,
        assignment=doc["assignment"],
        dataset=doc["dataset"],
        profile=doc["profile"],
        time_limit_s=float(doc["time_limit_s"]),
        entry_points=tuple(doc["entry_points"]),
        aliases=dict(doc.get("aliases", {})),
        limits=dict(doc.get("limits", {})),
        checks=checks,
        raw=doc,
        hash="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
        searches=tuple(s for s in SEARCHES if s in doc.get("searches", DEFAULT_SEARCHES)),
    )
