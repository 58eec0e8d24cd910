"""JSON at the grader's boundaries: atomic writes and validation against the bundled JSON Schemas."""

from __future__ import annotations

import json
import math
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write obj as JSON to path so that a reader sees the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write text (UTF-8) to path atomically; see write_bytes_atomic."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write data to path through a temp file in the same folder, fsync'd, made world-readable, then renamed over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """The bundled schema grader/schemas/<name>.schema.json."""
    text = resources.files("grader").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(obj: Any, name: str) -> list[str]:
    """Every violation of schema <name> by obj, each as '<json path>: <message>', in document order."""
    validator = jsonschema.Draft202012Validator(load_schema(name))
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{json_path(e.absolute_path)}: {e.message}" for e in errors]


def json_path(parts: Any) -> str:
    """A JSONPath-like rendering of a path: $.grid.values.learning_rate[0]."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def finite_number(value: Any) -> bool:
    """True for an int or float that is neither NaN nor infinite, nor an integer too large for a float (bools are not
    numbers here). Never raises, whatever a submission wrote."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
