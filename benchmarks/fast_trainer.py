"""Benchmark: the fast trainer (grader/fasttrain.py) against KerasTuner on the quick grid's configurations.

Trains the quick profile's grid (reference/tuning.py grid_search_space("quick"), 16 configurations) on the quick
profile's MNIST split, in this one run:
  1. with KerasTuner (reference.tuning.run_search, Keras 3 on the torch backend, this process, torch's threads);
  2. with KerasTuner again, seeded one higher: Keras against itself, the noise floor of one seed;
  3. with grader.fasttrain.train_many, one single-thread process per core;
  4. with grader.fasttrain.train_many in this process (workers=0, torch's threads);
and prints each configuration's validation accuracy by both, the mean of each (a bias would show there), the
largest and mean absolute difference in points of Keras against itself and of the fast trainer against Keras
(target <= 1.5), the wall times, the speed ratio against KerasTuner (target >= 3x) and the process-per-core ratio.

    KERAS_BACKEND=torch python benchmarks/fast_trainer.py [--configs N] [--seed S]

--configs N keeps the first N configurations (a grid of N trials for KerasTuner too), for CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from grader import fasttrain  # noqa: E402
from reference import tuning  # noqa: E402
from tunekit import data  # noqa: E402
from tunekit.config import RunConfig  # noqa: E402
from tunekit.spaces import GridSpace  # noqa: E402

TARGET_POINTS = 1.5
TARGET_SPEEDUP = 3.0
NAMES = ("learning_rate", "batch_size", "filters", "dropout")


def first_configs(space: GridSpace, n: int) -> GridSpace:
    """The grid's first n combinations as a grid KerasTuner walks in the same order (n must be a prefix size)."""
    combos = space.combinations()[:n]
    varied = {k: tuple(dict.fromkeys(c[k] for c in combos)) for k in space.values}
    sub = GridSpace(values={k: v for k, v in varied.items() if len(v) > 1},
                    fixed={**space.fixed, **{k: v[0] for k, v in varied.items() if len(v) == 1}})
    if sub.size != n:
        raise SystemExit(f"fast_trainer.py: error: --configs {n} is not a prefix of the grid that is itself a grid "
                         f"(try 1, 2, 4, 8 or {space.size})")
    return sub


def keras_grid(space: GridSpace, ds: data.TrainVal, seed: int) -> tuple[dict, float]:
    """The grid run by KerasTuner as the reference runs it: each configuration's trials.jsonl record, and the wall time."""
    from tunekit.recorder import TrialLog

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(out=Path(tmp), profile="quick", seed=seed, allow_download=False)
        start = time.perf_counter()
        tuning.run_search("grid", space, ds, config)
        seconds = time.perf_counter() - start
        return ({fasttrain.Config.from_hyperparameters(r["hyperparameters"]).key(): r
                 for r in TrialLog(Path(tmp) / "trials.jsonl").read()}, seconds)


def label(values: dict) -> str:
    return " ".join(f"{k}={values[k]:g}" for k in NAMES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16, help="how many of the quick grid's configurations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    space = tuning.grid_search_space("quick")
    if not 1 <= args.configs <= space.size:
        parser.error(f"--configs must be between 1 and {space.size}")
    space = first_configs(space, args.configs)
    train_size, val_size = tuning.PROFILE_DATA["quick"]
    ds = data.load_train_val("mnist", train_size=train_size, val_size=val_size, seed=args.seed, shrink_to_fit=True)
    cores = fasttrain.default_workers()
    print(f"{args.configs} quick-grid configurations, {len(ds.x_train)} train / {len(ds.x_val)} validation MNIST "
          f"images, torch {torch.__version__}, {cores} cores, {torch.get_num_threads()} torch threads")

    records, keras_s = keras_grid(space, ds, args.seed)
    other_seed, _ = keras_grid(space, ds, args.seed + 1)  # Keras against itself: the noise floor of one seed
    assert len(records) == len(other_seed) == args.configs, (len(records), len(other_seed))

    configs = [fasttrain.Config.from_hyperparameters(values) for values in space.combinations()]
    start = time.perf_counter()
    outcomes = fasttrain.train_many(configs, ds, seed=args.seed, device="cpu")
    per_core_s = time.perf_counter() - start
    start = time.perf_counter()
    fasttrain.train_many(configs, ds, seed=args.seed, device="cpu", workers=0)
    single_s = time.perf_counter() - start

    print(f"{'configuration':52} {'keras':>7} {'fast':>7} {'diff pts':>8}")
    diffs = []
    for values, outcome in zip(space.combinations(), outcomes):
        keras_acc = records[outcome.config.key()]["val_accuracy"]
        diffs.append(100 * abs(keras_acc - outcome.val_accuracy))
        print(f"{label(values):52} {keras_acc:7.4f} {outcome.val_accuracy:7.4f} {diffs[-1]:8.2f}")
    worst = max(diffs)
    mean_keras = sum(r["val_accuracy"] for r in records.values()) / len(records)
    mean_fast = sum(o.val_accuracy for o in outcomes) / len(outcomes)
    print(f"mean val accuracy: keras {mean_keras:.4f}, fast {mean_fast:.4f} "
          f"(fast - keras {100 * (mean_fast - mean_keras):+.2f} points)")
    noise = [100 * abs(records[k]["val_accuracy"] - other_seed[k]["val_accuracy"]) for k in records]
    print(f"KerasTuner with seed {args.seed + 1} against seed {args.seed}: largest difference {max(noise):.2f} points, "
          f"mean difference {sum(noise) / len(noise):.2f} points (the noise floor of one seed)")
    verdict = "met" if worst <= TARGET_POINTS else "NOT met"
    print(f"largest difference: {worst:.2f} points (target <= {TARGET_POINTS} points: {verdict}); mean difference "
          f"{sum(diffs) / len(diffs):.2f} points")
    print(f"wall: KerasTuner {keras_s:.2f} s, fast trainer {per_core_s:.2f} s ({cores} single-thread processes), "
          f"fast trainer in one process {single_s:.2f} s")
    speed = keras_s / per_core_s
    print(f"speed vs KerasTuner: {speed:.2f}x (target >= {TARGET_SPEEDUP:.1f}x: {'met' if speed >= TARGET_SPEEDUP else 'NOT met'})")
    print(f"one process per core vs one process: {single_s / per_core_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
