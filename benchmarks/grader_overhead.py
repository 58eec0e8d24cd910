"""Benchmark: the grader's own seconds per submission, for scripts and notebooks, sandboxed and not, and --jobs 2 vs 1.

For each case it grades N trivial submissions and prints
  overhead per submission = (batch wall time - N x the submission's own run time) / N
where the submission's own run time is measured in the same run by executing the same
trivial script (python) or notebook (nbclient, one kernel) directly, without the grader.
It also times a hanging submission against a 5-second box.

    python benchmarks/grader_overhead.py [--n 20]

Targets on a 2-core machine: <= 1.0 s per script, <= 2.0 s per notebook, box held within 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader import grade  # noqa: E402
from grader.result import read_result  # noqa: E402
from grader.sandbox import bwrap_usable  # noqa: E402

SCRIPT = "print('trivial submission')\n"


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('trivial submission')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_batch(folder: Path, kind: str, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        student = folder / f"student{i:02d}"
        student.mkdir()
        if kind == "script":
            (student / "tuning.py").write_text(SCRIPT)
        else:
            nbformat.write(notebook(), student / "assignment.ipynb")
    return folder


def rubric(path: Path, time_limit: float) -> Path:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc.update(time_limit_s=time_limit, checks=[])
    path.write_text(json.dumps(doc))
    return path


def direct_run(kind: str, work: Path, repeat: int = 3) -> float:
    """The submission's own run time without the grader (the fastest of a few runs)."""
    best = float("inf")
    for i in range(repeat):
        folder = work / f"direct-{kind}-{i}"
        folder.mkdir(parents=True)
        if kind == "script":
            (folder / "tuning.py").write_text(SCRIPT)
            cmd = [sys.executable, "tuning.py"]
        else:
            nbformat.write(notebook(), folder / "assignment.ipynb")
            cmd = [sys.executable, "-c", "import nbformat, nbclient; nb = nbformat.read('assignment.ipynb', 4); "
                                         "nbclient.NotebookClient(nb, kernel_name='python3').execute()"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def grade_batch(subs: Path, rubric_path: Path, out: Path, *, jobs: int, isolation: str) -> float | str:
    """Wall seconds for grading the batch, or why this isolation cannot run here."""
    start = time.perf_counter()
    summary = grade.main(submissions=[subs], rubric=rubric_path, out=out, gpus="none", jobs=jobs, isolation=isolation,
                         console=Console(file=io.StringIO()))
    wall = time.perf_counter() - start
    failed = [s for s, status in summary.statuses.items() if status != "completed"]
    if failed:
        return read_result(out / failed[0] / "result.json").message
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="submissions per batch")
    args = parser.parse_args()
    usable, why = bwrap_usable()
    modes = ["bwrap", "rlimits"] if usable else ["rlimits"]
    if not usable:
        print(f"bubblewrap not usable ({why}): measuring the rlimits fallback only")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rubric_path = rubric(work / "rubric.json", 60)
        own = {kind: direct_run(kind, work) for kind in ("script", "notebook")}
        print(f"own run time (direct, no grader): script {own['script']:.2f} s, notebook {own['notebook']:.2f} s")
        print(f"{'case':34} {'wall s':>8} {'overhead s/sub':>15}")
        walls = {}
        for kind in ("script", "notebook"):
            subs = make_batch(work / f"subs-{kind}", kind, args.n)
            for mode in modes:
                for jobs in (1, 2):
                    wall = grade_batch(subs, rubric_path, work / f"out-{kind}-{mode}-{jobs}", jobs=jobs, isolation=mode)
                    if isinstance(wall, str):
                        print(f"{kind + ', ' + mode + ', --jobs ' + str(jobs):34} not measured: {wall}")
                        continue
                    walls[(kind, mode, jobs)] = wall
                    overhead = f"{(wall - args.n * own[kind]) / args.n:15.2f}" if jobs == 1 else f"{'-':>15}"
                    print(f"{kind + ', ' + mode + ', --jobs ' + str(jobs):34} {wall:8.2f} {overhead}")
        for kind in ("script", "notebook"):
            for mode in modes:
                if (kind, mode, 1) not in walls or (kind, mode, 2) not in walls:
                    continue
                print(f"speed-up of --jobs 2 over --jobs 1 ({kind}, {mode}): "
                      f"{walls[(kind, mode, 1)] / walls[(kind, mode, 2)]:.2f}x")
        hang = work / "subs-hang" / "hangs"
        hang.mkdir(parents=True)
        (hang / "tuning.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
        limit = 5.0
        for mode in modes:
            out = work / f"out-hang-{mode}"
            grade.main(submissions=[hang.parent], rubric=rubric(work / "hang.json", limit), out=out, gpus="none",
                       isolation=mode, console=Console(file=io.StringIO()))
            res = read_result(out / "hangs" / "result.json")
            if res.status == "sandbox_error":
                print(f"time box ({mode}): not measured: {res.message}")
                continue
            print(f"time box ({mode}): limit {limit:g} s, stopped after {res.timings.run_s:.2f} s "
                  f"({res.timings.run_s - limit:+.2f} s), status {res.status}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
