"""Soak test: SIGKILL the grader at random moments of a mixed batch, re-run after each kill, then run to the end.

    .venv/bin/python benchmarks/soak_kill.py [--kills 10] [--seed 0] [--time-limit 20] [--jobs 2] [--out DIR]

The batch (copied into a temp folder): a quick good script, a crash, a hang with children, a
notebook, and hostile submissions from tests/fixtures/hostile_submissions (a setsid survivor, a
fork bomb, FIFOs as the notebook runner's files, a 1500-deep tree, mode 000 folders, a 2 GiB
shared mapping, a 10 MB stdout line). Each round starts the real CLI (`python -m grader.cli
grade ... --jobs 2 --time-limit 20`), waits a random 1 s to --max-delay (25) s, sends SIGKILL to
the grader's own process only (its sandboxes must die with it), waits 3 s, and checks. After
each kill one submission is edited (in turn: quick ones, the trainer, the hang), so the next
round always has work to do. A last round runs to completion.

Printed at the end, and the exit status is 1 when any of the first three is non-zero:

  results lost          a result.json present before a kill, absent or changed afterwards although
                        its submission did not change (a sandbox_error result, retried by design,
                        is exempt)
  duplicated results    students whose grades.csv row count is not 1 after the last round
  leftover processes    after each kill + 3 s: processes whose command line, cwd or environment
                        mentions the OUT folder, and uid-65534 processes started since the soak
                        began (those whose environment places them in another grader's run are
                        shown as foreign and not counted)
  total seconds

`--kills 2` runs in about 2 minutes on 2 cores, the default 10 kills in about 6.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from processes import SANDBOX_UID, batch_processes  # noqa: E402 - the tests' finder of leftover processes

SUBMISSIONS = ROOT / "tests" / "fixtures" / "submissions"
HOSTILE = ROOT / "tests" / "fixtures" / "hostile_submissions"
SETTLE_S = 10.0  # after a kill, how long the sandboxes get to die before what is left is counted
BATCH = {  # student id -> fixture
    "good_script": SUBMISSIONS / "good_script",
    "raises_at_import": SUBMISSIONS / "raises_at_import",
    "hangs_with_children": SUBMISSIONS / "hangs_with_children",
    "good_notebook": SUBMISSIONS / "good_notebook",
    "setsid_survivor": HOSTILE / "setsid_survivor_swaps_models_symlink",
    "fork_bomb": HOSTILE / "A1_fork_bomb_for_10s",
    "fifo_as_notebook_summary": HOSTILE / "fifo_as_notebook_summary",
    "deep_folder_tree_1500": HOSTILE / "deep_folder_tree_1500",
    "chmod_000": HOSTILE / "chmod_000_files_and_folders",
    "mmap_2gib_shared": HOSTILE / "mmap_2gib_shared",
    "stdout_10mb_line": HOSTILE / "stdout_osc52_and_10mb_line",
}
# Edited in turn after each kill, so every round has work: quick ones and slow ones (training, the time box).
EDITABLE = ("raises_at_import", "good_script", "deep_folder_tree_1500", "hangs_with_children", "stdout_10mb_line",
            "chmod_000")
LIMITS = {"memory_mb": 1024, "disk_mb": 64, "tmpfs_mb": 32, "file_size_mb": 16, "max_processes": 64,
          "max_model_mb": 5, "eval_time_limit_s": 60}


def make_batch(folder: Path) -> Path:
    subs = folder / "submissions"
    subs.mkdir(parents=True)
    for student, fixture in BATCH.items():
        shutil.copytree(fixture, subs / student, ignore=shutil.ignore_patterns("__pycache__"))
    return subs


def make_rubric(path: Path) -> Path:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc["limits"].update(LIMITS)
    path.write_text(json.dumps(doc))
    return path


def submission_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def results(out: Path) -> dict[str, bytes]:
    found = {}
    for path in out.glob("*/result.json"):
        try:
            found[path.parent.name] = path.read_bytes()
        except OSError:
            continue
    return found


def status_of(data: bytes) -> str | None:
    try:
        return json.loads(data).get("status")
    except ValueError:
        return None


def kill_ours(out: Path, since: float) -> None:
    """SIGKILL, by PID, what this soak left behind (only processes mentioning its own OUT folder)."""
    needle = str(out).encode()
    for line in batch_processes(out, since)[0]:
        pid = int(line.split()[1])
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes() or needle in Path(f"/proc/{pid}/environ").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="random SIGKILLs before the last round (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=20.0, help="each submission's box, seconds")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-delay", type=float, default=25.0, help="latest kill moment after a round starts, s")
    parser.add_argument("--out", type=Path, help="work folder (default: a temp folder, removed at the end)")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    began = time.time()
    work = args.out or Path(tempfile.mkdtemp(prefix="soak-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    subs = make_batch(work)
    rubric = make_rubric(work / "rubric.json")
    out = (work / "out").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="torch", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", str(rubric), "--out", str(out),
           "--gpus", "none", "--jobs", str(args.jobs), "--time-limit", f"{args.time_limit:g}"]
    print(f"soak: {args.kills} kills, seed {args.seed}, {len(BATCH)} submissions, out {out}", flush=True)

    ledger: dict[str, tuple[bytes, str]] = {}  # student -> (result bytes, submission hash when they first appeared)
    lost: set[str] = set()
    leftovers = 0
    edits = 0

    def audit(when: str) -> None:
        now = results(out)
        for student, (data, digest) in ledger.items():
            unchanged = submission_hash(subs / student) == digest
            if unchanged and status_of(data) != "sandbox_error" and now.get(student) != data:
                lost.add(student)
                print(f"  LOST {when}: {student} ({'absent' if student not in now else 'changed'})", flush=True)
        for student, data in now.items():  # a new result is of the submission as it is now (edits come after audits)
            if student not in ledger or ledger[student][0] != data:
                ledger[student] = (data, submission_hash(subs / student))

    log = open(work / "grader.log", "ab")  # noqa: SIM115 - shared by every round's grader, closed below
    try:
        for k in range(1, args.kills + 1):
            delay = rng.uniform(1.0, args.max_delay)
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
            while proc.poll() is None and time.monotonic() - started < delay:
                time.sleep(0.05)
            finished_first = proc.poll() is not None
            before = results(out)
            audit(f"before kill {k}")
            if not finished_first:
                os.kill(proc.pid, signal.SIGKILL)  # the grader only: its sandboxes must die with it
            proc.wait()
            settle_by = time.monotonic() + SETTLE_S
            while (ours_foreign := batch_processes(out, began))[0] and time.monotonic() < settle_by:
                time.sleep(0.2)  # a killed PID namespace takes a moment to empty, longer on a busy machine
            ours, foreign = ours_foreign
            leftovers += len(ours)
            audit(f"after kill {k}")
            what = "finished before the kill" if finished_first else f"killed at {delay:.1f} s"
            print(f"round {k}: {what}; {len(before)} results before; {len(ours)} leftover processes"
                  + (f", {len(foreign)} foreign uid-{SANDBOX_UID} ignored" if foreign else ""), flush=True)
            for line in ours:
                print(f"  LEFTOVER {line}", flush=True)
            kill_ours(out, began)
            student = EDITABLE[(k - 1) % len(EDITABLE)]
            entry = next(p for p in (subs / student).iterdir() if p.suffix in (".py", ".ipynb"))
            if entry.suffix == ".py":
                with open(entry, "a") as fh:
                    fh.write(f"# soak edit {k}\n")
                edits += 1

        started = time.monotonic()
        final = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, timeout=1800, check=False)
        print(f"last round: exit {final.returncode} in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(1.0)
        ours, _ = batch_processes(out, began)
        leftovers += len(ours)
        for line in ours:
            print(f"  LEFTOVER after the last round {line}", flush=True)
        audit("after the last round")
    finally:
        log.close()
        kill_ours(out, began)

    book = pd.read_csv(out / "grades.csv", dtype=str, keep_default_na=False) if (out / "grades.csv").exists() else None
    rows = book["student_id"].value_counts().to_dict() if book is not None else {}
    duplicated = sorted(s for s in BATCH if rows.get(s, 0) != 1)
    statuses = {s: status_of(d) for s, d in sorted(results(out).items())}
    print("statuses: " + ", ".join(f"{s}={v}" for s, v in statuses.items()))
    print(f"edits between rounds: {edits}")
    print(f"results lost: {len(lost)}" + (f" ({', '.join(sorted(lost))})" if lost else ""))
    print(f"duplicated results: {len(duplicated)}" + (f" ({', '.join(duplicated)})" if duplicated else ""))
    print(f"leftover processes: {leftovers}")
    print(f"total seconds: {time.time() - began:.1f}")
    if args.out is None:  # rm copes with the 1500-deep tree (shutil.rmtree recurses past Python's limit)
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    bad = lost or duplicated or leftovers or final.returncode not in (0, 3)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
