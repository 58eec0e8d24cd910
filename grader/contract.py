"""Submission contract v1: the names both sides agree on (files, variables, hyperparameters)."""

from __future__ import annotations

CONTRACT_VERSION = 1

# Environment the grader sets for a submission (defaults apply when a student runs by hand).
ENV_OUTPUT_DIR = "GRADER_OUTPUT_DIR"
ENV_DATA_DIR = "GRADER_DATA_DIR"
ENV_PROFILE = "GRADER_PROFILE"
ENV_TIME_BUDGET = "GRADER_TIME_BUDGET_S"
ENV_SEED = "GRADER_SEED"
ENV_DATASET = "GRADER_DATASET"  # the rubric's dataset (mnist, fashion_mnist, cifar10)
ENV_SEARCHES = "GRADER_SEARCHES"  # the rubric's searches, comma-separated: grid,random[,bayesian][,manual]

PROFILES = ("quick", "full")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
SEARCHES = ("grid", "random", "bayesian", "manual")
ALWAYS_SEARCHED = ("grid", "random")  # every run does these; bayesian and manual only when the rubric asks
# A manual search's trials are chosen by hand, each with the student's one-line reason (trials.jsonl "reason").
MAX_REASON_CHARS = 300

# Canonical hyperparameter names, in the order tables and reports show them. l1 and l2 are the factors of the L1 and
# L2 kernel penalties (0 = none; both above 0 = elastic net).
HYPERPARAMETERS = ("learning_rate", "batch_size", "epochs", "filters", "kernel_size", "dropout", "l1", "l2")

# The baseline CNN's values for a hyperparameter a trial does not set, and the examples each profile trains and
# validates on (train, validation; None: the whole train split, a tenth held for validation). The reference trains
# with them, and `grader verify` re-trains a claimed configuration on the same split.
BASELINE_DEFAULTS = {"learning_rate": 1e-3, "batch_size": 64, "epochs": 1, "filters": 16, "kernel_size": 3,
                     "dropout": 0.25, "l1": 0.0, "l2": 0.0}
PROFILE_SPLITS = {"quick": (3000, 1000), "full": (None, None)}

# Files a submission leaves in its output dir.
SEARCH_SPACES_FILE = "search_spaces.json"
TRIALS_FILE = "trials.jsonl"
COMPARISON_FILE = "comparison.csv"
ANSWERS_FILE = "answers.yaml"
MODELS_DIR = "models"
PLOTS_DIR = "plots"
TUNER_DIR = "tuner"


# A scikit-learn search's `cv_results_`, saved by the submission as cv_results_<search>.csv or .json, stands for
# that search's trials when there is no usable trials.jsonl (grader.cv_results reads it).
CV_RESULTS_PREFIX = "cv_results_"
CV_RESULTS_FORMATS = ("csv", "json")  # when both are there, the CSV is read


def cv_results_file(search: str, fmt: str) -> str:
    """Relative path of a scikit-learn search's saved cv_results_ inside the output dir: cv_results_grid.csv."""
    return f"{CV_RESULTS_PREFIX}{search}.{fmt}"


def best_model_path(search: str) -> str:
    """Relative path of a search's exported best model inside the output dir."""
    return f"{MODELS_DIR}/best_{search}.keras"


COMPARISON_COLUMNS = (
    "search",
    "trials",
    "completed_trials",
    "best_trial_id",
    "best_val_accuracy",
    "best_val_loss",
    "total_train_seconds",
    *HYPERPARAMETERS,
)
# Columns a v1 comparison.csv may leave out, the rest in the same order: l1 joined the contract after the first v1
# files were written, so a header without it is still v1 (its cells read as empty).
OPTIONAL_COMPARISON_COLUMNS = ("l1",)

# Trial statuses, as KerasTuner names them.
TRIAL_STATUSES = ("COMPLETED", "FAILED", "INVALID", "STOPPED")
