"""Build the wheel of `grader` and `tunekit` that a starter repo ships, byte for byte the same for the same sources.

A student's `pip install -r requirements.txt` must resolve on any machine, and this
project is published on no registry, so `grader make-template` places this wheel in the
starter repo (``wheels/``) and names it in requirements.txt; `--check` compares bytes,
so the build must be reproducible: entries in sorted order, a fixed timestamp, fixed
modes, no build tool in between. Everything comes from pyproject.toml (name, version,
dependencies, extras, console scripts, package data) and the package folders.

The wheel's version is the project's version plus a local label made from a hash of
its contents (``0.1.0+g1a2b3c4d``), so a regenerated starter repo upgrades a student's
installed copy instead of being taken for the same release.

What never goes in: instructor rubrics (``grader/rubrics/``: the full rubric's hidden
checks), bytecode, caches. The starter repo carries its own student copy of the rubric.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grader.errors import GraderError

WHEEL_DIR = "wheels"  # where a starter repo keeps it
EXCLUDED_DATA = ("grader/rubrics/",)  # instructor-only package data
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
TAG = "py3-none-any"


class WheelError(GraderError, ValueError):
    """pyproject.toml does not describe a wheel this module can build; one line naming the field."""


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name (name-version-tag.whl), its bytes and the requirement line naming it."""

    filename: str
    content: bytes

    def requirement(self) -> str:
        """The requirements.txt line for this wheel kept in a starter repo's wheels/ folder."""
        return f"./{WHEEL_DIR}/{self.filename}"


@dataclass(frozen=True)
class Project:
    """What pyproject.toml says the wheel holds."""

    name: str
    version: str
    summary: str
    requires_python: str
    dependencies: tuple[str, ...]
    extras: tuple[tuple[str, tuple[str, ...]], ...]
    scripts: tuple[tuple[str, str], ...]
    packages: tuple[str, ...]
    package_data: tuple[tuple[str, tuple[str, ...]], ...]


def read_project(root: Path) -> Project:
    """The build's inputs from root/pyproject.toml; WheelError names a missing field."""
    path = root / "pyproject.toml"
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WheelError(f"{path}: cannot read it ({exc})") from None
    project = doc.get("project", {})
    for field in ("name", "version"):
        if not isinstance(project.get(field), str):
            raise WheelError(f"{path}: [project] {field} is missing")
    setuptools = doc.get("tool", {}).get("setuptools", {})
    patterns = setuptools.get("packages", {}).get("find", {}).get("include", [])
    packages = tuple(sorted({p.rstrip("*") for p in patterns if (root / p.rstrip("*") / "__init__.py").is_file()}))
    if not packages:
        raise WheelError(f"{path}: [tool.setuptools.packages.find] include names no package folder")
    return Project(
        name=project["name"],
        version=project["version"],
        summary=project.get("description", ""),
        requires_python=project.get("requires-python", ""),
        dependencies=tuple(project.get("dependencies", [])),
        extras=tuple((k, tuple(v)) for k, v in sorted(project.get("optional-dependencies", {}).items())),
        scripts=tuple(sorted(project.get("scripts", {}).items())),
        packages=packages,
        package_data=tuple((k, tuple(v)) for k, v in sorted(setuptools.get("package-data", {}).items())),
    )


def package_files(root: Path, project: Project) -> list[str]:
    """The files the wheel holds, relative to root: every package's .py files and its declared data, sorted."""
    found: set[str] = set()
    for package in project.packages:
        for path in (root / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found.add(path.relative_to(root).as_posix())
    data = dict(project.package_data)
    for package in project.packages:
        for pattern in data.get(package, ()):
            for path in (root / package).glob(pattern):
                if path.is_file():
                    found.add(path.relative_to(root).as_posix())
    return sorted(name for name in found if not name.startswith(EXCLUDED_DATA))


def build_wheel(root: Path) -> Wheel:
    """The wheel of the project at root (see the module docstring)."""
    project = read_project(root)
    files = [(name, (root / name).read_bytes()) for name in package_files(root, project)]
    label = hashlib.sha256(b"".join(f"{n}\0{len(c)}\0".encode() + c for n, c in files)).hexdigest()[:8]
    version = f"{project.version}+g{label}"
    dist = f"{_normalise(project.name)}-{version}"
    meta = _metadata(project, version)
    files += [
        (f"{dist}.dist-info/METADATA", meta.encode("utf-8")),
        (f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nGenerator: grader.wheel\nRoot-Is-Purelib: true\n"
                                    f"Tag: {TAG}\n".encode()),
        (f"{dist}.dist-info/entry_points.txt", _entry_points(project).encode("utf-8")),
        (f"{dist}.dist-info/top_level.txt", "".join(f"{p}\n" for p in project.packages).encode()),
    ]
    record = "".join(f"{name},sha256={_digest(content)},{len(content)}\n" for name, content in files)
    files.append((f"{dist}.dist-info/RECORD", (record + f"{dist}.dist-info/RECORD,,\n").encode("utf-8")))
    return Wheel(f"{dist}-{TAG}.whl", reproducible_zip((name, content, 0o644) for name, content in files))


def reproducible_zip(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    """(name, content, Unix mode) entries as a zip, in the order given: a fixed time, the modes kept, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.create_system = 3  # Unix, so unzip applies the modes
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content, compresslevel=9)
    return buffer.getvalue()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _digest(content: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode("ascii")


def _metadata(project: Project, version: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project.name}", f"Version: {version}"]
    if project.summary:
        lines.append(f"Summary: {project.summary}")
    if project.requires_python:
        lines.append(f"Requires-Python: {project.requires_python}")
    lines += [f"Requires-Dist: {_requirement(dep)}" for dep in project.dependencies]
    for extra, deps in project.extras:
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {_requirement(dep)}; extra == "{extra}"' for dep in deps]
    return "\n".join(lines) + "\n"


def _requirement(dep: str) -> str:
    """A dependency as a Requires-Dist value; one with an environment marker is refused (an extra would need merging)."""
    if ";" in dep:
        raise WheelError(f"dependency '{dep}' has an environment marker, which this build does not support")
    return dep.strip()


def _entry_points(project: Project) -> str:
    if not project.scripts:
        return ""
    return "[console_scripts]\n" + "".join(f"{name} = {target}\n" for name, target in project.scripts)
