"""Tune a small CNN with KerasTuner grid search and random search, and report what was learned.

Read it top to bottom:
  1. the baseline CNN, built from hyperparameters (build_model) and trained by a
     HyperModel that also tunes batch size and epochs (CNNHyperModel);
  2. the search spaces of each profile (grid_search_space, random_search_space), and
     three configurations chosen by hand, each with its reason (manual_trials);
  3. running the searches (run_search), which writes trials.jsonl as trials end;
  4. answering the analysis questions from the trials (answer_questions);
  5. run(): load data, search, export the best models, write the report.

Run it with `python tuning.py --profile quick --out outputs [--dataset cifar10]`, or let the
grader run it: it sets GRADER_OUTPUT_DIR, GRADER_PROFILE, GRADER_DATASET, GRADER_TIME_BUDGET_S,
GRADER_SEED, GRADER_DATA_DIR and GRADER_SEARCHES, which this script reads (a flag given wins).
Grid and random search always run; Bayesian optimisation and the manual search when asked
(`--searches grid,random,bayesian,manual`). The model's input
shape comes from the data: 28x28x1 for MNIST and Fashion-MNIST, 32x32x3 for CIFAR-10. On your
machine a dataset found nowhere locally is downloaded once into the Keras cache (~/.keras/datasets)
and checked; under the grader nothing is downloaded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import keras_tuner as kt

from grader.contract import BASELINE_DEFAULTS, PROFILE_SPLITS
from tunekit import analysis, data, report
from tunekit.config import RunConfig, parse_args
from tunekit.recorder import ORACLES, Deadline, RecordingTuner, TrialLog
from tunekit.spaces import GridSpace, ManualSpace, ManualTrial, Range, RandomSpace, to_keras_tuner

# ---- defaults, in one place: the contract's, so the grader re-trains a claim as this file trains it ----------
# PROFILE_DATA: (train, validation) examples at most (a smaller train split is shared in this proportion);
# None = the whole train split, 10% held for validation. DEFAULTS: the value of a hyperparameter a search does not set.
PROFILE_DATA = PROFILE_SPLITS
DEFAULTS = BASELINE_DEFAULTS
DENSE_UNITS = 64
REPORT_RESERVE_S = 8.0  # seconds kept back from the time budget to export models and write the report


# ---- 1. the model ----------------------------------------------------------------------
def build_model(hp: kt.HyperParameters, input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10) -> keras.Model:
    """Two Conv2D+MaxPooling blocks, dropout and a dense head; every hyperparameter but batch_size and epochs from hp.

    The conv and hidden dense kernels are penalised by L1 when only hp 'l1' is above 0, by L2 when only hp 'l2' is,
    by both (elastic net, keras.regularizers.L1L2) when both are, and not at all when neither is.
    """
    raise NotImplementedError("TODO(student): build two Conv2D+MaxPooling blocks, Dropout and a Dense head from hp, compiled with Adam(learning_rate)")


class CNNHyperModel(kt.HyperModel):
    """Builds the CNN for a trial and trains it with the trial's batch_size and epochs."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__(name="baseline_cnn")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return build_model(hp, self.input_shape, self.num_classes)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        """Train with the trial's batch size and number of epochs."""
        raise NotImplementedError("TODO(student): train the model with the trial's batch_size and epochs")


def _hp(hp: kt.HyperParameters, name: str) -> Any:
    """The trial's value of a hyperparameter, or its default when the search does not set it."""
    return hp.get(name) if name in hp.values else DEFAULTS[name]


# ---- 2. the search spaces ---------------------------------------------------------------
def grid_search_space(profile: str) -> GridSpace:
    """The grid: every combination of these values is trained once."""
    raise NotImplementedError("TODO(student): define the grid of hyperparameter values for each profile")


def random_search_space(profile: str) -> RandomSpace:
    """The random search: ranges to sample from, and how many trials to sample."""
    raise NotImplementedError("TODO(student): define the random-search ranges and trial budget for each profile")


def manual_trials(profile: str) -> ManualSpace:
    """The manual search: three configurations you choose yourself, each with a one-line reason, trained in order."""
    raise NotImplementedError("TODO(student): choose three configurations by hand, each with a one-line reason for choosing it")


