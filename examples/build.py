"""Builds the example class in examples/submissions/ from the reference and the student template.

    python examples/build.py [DEST]

  reference/  the reference solution as a student would hand it in (tuning.py)
  notebook/   the same solution handed in as the notebook (assignment.ipynb + tuning.py)
  template/   the untouched starter repo
  partial/    a student who built the model and the grid search, but no random search and no answers
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "examples" / "submissions"


def _partial(solution: str) -> str:
    """The reference with the random search and the analysis left as the template's stubs, and run() doing the grid."""
    stubs = (ROOT / "student_template" / "tuning.py").read_text("utf-8")
    for name in ("random_search_space", "answer_questions"):
        pattern = re.compile(rf"^def {name}\(.*?(?=^# ----)", re.S | re.M)
        solution = pattern.sub(lambda _: pattern.search(stubs).group(0), solution)
    solution = solution.replace('    spaces["random"] = random_search_space(config.profile)\n', "")
    return solution.replace("report.merge_answers(answer_questions(trials), own_answers)",
                            "report.merge_answers({}, own_answers)")


def build(dest: Path = DEFAULT_DEST) -> Path:
    """(Re)create the four example submissions under dest."""
    if dest.exists():
        shutil.rmtree(dest)
    solution = (ROOT / "reference" / "tuning.py").read_text("utf-8")
    (dest / "reference").mkdir(parents=True)
    (dest / "reference" / "tuning.py").write_text(solution)
    (dest / "notebook").mkdir()
    (dest / "notebook" / "tuning.py").write_text(solution)
    shutil.copyfile(ROOT / "reference" / "assignment.ipynb", dest / "notebook" / "assignment.ipynb")
    shutil.copytree(ROOT / "student_template", dest / "template",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "outputs"))
    (dest / "partial").mkdir()
    (dest / "partial" / "tuning.py").write_text(_partial(solution))
    return dest


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST))
