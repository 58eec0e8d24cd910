"""What the trials say: each hyperparameter's share of the variance in validation accuracy, per-level means, best-so-far curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from grader.contract import HYPERPARAMETERS

MAX_LEVELS = 4  # a hyperparameter with more distinct values than this is binned by quantile
QUANTILE_BINS = 3


@dataclass(frozen=True)
class Level:
    """Trials grouped by one hyperparameter's value (or value bin)."""

    label: str
    low: float | str
    high: float | str
    n: int
    mean_val_accuracy: float
    mean_train_seconds: float


@dataclass(frozen=True)
class Effect:
    """One hyperparameter's main effect on validation accuracy."""

    name: str
    share: float  # adjusted eta squared: share of val-accuracy variance explained by this hyperparameter alone
    levels: tuple[Level, ...]

    @property
    def best_level(self) -> Level:
        return max(self.levels, key=lambda lv: lv.mean_val_accuracy)


def completed(trials: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trials that finished with a finite validation accuracy."""
    out = []
    for t in trials:
        acc = t.get("val_accuracy")
        if t.get("status") == "COMPLETED" and isinstance(acc, (int, float)) and np.isfinite(acc):
            out.append(t)
    return out


def hyperparameter_effects(trials: Iterable[Mapping[str, Any]], names: Sequence[str] = HYPERPARAMETERS) -> list[Effect]:
    """Main effects of the hyperparameters that vary across the completed trials, largest share first.

    A first-order variance decomposition, done within each search (grid, random, ...) so
    that the searches' different fixed values do not pass for an effect: group a search's
    trials by a hyperparameter's value (continuous values with many distinct values go
    into quantile bins), take the between-group sum of squares over the total, adjusted for
    the number of groups so that a hyperparameter with many levels does not look important
    by chance, and average over the searches where it varies, weighted by their trial counts.
    The levels shown are those of the largest search where it varies.
    """
    by_search: dict[str, list[Mapping[str, Any]]] = {}
    for t in completed(trials):
        by_search.setdefault(str(t.get("search")), []).append(t)
    effects = []
    for name in names:
        weighted, weight, shown = 0.0, 0, None
        for group in by_search.values():
            values = [t.get("hyperparameters", {}).get(name) for t in group]
            if any(v is None for v in values) or len({_key(v) for v in values}) < 2:
                continue
            y = np.array([float(t["val_accuracy"]) for t in group])
            secs = np.array([float(t.get("train_seconds") or 0.0) for t in group])
            groups = _groups(values)
            weighted += len(group) * _adjusted_eta_squared(y, groups)
            weight += len(group)
            if shown is None or len(group) > sum(lv.n for lv in shown):
                shown = _levels(values, groups, y, secs)
        if weight:
            effects.append(Effect(name, weighted / weight, shown or ()))
    return sorted(effects, key=lambda e: (-e.share, e.name))


def ranking(trials: Iterable[Mapping[str, Any]]) -> list[str]:
    """Hyperparameter names, most important first (see hyperparameter_effects)."""
    return [e.name for e in hyperparameter_effects(trials)]


def best_so_far(trials: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative training seconds and the best validation accuracy reached by then, in trial order."""
    elapsed, best, running, clock = [], [], 0.0, 0.0
    for t in trials:
        clock += float(t.get("train_seconds") or 0.0)
        acc = t.get("val_accuracy")
        if t.get("status") == "COMPLETED" and isinstance(acc, (int, float)):
            running = max(running, float(acc))
        elapsed.append(clock)
        best.append(running)
    return np.array(elapsed), np.array(best)


def best_trial(trials: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The completed trial with the highest validation accuracy (the earliest on a tie)."""
    done = completed(trials)
    return max(done, key=lambda t: float(t["val_accuracy"])) if done else None


def _key(value: Any) -> Any:
    return round(value, 12) if isinstance(value, float) else value


def _groups(values: list[Any]) -> np.ndarray:
    keys = [_key(v) for v in values]
    distinct = sorted(set(keys), key=lambda k: (str(type(k)), k))
    if len(distinct) <= MAX_LEVELS or not all(isinstance(k, (int, float)) for k in keys):
        index = {k: i for i, k in enumerate(distinct)}
        return np.array([index[k] for k in keys])
    ranks = np.argsort(np.argsort(np.array(keys, dtype=float), kind="stable"), kind="stable")
    return (ranks * QUANTILE_BINS) // len(keys)


def _adjusted_eta_squared(y: np.ndarray, groups: np.ndarray) -> float:
    n, k = len(y), len(np.unique(groups))
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 0 or n <= k:
        return 0.0
    between = sum(float((groups == g).sum()) * (float(y[groups == g].mean()) - float(y.mean())) ** 2 for g in np.unique(groups))
    eta2 = between / total
    return max(0.0, 1.0 - (1.0 - eta2) * (n - 1) / (n - k))


def _levels(values: list[Any], groups: np.ndarray, y: np.ndarray, secs: np.ndarray) -> tuple[Level, ...]:
    levels = []
    for g in np.unique(groups):
        members = [v for v, gi in zip(values, groups) if gi == g]
        low, high = min(members), max(members)
        label = _fmt(low) if low == high else f"{_fmt(low)}..{_fmt(high)}"
        mask = groups == g
        levels.append(Level(label, low, high, int(mask.sum()), float(y[mask].mean()), float(secs[mask].mean())))
    return tuple(levels)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)
