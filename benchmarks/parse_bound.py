"""Benchmark: the grader's own CPU time reading a hostile 16 MiB trials.jsonl, against reading the reference run.

Writes a flood into a temp output dir (a copy of tests/fixtures/outputs/reference_quick
whose trials.jsonl is replaced by 16 MiB of mixed lines: a giant history, then `{}`,
junk, 5000-digit integers, deeply nested arrays and valid-looking trials), then times
grader.evidence.gather on it and, in the same run, on the untouched reference fixture
(the baseline). Prints both times, their ratio, and PASS/FAIL against the target
(the flood read in under 5 s).

    KERAS_BACKEND=torch python benchmarks/parse_bound.py [--repeat N] [--mib 16] [--target 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.evidence import gather  # noqa: E402

REFERENCE = ROOT / "tests" / "fixtures" / "outputs" / "reference_quick"
ALIASES = {"lr": "learning_rate"}


def flood_lines(reference_line: str) -> list[bytes]:
    """One cycle of the flood's kinds of line: each costs the grader something different."""
    valid = json.loads(reference_line)
    lines = [
        b"{}",  # ten schema violations
        b"this is not json at all",
        b'{"contract_version": 1, "search": "grid", "trial_id": "x", "hyperparameters": {"lr": ' + b"9" * 5000 + b"}}",
        b"[" * 5000 + b"]" * 5000,  # nested too deeply
    ]
    for i in range(20):  # valid-looking trials, checked in full (each cycle repeats their ids)
        lines.append(json.dumps({**valid, "trial_id": f"flood{i}", "hyperparameters": {
            **valid["hyperparameters"], "learning_rate": 0.001 * (i + 1)}}).encode())
    return lines


def write_flood(out: Path, mib: int) -> int:
    """Copy the reference fixture to out with a trials.jsonl of exactly mib MiB of flood; its size.

    The first line holds a 20,000-epoch history (a schema check per value); the cycles after
    it stay under the grader's value budget, so reading runs to its line limit, the slowest case.
    """
    shutil.copytree(REFERENCE, out)
    first = (REFERENCE / "trials.jsonl").read_text().splitlines()[0]
    giant = json.dumps({**json.loads(first), "trial_id": "giant", "history": {"loss": [0.5] * 20_000}}).encode()
    cycle = b"\n".join(flood_lines(first)) + b"\n"
    size = mib * 2**20
    data = (giant + b"\n" + cycle * (size // len(cycle) + 1))[:size]
    (out / "trials.jsonl").write_bytes(data)
    return len(data)


def timed(path: Path, repeat: int) -> tuple[float, int, int]:
    """The best of repeat gather() times on path, with its trial and problem counts."""
    best, trials, problems = float("inf"), 0, 0
    for _ in range(repeat):
        start = time.process_time()
        ev = gather(path, aliases=ALIASES)
        best = min(best, time.process_time() - start)
        trials, problems = len(ev.trials), len(ev.problems)
    return best, trials, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported (default 3)")
    parser.add_argument("--mib", type=int, default=16, help="size of the flood in MiB (default 16)")
    parser.add_argument("--target", type=float, default=5.0, help="seconds the flood may take (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parse-bound-") as tmp:
        flood = Path(tmp) / "flood"
        size = write_flood(flood, args.mib)
        base_s, base_trials, base_problems = timed(REFERENCE, args.repeat)
        flood_s, flood_trials, flood_problems = timed(flood, args.repeat)
    print(f"baseline  reference_quick        {base_s:8.3f} s CPU  ({base_trials} trials, {base_problems} problems)")
    print(f"flood     {size / 2**20:.0f} MiB trials.jsonl   {flood_s:8.3f} s CPU  "
          f"({flood_trials} trials, {flood_problems} problems)")
    print(f"ratio     flood / baseline       {flood_s / base_s:8.1f}x")
    ok = flood_s < args.target
    print(f"{'PASS' if ok else 'FAIL'}: the flood was read in {flood_s:.2f} s (target < {args.target:g} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