# ---- 3. running a search ----------------------------------------------------------------
def run_search(
    search: str,
    space: GridSpace | RandomSpace | ManualSpace,
    dataset: data.TrainVal,
    config: RunConfig,
    *,
    deadline: Deadline | None = None,
) -> RecordingTuner:
    """Run one search with KerasTuner; each finished trial is appended to trials.jsonl as it ends."""
    plan = {"plan": space} if isinstance(space, ManualSpace) else {}  # the manual oracle trains the plan in order
    oracle = ORACLES[search](
        objective=kt.Objective("val_accuracy", direction="max"),
        max_trials=_planned_trials(space),
        hyperparameters=to_keras_tuner(space),
        tune_new_entries=False,
        seed=config.seed,
        **plan,
    )
    tuner = RecordingTuner(
        search=search,
        trial_log=TrialLog(config.out / "trials.jsonl"),
        seed=config.seed,
        deadline=deadline,
        oracle=oracle,
        hypermodel=CNNHyperModel(dataset.x_train.shape[1:], data.dataset_info(config.dataset).num_classes),
        directory=str(config.out / "tuner"),
        project_name=search,
        overwrite=True,
    )
    tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
    return tuner


def _planned_trials(space: GridSpace | RandomSpace | ManualSpace) -> int:
    return space.max_trials if isinstance(space, RandomSpace) else space.size


# ---- 4. the analysis questions --------------------------------------------------------------
def answer_questions(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Answer the assignment's questions from the trials themselves, not from expectations."""
    raise NotImplementedError("TODO(student): answer the analysis questions of answers.yaml from the trials")


# ---- 5. the whole run -------------------------------------------------------------------------
def run(config: RunConfig) -> list[dict[str, Any]]:
    """Load the data, run every search, export each best model, write the report; returns the trials."""
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "trials.jsonl").unlink(missing_ok=True)
    keras.utils.set_random_seed(config.seed)
    started = time.monotonic()

    train_size, val_size = PROFILE_DATA[config.profile]
    dataset = data.load_train_val(config.dataset, data_dir=config.data_dir, train_size=train_size, val_size=val_size,
                                  seed=config.seed, allow_download=config.allow_download, shrink_to_fit=True)
    print(f"data: {len(dataset.x_train)} train / {len(dataset.x_val)} validation {config.dataset} images of shape "
          f"{'x'.join(map(str, dataset.x_train.shape[1:]))} from {dataset.source}")

    spaces: dict[str, GridSpace | RandomSpace | ManualSpace] = {"grid": grid_search_space(config.profile)}
    spaces["random"] = random_search_space(config.profile)
    if "bayesian" in config.searches:  # GRADER_SEARCHES or --bayesian: the random search's ranges and trial budget
        spaces["bayesian"] = spaces["random"]
    if "manual" in config.searches:
        spaces["manual"] = manual_trials(config.profile)
    declared = {s: sp for s, sp in spaces.items() if not isinstance(sp, ManualSpace)}  # a manual search has no space
    report.write_search_spaces(config.out, dataset=config.dataset, profile=config.profile, spaces=declared)

    planned = {s: _planned_trials(sp) for s, sp in spaces.items()}
    for i, (search, space) in enumerate(spaces.items()):
        deadline = None
        if config.time_budget_s is not None:  # share what is left in proportion to the trials still planned
            left = config.time_budget_s - (time.monotonic() - started) - REPORT_RESERVE_S
            deadline = Deadline(max(0.0, left * planned[search] / sum(list(planned.values())[i:])))
        tuner = run_search(search, space, dataset, config, deadline=deadline)
        if tuner.oracle.get_best_trials(1):
            (config.out / "models").mkdir(exist_ok=True)
            tuner.get_best_models(1)[0].save(config.out / "models" / f"best_{search}.keras")

    trials = TrialLog(config.out / "trials.jsonl").read()
    rows = report.comparison_rows(trials, list(spaces))
    report.write_comparison(config.out, rows)
    report.write_plots(config.out, trials, list(spaces))
    own_answers = Path("answers.yaml")  # what the student wrote (in the repo root) wins over the derived answers
    report.write_answers(config.out, report.merge_answers(answer_questions(trials), own_answers))
    print(report.format_table(rows))
    print(f"wrote {config.out} in {time.monotonic() - started:.1f} s")
    return trials


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv, description=__doc__.splitlines()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
