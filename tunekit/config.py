"""The run's settings: command-line flags first, then the grader's GRADER_* variables, then defaults.

Whether the run may download its dataset is decided here, once: on a student's machine
(GRADER_DATA_DIR unset) it may, into the Keras cache; under the grader it never does
(see tunekit.data.may_download). tunekit.data does the downloading.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from grader.contract import (
    ALWAYS_SEARCHED,
    DATASETS,
    ENV_DATA_DIR,
    ENV_DATASET,
    ENV_OUTPUT_DIR,
    ENV_PROFILE,
    ENV_SEARCHES,
    ENV_SEED,
    ENV_TIME_BUDGET,
    PROFILES,
    SEARCHES,
)
from tunekit.data import may_download


@dataclass(frozen=True)
class RunConfig:
    """Where to write, what profile and dataset, how long, which seed, which searches, whether data may be downloaded.

    searches are in the contract's order: grid and random always, then bayesian and manual when asked.

    allow_download defaults to tunekit.data.may_download(): True on a student's machine,
    False under the grader (GRADER_DATA_DIR set), read when the RunConfig is made.
    """

    out: Path
    profile: str = "quick"
    dataset: str = "mnist"
    time_budget_s: float | None = None
    seed: int = 0
    data_dir: Path | None = None
    searches: tuple[str, ...] = ALWAYS_SEARCHED
    allow_download: bool = field(default_factory=may_download)


def parse_args(argv: Sequence[str] | None = None, *, description: str = "") -> RunConfig:
    """Read flags and environment into a RunConfig (flags win over GRADER_* variables).

    The dataset is --dataset, else GRADER_DATASET (the rubric's dataset, set by the grader), else mnist.
    The searches are --searches, else GRADER_SEARCHES (comma-separated, set by the grader from the rubric), else
    grid,random; grid and random always run, bayesian and manual when listed (bayesian also with --bayesian).
    """
    env = os.environ
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=env.get(ENV_OUTPUT_DIR, "outputs"), help="output dir (GRADER_OUTPUT_DIR)")
    parser.add_argument("--profile", choices=PROFILES, default=env.get(ENV_PROFILE, "quick"), help="GRADER_PROFILE")
    parser.add_argument("--dataset", choices=DATASETS, default=env.get(ENV_DATASET) or "mnist", help="GRADER_DATASET")
    parser.add_argument("--time-budget", type=float, default=_float(env.get(ENV_TIME_BUDGET)),
                        help="wall-clock seconds for the whole run (GRADER_TIME_BUDGET_S)")
    parser.add_argument("--seed", type=int, default=int(env.get(ENV_SEED, "0")), help="GRADER_SEED")
    parser.add_argument("--data-dir", default=env.get(ENV_DATA_DIR) or None, help="dataset folder (GRADER_DATA_DIR)")
    parser.add_argument("--searches", default=env.get(ENV_SEARCHES) or "grid,random",
                        help=f"comma-separated searches to run, of {','.join(SEARCHES)} ({ENV_SEARCHES})")
    parser.add_argument("--bayesian", action="store_true", help="also run Bayesian optimization")
    parser.add_argument("--no-download", action="store_true",
                        help="never download the dataset (without this, a missing dataset is downloaded into the Keras "
                             "cache, except under the grader)")
    args = parser.parse_args(argv)
    if args.profile not in PROFILES:
        parser.error(f"{ENV_PROFILE} must be one of {', '.join(PROFILES)}, not {args.profile!r}")
    if args.dataset not in DATASETS:
        parser.error(f"{ENV_DATASET} must be one of {', '.join(DATASETS)}, not {args.dataset!r}")
    names = [name.strip() for name in args.searches.split(",") if name.strip()] + ["bayesian"] * args.bayesian
    try:
        searches = searches_to_run(names)
    except ValueError as err:
        parser.error(str(err))
    return RunConfig(
        out=Path(args.out),
        profile=args.profile,
        dataset=args.dataset,
        time_budget_s=args.time_budget,
        seed=args.seed,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        searches=searches,
        allow_download=not args.no_download and may_download(),
    )


def searches_to_run(names: Sequence[str]) -> tuple[str, ...]:
    """The searches a run does for the names asked (GRADER_SEARCHES, a notebook's SEARCHES): grid and random always,
    bayesian and manual when named, in the contract's order; ValueError for a name that is not a search."""
    unknown = [name for name in names if name not in SEARCHES]
    if unknown:
        raise ValueError(f"each search in {ENV_SEARCHES} must be one of {', '.join(SEARCHES)}, not {unknown[0]!r}")
    return tuple(s for s in SEARCHES if s in ALWAYS_SEARCHED or s in names)


def _float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None
