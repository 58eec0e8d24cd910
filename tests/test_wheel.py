"""grader.wheel: the wheel a starter repo ships is reproducible, complete, free of instructor rubrics, and pip takes it."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from grader.wheel import WheelError, build_wheel, read_project

SMALL_PYPROJECT = """\
[project]
name = "tiny-course-tool"
version = "2.0.1"
description = "a tiny project"
requires-python = ">=3.11"
dependencies = ["numpy>=1.26"]

[project.optional-dependencies]
dev = ["pytest>=8"]

[project.scripts]
tiny = "tiny.cli:main"

[tool.setuptools.packages.find]
include = ["tiny*"]

[tool.setuptools.package-data]
tiny = ["data/*.json"]
"""


def small_project(root: Path) -> Path:
    """A project with one package, a data file, a console script and a stray bytecode file."""
    (root / "tiny" / "data").mkdir(parents=True)
    (root / "tiny" / "__pycache__").mkdir()
    (root / "pyproject.toml").write_text(SMALL_PYPROJECT)
    (root / "tiny" / "__init__.py").write_text('"""Tiny."""\n')
    (root / "tiny" / "cli.py").write_text("def main():\n    print('tiny ran')\n")
    (root / "tiny" / "data" / "table.json").write_text("{}\n")
    (root / "tiny" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    return root


def members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_the_same_sources_give_the_same_bytes_and_a_changed_source_a_new_version(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    first, second = build_wheel(root), build_wheel(root)
    assert first == second
    assert first.filename.startswith("tiny_course_tool-2.0.1+g") and first.filename.endswith("-py3-none-any.whl")
    (root / "tiny" / "cli.py").write_text("def main():\n    print('tiny ran again')\n")
    assert build_wheel(root).filename != first.filename


def test_the_wheel_holds_the_packages_their_data_and_metadata_but_no_bytecode(tmp_path: Path) -> None:
    wheel = build_wheel(small_project(tmp_path))
    files = members(wheel.content)
    dist = wheel.filename.split("-py3")[0]
    assert sorted(files) == sorted(["tiny/__init__.py", "tiny/cli.py", "tiny/data/table.json",
                                    f"{dist}.dist-info/METADATA", f"{dist}.dist-info/WHEEL",
                                    f"{dist}.dist-info/entry_points.txt", f"{dist}.dist-info/top_level.txt",
                                    f"{dist}.dist-info/RECORD"])
    metadata = files[f"{dist}.dist-info/METADATA"].decode().splitlines()
    assert "Requires-Dist: numpy>=1.26" in metadata
    assert 'Requires-Dist: pytest>=8; extra == "dev"' in metadata
    assert files[f"{dist}.dist-info/entry_points.txt"] == b"[console_scripts]\ntiny = tiny.cli:main\n"
    for line in files[f"{dist}.dist-info/RECORD"].decode().splitlines()[:-1]:
        name, digest, size = line.split(",")
        expected = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(files[name])), name


def test_pip_installs_it_and_its_console_script_runs(tmp_path: Path) -> None:
    wheel = build_wheel(small_project(tmp_path / "src"))
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.content)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(path)], check=True, capture_output=True, text=True, timeout=120)
    proc = subprocess.run([str(target / "bin" / "tiny")], env={"PYTHONPATH": str(target)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout == "tiny ran\n"


def test_the_projects_wheel_leaves_the_instructor_rubrics_out_and_declares_pyprojects_dependencies() -> None:
    wheel = build_wheel(ROOT)
    files = members(wheel.content)
    assert not [name for name in files if name.startswith("grader/rubrics/")]
    assert "grader/cli.py" in files and "tunekit/data.py" in files and "grader/schemas/rubric.schema.json" in files
    assert not [name for name in files if name.startswith(("reference/", "tests/"))]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    metadata = next(content for name, content in files.items() if name.endswith("/METADATA")).decode()
    assert [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line] == declared


def test_a_project_without_pyproject_is_named_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(WheelError, match=r"pyproject.toml: cannot read it"):
        read_project(tmp_path)
