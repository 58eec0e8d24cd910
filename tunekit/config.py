"""The run's settings: command-line flags first, then the grader's GRADER_* variables, then defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from grader.contract import DATASETS, ENV_DATA_DIR, ENV_OUTPUT_DIR, ENV_PROFILE, ENV_SEED, ENV_TIME_BUDGET, PROFILES


@dataclass(frozen=True)
class RunConfig:
    """Where to write, what profile and dataset, how long, which seed, which searches."""

    out: Path
    profile: str = "quick"
    dataset: str = "mnist"
    time_budget_s: float | None = None
    seed: int = 0
    data_dir: Path | None = None
    bayesian: bool = False

    @property
    def searches(self) -> tuple[str, ...]:
        return ("grid", "random", "bayesian") if self.bayesian else ("grid", "random")


def parse_args(argv: Sequence[str] | None = None, *, description: str = "") -> RunConfig:
    """Read flags and environment into a RunConfig (flags win over GRADER_* variables)."""
    env = os.environ
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=env.get(ENV_OUTPUT_DIR, "outputs"), help="output dir (GRADER_OUTPUT_DIR)")
    parser.add_argument("--profile", choices=PROFILES, default=env.get(ENV_PROFILE, "quick"), help="GRADER_PROFILE")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    parser.add_argument("--time-budget", type=float, default=_float(env.get(ENV_TIME_BUDGET)),
                        help="wall-clock seconds for the whole run (GRADER_TIME_BUDGET_S)")
    parser.add_argument("--seed", type=int, default=int(env.get(ENV_SEED, "0")), help="GRADER_SEED")
    parser.add_argument("--data-dir", default=env.get(ENV_DATA_DIR) or None, help="dataset folder (GRADER_DATA_DIR)")
    parser.add_argument("--bayesian", action="store_true", help="also run Bayesian optimization")
    args = parser.parse_args(argv)
    if args.profile not in PROFILES:
        parser.error(f"{ENV_PROFILE} must be one of {', '.join(PROFILES)}, not {args.profile!r}")
    return RunConfig(
        out=Path(args.out),
        profile=args.profile,
        dataset=args.dataset,
        time_budget_s=args.time_budget,
        seed=args.seed,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        bayesian=args.bayesian,
    )


def _float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None
