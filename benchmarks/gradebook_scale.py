"""Benchmark: the grader's own CPU seconds and peak memory per submission at 100 vs 1,000 submissions (flat within 20 %).

Each size is graded by the real engine (``grade.main(..., gpus="none", jobs=2)``, the real
sandbox) in a fresh child process, so that the figures are that grader process's own:

  wall s             the batch's wall time
  own CPU s          user + sys of the grader's process (getrusage RUSAGE_SELF, all its threads),
                     not of its children (the sandboxes)
  own CPU ms/sub     own CPU s / N
  marginal ms/sub    (own CPU of N submissions - own CPU of 1) / (N - 1): the per-submission cost
                     without the batch's fixed cost (rubric, data split, imports), which would
                     otherwise hide growth at the larger size
  peak RSS MiB       ru_maxrss of the grader's process
  update CPU ms      LiveGradebook.update alone with N students held: the median CPU time of 20 calls

Every submission is a trivial ``tuning.py`` that prints a line and exits, so each result goes
through all of the grader's own per-result work: the sandboxed run, the model evaluation (no
models), the rubric's checks, result.json, feedback for both audiences and a gradebook update.
The last lines compare the largest size with the smallest (target: marginal ms/sub within
1.20x) and the update's CPU time alone at each size's row count.

    python benchmarks/gradebook_scale.py [--sizes 100,1000] [--jobs 2] [--isolation auto]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPT = "print('trivial submission')\n"
TARGET = 1.20
UPDATES = 20  # LiveGradebook.update calls timed per size


def make_batch(folder: Path, n: int) -> Path:
    """n students, each with a trivial tuning.py."""
    folder.mkdir(parents=True)
    for i in range(n):
        student = folder / f"student{i:04d}"
        student.mkdir()
        (student / "tuning.py").write_text(SCRIPT)
    return folder


def rubric(path: Path, time_limit: float) -> Path:
    """The quick rubric, checks included, with a shorter time box."""
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc.update(time_limit_s=time_limit)
    path.write_text(json.dumps(doc))
    return path


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def grade_size(work: Path, n: int, *, jobs: int, isolation: str) -> dict[str, float | int | str]:
    """In this process: grade 1 submission (the fixed cost), then n; the figures of both (child side)."""
    from rich.console import Console

    from grader import grade

    rubric_path = rubric(work / "rubric.json", 60)
    figures: dict[str, float | int | str] = {"n": n}
    for label, count in (("one", 1), ("all", n)):
        subs = make_batch(work / f"subs-{label}", count)
        start_cpu, start = own_cpu(), time.perf_counter()
        summary = grade.main(submissions=[subs], rubric=rubric_path, out=work / f"out-{label}", gpus="none",
                             jobs=jobs, isolation=isolation, console=Console(file=io.StringIO()))
        figures[f"{label}_wall_s"] = time.perf_counter() - start
        figures[f"{label}_cpu_s"] = own_cpu() - start_cpu
        statuses = sorted(set(summary.statuses.values()))
        figures[f"{label}_statuses"] = ",".join(statuses)
        if len(summary.statuses) != count:
            raise SystemExit(f"graded {len(summary.statuses)} of {count} submissions")
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def time_updates(work: Path, rows: int) -> float:
    """CPU milliseconds per LiveGradebook.update with `rows` students held (the median of UPDATES calls)."""
    from grader.gradebook import LiveGradebook
    from grader.result import read_result, write_result

    sample = next((work / "out-all").glob("student*/result.json"))
    result = read_result(sample)
    assert result is not None
    out = work / f"book-{rows}"
    for i in range(rows):
        write_result(out / f"s{i:05d}" / "result.json", replace(result, student_id=f"s{i:05d}"))
    book = LiveGradebook(out)
    times = []
    for i in range(UPDATES):
        start = time.thread_time()
        book.update(replace(result, student_id=f"s{i * rows // UPDATES:05d}", message=f"update {i}"))
        times.append(time.thread_time() - start)
    return sorted(times)[len(times) // 2] * 1000


def child(args: argparse.Namespace) -> int:
    work = Path(args.work)
    figures = grade_size(work, args.child, jobs=args.jobs, isolation=args.isolation)
    figures["update_ms"] = time_updates(work, args.child)
    print(json.dumps(figures))
    return 0


def run_child(work: Path, n: int, args: argparse.Namespace) -> dict:
    folder = work / f"size-{n}"
    folder.mkdir()
    proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--work", str(folder), "--jobs", str(args.jobs),
                           "--isolation", args.isolation], capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"size {n} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return figures


def marginal_ms(f: dict) -> float:
    return (f["all_cpu_s"] - f["one_cpu_s"]) / (f["n"] - 1) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="comma list of batch sizes (each at least 2)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs for the grader")
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "rlimits"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be a comma list of numbers, not {args.sizes!r}")
    if len(sizes) < 2 or sizes[0] < 2:
        parser.error("--sizes needs at least two sizes, each at least 2")

    print(f"grading trivial submissions with the real engine (--gpus none --jobs {args.jobs}, "
          f"isolation {args.isolation}); own = the grader's process, not its sandboxes")
    print(f"{'size':>6} {'wall s':>8} {'own CPU s':>10} {'own CPU ms/sub':>15} {'marginal ms/sub':>16} "
          f"{'peak RSS MiB':>13} {'update CPU ms':>14}  statuses")
    results = {}
    with tempfile.TemporaryDirectory(prefix="gradebook-scale-") as tmp:
        for n in sizes:
            f = run_child(Path(tmp), n, args)
            results[n] = f
            print(f"{n:6d} {f['all_wall_s']:8.1f} {f['all_cpu_s']:10.2f} {f['all_cpu_s'] / n * 1000:15.1f} "
                  f"{marginal_ms(f):16.1f} {f['peak_rss_mib']:13.1f} {f['update_ms']:14.2f}  {f['all_statuses']}",
                  flush=True)
    small, large = results[sizes[0]], results[sizes[-1]]
    ratio = marginal_ms(large) / marginal_ms(small)
    verdict = "flat" if ratio <= TARGET else "NOT flat"
    print(f"marginal own CPU per submission, {sizes[-1]} vs {sizes[0]}: {ratio:.2f}x "
          f"(target <= {TARGET:.2f}x: {verdict})")
    print(f"peak RSS, {sizes[-1]} vs {sizes[0]}: {large['peak_rss_mib'] / small['peak_rss_mib']:.2f}x")
    print(f"LiveGradebook.update alone (CPU): {sizes[0]} rows {small['update_ms']:.2f} ms, {sizes[-1]} rows "
          f"{large['update_ms']:.2f} ms ({large['update_ms'] / small['update_ms']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
