"""KerasTuner tuners that append each finished trial to trials.jsonl and stop starting trials when time runs out."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from grader.contract import CONTRACT_VERSION, HYPERPARAMETERS
from tunekit.spaces import ManualSpace


class TrialLog:
    """trials.jsonl: one JSON object per finished trial, appended, flushed and fsync'd as each trial ends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line.strip()]


class Deadline:
    """Decides whether another trial fits before a wall-clock deadline (monotonic seconds); the first always does."""

    def __init__(self, budget_s: float | None, min_trials: int = 1) -> None:
        self.end = None if budget_s is None else time.monotonic() + budget_s
        self.min_trials = min_trials
        self.last_trial_s = 0.0

    def allows_another(self, trials_so_far: int) -> bool:
        if self.end is None or trials_so_far < self.min_trials:
            return True
        return time.monotonic() + self.last_trial_s < self.end

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()


class _DeadlineOracle:
    """Oracle mixin: the one hook it overrides is populate_space, which stops the search past the deadline."""

    deadline: Deadline | None = None

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if self.deadline is not None and not self.deadline.allows_another(len(self.trials)):
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)  # type: ignore[misc]


class GridSearchOracle(_DeadlineOracle, kt.oracles.GridSearchOracle):
    pass


class RandomSearchOracle(_DeadlineOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_DeadlineOracle, kt.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian optimisation, starting from a third of its budget in random points (at least 2).

    KerasTuner's own default is 3 random points per hyperparameter: with 8 hyperparameters and a
    budget of 8 trials, every trial would be random and nothing would be optimised.
    """

    def __init__(self, *args: Any, max_trials: int = 10, num_initial_points: int | None = None, **kwargs: Any) -> None:
        if num_initial_points is None:
            num_initial_points = max(2, max_trials // 3)
        super().__init__(*args, max_trials=max_trials, num_initial_points=num_initial_points, **kwargs)


class ManualOracle(_DeadlineOracle, kt.Oracle):
    """Hands out hand-chosen configurations in order, one per trial, keeping each one's reason for trials.jsonl."""

    def __init__(self, *args: Any, plan: ManualSpace, **kwargs: Any) -> None:
        kwargs["max_trials"] = plan.size
        super().__init__(*args, **kwargs)
        self.plan = list(zip(plan.points(), (t.reason for t in plan.trials)))
        self.reasons: dict[str, str] = {}

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        index = len(self.trials)
        if index >= len(self.plan):
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        values, self.reasons[trial_id] = self.plan[index]
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(values)}


ORACLES = {"grid": GridSearchOracle, "random": RandomSearchOracle, "bayesian": BayesianOptimizationOracle,
           "manual": ManualOracle}


class RecordingTuner(kt.Tuner):
    """A KerasTuner Tuner that seeds each trial, times it, and writes its line to trials.jsonl when it ends."""

    def __init__(self, *, search: str, trial_log: TrialLog, seed: int, deadline: Deadline | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.search_name = search
        self.trial_log = trial_log
        self.seed = seed
        self.deadline = deadline
        self.oracle.deadline = deadline
        self._runs: dict[str, tuple[float, dict[str, list[float]]]] = {}

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        keras.utils.set_random_seed(self.seed)
        start = time.perf_counter()
        try:
            histories = super().run_trial(trial, *args, **kwargs)
        finally:
            self._runs[trial.trial_id] = (time.perf_counter() - start, {})
        history = histories[-1].history if histories and hasattr(histories[-1], "history") else {}
        self._runs[trial.trial_id] = (self._runs[trial.trial_id][0], history)
        return histories

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        seconds, history = self._runs.pop(trial.trial_id, (0.0, {}))
        if self.deadline is not None:
            self.deadline.last_trial_s = seconds
        record = trial_record(self.search_name, self.oracle.get_trial(trial.trial_id), history, seconds,
                              reason=getattr(self.oracle, "reasons", {}).get(trial.trial_id))
        self.trial_log.append(record)
        print(progress_line(record), flush=True)


def trial_record(search: str, trial: Any, history: dict[str, list[float]], seconds: float,
                 reason: str | None = None) -> dict[str, Any]:
    """The contract's trials.jsonl line for a KerasTuner trial (with its reason, for a manual search's trial)."""
    clean = {k: [_num(v) for v in vals] for k, vals in history.items()}
    status = str(trial.status)
    val_acc = val_loss = None
    if status == "COMPLETED" and clean.get("val_accuracy"):
        best = max(range(len(clean["val_accuracy"])), key=lambda i: clean["val_accuracy"][i])
        val_acc = clean["val_accuracy"][best]
        val_loss = clean["val_loss"][best] if clean.get("val_loss") else None
    message = str(trial.message or "")
    if status == "COMPLETED" and (val_acc is None or val_loss is None):
        status, message = "FAILED", "training diverged: validation metrics are not finite numbers"
    if status != "COMPLETED":
        val_acc = val_loss = None
    values = trial.hyperparameters.values
    record: dict[str, Any] = {
        "contract_version": CONTRACT_VERSION,
        "search": search,
        "trial_id": str(trial.trial_id),
        "hyperparameters": {k: _plain(values[k]) for k in HYPERPARAMETERS if k in values},
        "status": status,
        "val_accuracy": val_acc,
        "val_loss": val_loss,
        "history": clean,
        "train_seconds": round(seconds, 4),
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if message:
        record["message"] = message[-2000:]
    if reason:
        record["reason"] = reason
    return record


def progress_line(record: dict[str, Any]) -> str:
    """One terminal line per finished trial."""
    hps = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["hyperparameters"].items())
    result = f"val_accuracy {record['val_accuracy']:.4f}" if record["val_accuracy"] is not None else record["status"]
    return f"{record['search']:>6} trial {record['trial_id']}: {result} in {record['train_seconds']:.1f} s  {hps}"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _num(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
