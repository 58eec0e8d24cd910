"""The `make-template` verb: generate the student starter repo from the reference, replacing solution regions by TODO stubs."""

from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from grader.errors import GraderError
from grader.wheel import WHEEL_DIR, WheelError, build_wheel

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?::\s*(?P<hint>.+?))?\s*$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
STARTER_DIR = "starter"  # reference/starter/* is copied to the template's root as it is
STUBBED = ("tuning.py", "assignment.ipynb")  # reference files whose solution regions become stubs
IGNORED = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", "outputs"}
REQUIREMENTS = "requirements.txt"
GRADER_LINE = "cnn-tuning-grader"  # the starter's requirements.txt line that becomes the wheel or --grader-requirement
PROJECT = Path(__file__).resolve().parents[1]  # the checkout whose grader and tunekit the wheel is built from


class TemplateError(GraderError, ValueError):
    """A reference file whose solution markers cannot be turned into stubs."""


@dataclass(frozen=True)
class TemplateFile:
    """One file of the generated template: its path relative to the template root, and its bytes."""

    path: str
    content: bytes


def stub_python(source: str, *, where: str) -> str:
    """Replace each `# BEGIN SOLUTION` ... `# END SOLUTION` region with a NotImplementedError naming the TODO."""
    hints = _function_hints(source)
    out: list[str] = []
    lines = source.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = BEGIN.match(lines[i].rstrip("\n"))
        if not match:
            if END.match(lines[i].rstrip("\n")):
                raise TemplateError(f"{where}:{i + 1}: '# END SOLUTION' without a '# BEGIN SOLUTION' before it")
            out.append(lines[i])
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not END.match(lines[i].rstrip("\n")):
            if BEGIN.match(lines[i].rstrip("\n")):
                raise TemplateError(f"{where}:{i + 1}: '# BEGIN SOLUTION' inside another solution region")
            i += 1
        if i == len(lines):
            raise TemplateError(f"{where}:{start + 1}: '# BEGIN SOLUTION' is never closed by '# END SOLUTION'")
        hint = match.group("hint") or hints.get(start + 1) or "complete this part"
        out.append(f'{match.group("indent")}raise NotImplementedError({json.dumps("TODO(student): " + hint)})\n')
        i += 1
    return "".join(out)


def _function_hints(source: str) -> dict[int, str]:
    """For each line inside a function, the innermost function's docstring summary (the TODO's default text)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    functions = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
                       key=lambda n: n.lineno)
    hints: dict[int, str] = {}
    for node in functions:  # outer functions first, so inner ones overwrite their lines
        doc = ast.get_docstring(node)
        if doc:
            summary = doc.strip().splitlines()[0].rstrip(".")
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                hints[line] = f"{node.name}: {summary}"
    return hints


def stub_notebook(text: str, *, where: str) -> str:
    """The notebook with each code cell's solution regions stubbed and every output and count cleared."""
    nb = json.loads(text)
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        stubbed = stub_python(source, where=f"{where} cell {index}")
        cell["source"] = stubbed.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def student_rubric(rubric: Path) -> bytes:
    """The rubric as students may see it: hidden checks and calibration results removed."""
    doc = json.loads(rubric.read_text("utf-8"))
    doc.pop("calibration", None)
    doc["checks"] = [c for c in doc.get("checks", []) if c.get("visibility", "visible") != "hidden"]
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def requirements(text: str, grader_line: str, *, where: str) -> str:
    """The starter's requirements.txt with its `cnn-tuning-grader` line replaced by grader_line."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == GRADER_LINE]
    if len(hits) != 1:
        raise TemplateError(f"{where}: needs exactly one line '{GRADER_LINE}' (replaced by how to install the grader)")
    lines[hits[0]] = grader_line + "\n"
    return "".join(lines)


def grader_files(grader_requirement: str | None) -> tuple[str, list[TemplateFile]]:
    """How the starter repo installs the grader: its requirements line, and the wheel file it ships (none for a URL)."""
    if grader_requirement is not None:
        if not grader_requirement.strip() or "\n" in grader_requirement:
            raise TemplateError("--grader-requirement must be one requirements.txt line")
        return grader_requirement.strip(), []
    try:
        wheel = build_wheel(PROJECT)
    except WheelError as exc:
        raise TemplateError(f"{exc}; without a checkout of the project, pass --grader-requirement to name "
                            f"where students install the grader from") from None
    return wheel.requirement(), [TemplateFile(f"{WHEEL_DIR}/{wheel.filename}", wheel.content)]


def plan_template(reference: Path, rubric: Path | None = None, *,
                  grader_requirement: str | None = None) -> list[TemplateFile]:
    """Every file the template must hold, decided from the reference (and the quick rubric); nothing is written.

    The grader reaches students as a wheel built from this checkout and shipped in the
    template's wheels/ (the default), or as the requirement line an instructor gives.
    """
    grader_line, files = grader_files(grader_requirement)
    if rubric is not None:
        files.append(TemplateFile(f"rubrics/{rubric.name}", student_rubric(rubric)))
    for name in STUBBED:
        source = reference / name
        if not source.is_file():
            raise TemplateError(f"{source}: missing (the template is generated from it)")
        text = source.read_text("utf-8")
        stubbed = stub_notebook(text, where=str(source)) if name.endswith(".ipynb") else stub_python(text, where=str(source))
        files.append(TemplateFile(name, stubbed.encode("utf-8")))
    starter = reference / STARTER_DIR
    for path in sorted(_walk(starter)):
        rel = path.relative_to(starter).as_posix()
        content = path.read_bytes()
        if rel == REQUIREMENTS:
            content = requirements(content.decode("utf-8"), grader_line, where=str(path)).encode("utf-8")
        files.append(TemplateFile(rel, content))
    return files


def _walk(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        if path.is_file() and not IGNORED.intersection(path.relative_to(root).parts) and path.suffix != ".pyc":
            yield path


def out_of_date(files: list[TemplateFile], dest: Path) -> list[str]:
    """What differs between the planned template and dest: one line per file, naming it."""
    problems = []
    planned = {f.path for f in files}
    for f in files:
        target = dest / f.path
        if not target.is_file():
            problems.append(f"{target}: missing")
        elif target.read_bytes() != f.content:
            problems.append(f"{target}: out of date")
    for path in sorted(_walk(dest)):
        rel = path.relative_to(dest).as_posix()
        if rel not in planned:
            problems.append(f"{path}: not generated from the reference (remove it or add it to the reference)")
    return problems


def write_template(files: list[TemplateFile], dest: Path) -> None:
    """Make dest hold exactly the planned files (stale files removed)."""
    planned = {f.path for f in files}
    if dest.is_dir():
        for path in list(_walk(dest)):
            if path.relative_to(dest).as_posix() not in planned:
                path.unlink()
        for cache in [p for p in dest.rglob("*") if p.is_dir() and p.name in IGNORED]:
            shutil.rmtree(cache, ignore_errors=True)
    for f in files:
        target = dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != f.content:
            target.write_bytes(f.content)


def main(*, reference: Path, dest: Path, rubric: Path | None = None, check: bool = False,
         grader_requirement: str | None = None) -> list[str]:
    """Generate dest from reference, or with check=True only list what is out of date (empty: in sync)."""
    files = plan_template(reference, rubric, grader_requirement=grader_requirement)
    if check:
        return out_of_date(files, dest)
    write_template(files, dest)
    return []
