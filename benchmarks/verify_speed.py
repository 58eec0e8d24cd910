"""Benchmark: `grader verify`'s re-training (distinct configurations once, the fast trainer) against naive
per-student Keras re-training, in one run.

A synthetic class: each of --students students claims a best grid configuration and a best random configuration,
both drawn (seeded) from the quick profile's 16-point grid, as a class running the same grid would. Both ways
re-train every claim on the quick profile's MNIST split:
  1. naive: for each student and each claim, the reference's Keras model (reference.tuning.build_model) fitted with
     the claim's batch size and epochs, one after another (what a per-student re-run of the claims would cost);
  2. verify's way: the distinct configurations once, by grader.fasttrain.train_many (a process per core).
It prints the claims, the distinct configurations, both wall times and the speed ratio (target >= 5x here).

    KERAS_BACKEND=torch python benchmarks/verify_speed.py [--students N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

from grader import contract, fasttrain  # noqa: E402
from reference import tuning  # noqa: E402
from tunekit import data  # noqa: E402

TARGET_SPEEDUP = 5.0


def keras_fit(values: dict, ds: data.TrainVal, seed: int) -> float:
    """The claim re-trained as the reference trains a trial; its best epoch's val accuracy."""
    keras.utils.set_random_seed(seed)
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    model = tuning.build_model(hp, ds.x_train.shape[1:], 10)
    history = model.fit(ds.x_train, ds.y_train, batch_size=values["batch_size"], epochs=values["epochs"],
                        validation_data=(ds.x_val, ds.y_val), verbose=0)
    return max(history.history["val_accuracy"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.students < 1:
        parser.error("--students must be at least 1")
    grid = tuning.grid_search_space("quick").combinations()
    pick = random.Random(args.seed)
    claims = [{**contract.BASELINE_DEFAULTS, **pick.choice(grid)} for _ in range(args.students) for _search in
              ("grid", "random")]
    configs = [fasttrain.Config.from_hyperparameters(c) for c in claims]
    distinct = {c.key() for c in configs}
    train_size, val_size = contract.PROFILE_SPLITS["quick"]
    ds = data.load_train_val("mnist", train_size=train_size, val_size=val_size, seed=0, shrink_to_fit=True)
    print(f"{args.students} students, {len(claims)} claims, {len(distinct)} distinct configurations, "
          f"{len(ds.x_train)} train / {len(ds.x_val)} validation MNIST images, {fasttrain.default_workers()} cores")

    start = time.perf_counter()
    for values in claims:
        keras_fit(values, ds, args.seed)
    naive_s = time.perf_counter() - start
    print(f"naive per-student Keras re-training: {len(claims)} fits in {naive_s:.1f} s")

    start = time.perf_counter()
    fasttrain.train_many(configs, ds, seed=args.seed)
    fast_s = time.perf_counter() - start
    print(f"verify (distinct configurations once, fast trainer): {len(distinct)} trainings in {fast_s:.1f} s")
    ratio = naive_s / fast_s
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET_SPEEDUP:g}x) {'met' if ratio >= TARGET_SPEEDUP else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
