"""Search spaces as plain data: the grid, the random ranges, the manual trials, their JSON and KerasTuner forms."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from grader.contract import HYPERPARAMETERS, MAX_REASON_CHARS


@dataclass(frozen=True)
class Range:
    """One hyperparameter's random-search range: float/int between min and max, or a choice of values."""

    type: str  # "float" | "int" | "choice"
    min: float | None = None
    max: float | None = None
    sampling: str = "linear"  # "linear" | "log" | "choice"
    step: int | None = None
    values: tuple[Any, ...] = ()

    @staticmethod
    def float(min: float, max: float, sampling: str = "linear") -> "Range":  # noqa: A002
        return Range("float", float(min), float(max), sampling)

    @staticmethod
    def int(min: int, max: int, step: int | None = None, sampling: str = "linear") -> "Range":  # noqa: A002
        return Range("int", int(min), int(max), sampling, step=step)

    @staticmethod
    def choice(*values: Any) -> "Range":
        return Range("choice", sampling="choice", values=tuple(values))

    def contains(self, value: Any) -> bool:
        """Whether value is one this range can produce."""
        if self.type == "choice":
            return value in self.values
        return isinstance(value, (int, float)) and self.min - 1e-12 <= value <= self.max + 1e-12

    def to_json(self) -> dict[str, Any]:
        if self.type == "choice":
            return {"type": "choice", "values": list(self.values), "sampling": "choice"}
        out: dict[str, Any] = {"type": self.type, "min": self.min, "max": self.max, "sampling": self.sampling}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class GridSpace:
    """A grid: the values each varied hyperparameter takes (the search trains their full product) and fixed values."""

    values: Mapping[str, tuple[Any, ...]]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_names({**self.values, **self.fixed})

    def combinations(self) -> list[dict[str, Any]]:
        """Every point of the grid, each as a full hyperparameter dict."""
        names = list(self.values)
        return [{**self.fixed, **dict(zip(names, combo))} for combo in itertools.product(*self.values.values())]

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.values.values())

    def to_json(self) -> dict[str, Any]:
        return {"values": {k: list(v) for k, v in self.values.items()}, "fixed": dict(self.fixed)}


@dataclass(frozen=True)
class RandomSpace:
    """A random search: a range per varied hyperparameter, fixed values, and how many trials to sample."""

    ranges: Mapping[str, Range]
    max_trials: int
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_names({**self.ranges, **self.fixed})

    def to_json(self) -> dict[str, Any]:
        return {
            "max_trials": self.max_trials,
            "ranges": {k: r.to_json() for k, r in self.ranges.items()},
            "fixed": dict(self.fixed),
        }


@dataclass(frozen=True)
class ManualTrial:
    """One configuration chosen by hand, and the one-line reason for choosing it."""

    hyperparameters: Mapping[str, Any]
    reason: str

    def __post_init__(self) -> None:
        _check_names(self.hyperparameters)
        if not self.reason.strip() or "\n" in self.reason.strip() or len(self.reason) > MAX_REASON_CHARS:
            raise ValueError(f"a manual trial's reason is one line of 1 to {MAX_REASON_CHARS} characters, "
                             f"not {self.reason[:40]!r}")


@dataclass(frozen=True)
class ManualSpace:
    """A manual search: the hand-chosen trials, trained in this order (values a trial leaves out take fixed's)."""

    trials: tuple[ManualTrial, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_names(self.fixed)
        if not self.trials:
            raise ValueError("a manual search needs at least one trial")

    def points(self) -> list[dict[str, Any]]:
        """Each trial's full hyperparameter dict, in order."""
        return [{**self.fixed, **t.hyperparameters} for t in self.trials]

    @property
    def size(self) -> int:
        return len(self.trials)


def _check_names(names: Mapping[str, Any]) -> None:
    unknown = sorted(set(names) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; use the canonical names {list(HYPERPARAMETERS)}")


def to_keras_tuner(space: GridSpace | RandomSpace | ManualSpace) -> Any:
    """The space as keras_tuner.HyperParameters (grid values and manual trials' values become Choice, ranges
    Float/Int/Choice)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    if isinstance(space, ManualSpace):
        points = space.points()
        for name in dict.fromkeys(k for point in points for k in point):
            hp.Choice(name, list(dict.fromkeys(p[name] for p in points if name in p)), ordered=False)
        return hp
    if isinstance(space, GridSpace):
        for name, values in space.values.items():
            hp.Choice(name, list(values), ordered=True)
    else:
        for name, r in space.ranges.items():
            if r.type == "choice":
                hp.Choice(name, list(r.values))
            elif r.type == "int":
                hp.Int(name, int(r.min), int(r.max), step=r.step, sampling=r.sampling)
            else:
                hp.Float(name, r.min, r.max, sampling=r.sampling)
    for name, value in space.fixed.items():
        hp.Fixed(name, value)
    return hp
