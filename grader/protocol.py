"""What the grader's sandboxed children report back: the notebook runner's summary and the model evaluator's report.

Both sides import this module: the child writes ``to_json()``; the grader reads the
file back with ``from_json`` after copying it out of the sandbox. A child shares its
sandbox with the submission's own code, which can overwrite anything the child writes,
so ``from_json`` treats the document as untrusted input: exact types, bounded counts
and string lengths, no extra keys, and a ValueError with one line naming the first
problem. Reading never yields more than the caps below, whatever the file holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from grader.parse import show_value
from grader.result import Architecture, architecture_json

SUMMARY_VERSION = 1
EVAL_REPORT_VERSION = 1
MAX_ERRORS = 1000  # cell errors kept from a summary
MAX_TEXT = 2000  # characters kept of any string a child reports
MAX_CELLS = 1_000_000
# An evaluator's architecture report, at most (result.schema.json's evaluations[].architecture holds the same bounds):
MAX_LAYERS_LISTED = 200  # class names listed
MAX_LAYER_NAME = 100  # characters of one class name
MAX_LAYER_COUNT = 100_000  # layers counted (the evaluator stops counting there)
MAX_PARAMS = 10**12  # parameters
MAX_INPUT_AXES = 8  # axes of the input shape
MAX_AXIS = 10**6  # size of one axis

Status = Literal["completed", "cell_errors", "kernel_died", "cell_timeout"]
STATUSES: tuple[str, ...] = get_args(Status)


@dataclass(frozen=True)
class CellError:
    """A cell that ended in an error; cell_index counts the cells of the ORIGINAL notebook, from 0."""

    cell_index: int
    ename: str
    evalue: str


@dataclass(frozen=True)
class RunSummary:
    """What happened when a notebook ran (written by grader.nbrun).

    status: ``kernel_died`` (also when it never started: kernel_died_cell is then None)
    over ``cell_timeout`` over ``cell_errors`` over ``completed``. cells_total: the
    original notebook's code cells that are run (not blank, not tagged skip-execution);
    cells_executed: how many of them the kernel was asked to run, the erroring,
    timed-out and kernel-killing ones included. errors: every cell that ended in an
    error, in order; a timeout is a ``CellTimeoutError``, a dead kernel a
    ``DeadKernelError``. timed_out_cell: the first cell that timed out.
    """

    status: Status
    cells_total: int
    cells_executed: int
    errors: tuple[CellError, ...]
    timed_out_cell: int | None
    kernel_died_cell: int | None
    parameters_cell_found: bool

    def to_json(self) -> dict[str, Any]:
        """The summary as the versioned JSON object written to the summary file."""
        return {
            "version": SUMMARY_VERSION,
            "status": self.status,
            "cells_total": self.cells_total,
            "cells_executed": self.cells_executed,
            "errors": [{"cell_index": e.cell_index, "ename": e.ename, "evalue": e.evalue} for e in self.errors],
            "timed_out_cell": self.timed_out_cell,
            "kernel_died_cell": self.kernel_died_cell,
            "parameters_cell_found": self.parameters_cell_found,
        }

    @classmethod
    def from_json(cls, obj: Any) -> RunSummary:
        """Read back what to_json wrote, checking every field; ValueError (one line) if it is not such a summary."""
        if isinstance(obj, dict) and obj.get("version") != SUMMARY_VERSION:
            raise ValueError(f"nbrun summary version {show_value(obj.get('version'))} is not {SUMMARY_VERSION}")
        if isinstance(obj, dict) and obj.get("status") not in STATUSES:
            raise ValueError(f"nbrun summary status {show_value(obj.get('status'))} is not one of {', '.join(STATUSES)}")
        doc = _object(obj, "nbrun summary", ("version", "status", "cells_total", "cells_executed", "errors",
                                             "timed_out_cell", "kernel_died_cell", "parameters_cell_found"))
        errors = doc["errors"]
        if not isinstance(errors, list) or len(errors) > MAX_ERRORS:
            raise ValueError(f"nbrun summary errors must be a list of at most {MAX_ERRORS} cell errors")
        parsed = []
        for i, item in enumerate(errors):
            e = _object(item, f"nbrun summary errors[{i}]", ("cell_index", "ename", "evalue"))
            parsed.append(CellError(_count(e["cell_index"], f"errors[{i}].cell_index"),
                                    _text(e["ename"], f"errors[{i}].ename"), _text(e["evalue"], f"errors[{i}].evalue")))
        if not isinstance(doc["parameters_cell_found"], bool):
            raise ValueError("nbrun summary parameters_cell_found must be true or false")
        return cls(
            status=doc["status"],
            cells_total=_count(doc["cells_total"], "cells_total"),
            cells_executed=_count(doc["cells_executed"], "cells_executed"),
            errors=tuple(parsed),
            timed_out_cell=_optional(doc["timed_out_cell"], _count, "timed_out_cell"),
            kernel_died_cell=_optional(doc["kernel_died_cell"], _count, "kernel_died_cell"),
            parameters_cell_found=doc["parameters_cell_found"],
        )


@dataclass(frozen=True)
class EvalReport:
    """What the evaluator (grader.evalchild) says of one model: None when its predictions were written, else why not;
    and the model's architecture when it loaded (None when it did not, or when it could not be described).

    ``architecture`` is optional in the document (a report without it reads as None). Its class names are kept as
    written, cut to MAX_LAYER_NAME characters: they are escaped where they are shown.
    """

    error: str | None
    architecture: Architecture | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": EVAL_REPORT_VERSION, "error": self.error,
                **({} if self.architecture is None else {"architecture": architecture_json(self.architecture)})}

    @classmethod
    def from_json(cls, obj: Any) -> EvalReport:
        """Read back what to_json wrote; ValueError (one line) if it is not such a report."""
        if isinstance(obj, dict) and obj.get("version") != EVAL_REPORT_VERSION:
            raise ValueError(f"evaluation report version {show_value(obj.get('version'))} is not {EVAL_REPORT_VERSION}")
        keys = ("version", "error", "architecture") if isinstance(obj, dict) and "architecture" in obj else (
            "version", "error")
        doc = _object(obj, "evaluation report", keys)
        return cls(error=_optional(doc["error"], _text, "error"),
                   architecture=_optional(doc.get("architecture"), _architecture, "architecture"))


def _architecture(value: Any, where: str) -> Architecture:
    """An evaluator's architecture report, every field checked against the bounds above."""
    doc = _object(value, where, ("input_shape", "layers", "layer_count", "conv2d", "params"))
    shape = doc["input_shape"]
    if shape is not None and (not isinstance(shape, list) or len(shape) > MAX_INPUT_AXES):
        raise ValueError(f"{where}.input_shape must be a list of at most {MAX_INPUT_AXES} axis sizes, or null")
    axes = None if shape is None else tuple(
        _optional(axis, lambda v, w: _bounded(v, w, MAX_AXIS), f"{where}.input_shape[{i}]")
        for i, axis in enumerate(shape))
    layers = doc["layers"]
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS_LISTED:
        raise ValueError(f"{where}.layers must be a list of at most {MAX_LAYERS_LISTED} class names")
    names = []
    for i, name in enumerate(layers):
        if not isinstance(name, str):
            raise ValueError(f"{where}.layers[{i}] must be a string")
        names.append(name[:MAX_LAYER_NAME])
    count = _bounded(doc["layer_count"], f"{where}.layer_count", MAX_LAYER_COUNT)
    if count < len(names):
        raise ValueError(f"{where}.layer_count {count} is less than the {len(names)} layers listed")
    conv2d = _bounded(doc["conv2d"], f"{where}.conv2d", count)
    return Architecture(input_shape=axes, layers=tuple(names), layer_count=count, conv2d=conv2d,
                        params=_bounded(doc["params"], f"{where}.params", MAX_PARAMS))


def _bounded(value: Any, where: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"{where} must be a whole number from 0 to {most}")
    return value


def _object(obj: Any, what: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    extra = [k for k in obj if k not in keys]
    if extra:
        raise ValueError(f"{what} has an unknown field {show_value(extra[0])}")
    return obj


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CELLS:
        raise ValueError(f"{where} must be a whole number from 0 to {MAX_CELLS}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string")
    return value[:MAX_TEXT]


def _optional(value: Any, read: Any, where: str) -> Any:
    return None if value is None else read(value, where)


