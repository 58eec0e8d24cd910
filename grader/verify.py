"""The `verify` verb: re-train the configuration each submission claims as its best, once per distinct configuration
across the class, and judge each claim against it (the `verified_training` check).

Deciding (:func:`claims_of`, :func:`plan`): for each graded student, the best completed trial of each search the
rubric's ``verified_training`` checks name, its hyperparameters completed from the baseline's defaults
(``contract.BASELINE_DEFAULTS``) and turned into a :class:`grader.fasttrain.Config`; a claim that cannot be
re-trained (a value the baseline CNN does not take, more than :data:`MAX_EPOCHS` epochs) says why. Distinct
configurations are keyed by :func:`config_id`; what the cache already holds is not trained again.

Doing (:func:`main`): with ``retrain``, the configurations not in the cache are trained by ``grader.fasttrain``
(one single-thread process per core on CPU, grouped on a GPU) on the same train/validation split the reference
uses for the rubric's dataset and profile (``contract.PROFILE_SPLITS``, seed 0, the train split the grader
gave the submissions), each outcome written to the cache as it ends: the cache
(``OUT/.verify/<dataset>-<profile>-seed<seed>/<config id>.json``) survives re-runs and a killed verify loses
only the configurations still training. Then each student's :class:`Verification` is written to ``OUT/<student>/verification.json``,
the rubric's ``verified_training`` checks are judged again with it, result.json, the feedback and the gradebook
are rewritten for the students whose result changed, and a reviewer's overrides (OUT/review.csv) are applied again.
Without ``retrain`` nothing is trained: the claims the cache answers are judged, the others stay "not re-trained
yet", and the counts say what ``--retrain`` would train.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grader import contract
from grader.errors import GraderError
from grader.evidence import Evidence, Trial, gather_graded
from grader.fasttrain import Config, FastTrainError, Outcome, train_many
from grader.jsonio import finite_number, schema_errors, write_json_atomic
from grader.result import Result, read_results, write_result
from grader.rubric import Check, Rubric
from grader.validate import FileProblem, read_regular

VERIFY_DIR = ".verify"
VERIFICATION_FILE = "verification.json"
VERIFICATION_SCHEMA_VERSION = 1
TRAINER = "fasttrain-1"  # changes when the fast trainer's numbers would; a cache entry of another trainer is unused
SEED = 0  # the seed the grader gives every submission (GRADER_SEED) and the reference's split uses
MAX_EPOCHS = 50
MAX_FILTERS = 512
MAX_BATCH = 8192
MAX_KERNEL = 15
MAX_CACHE_BYTES = 1 << 20  # one cache entry (a few hundred bytes in practice)
MAX_VERIFICATION_BYTES = 1 << 20


class VerifyError(GraderError):
    """`grader verify` cannot start: no results, no data, a rubric without a verified_training check."""


@dataclass(frozen=True)
class Claim:
    """What a submission claims for one search: its best trial, that trial's full configuration and val accuracy.

    ``config`` is None when the configuration cannot be re-trained here; ``problem`` then says why.
    """

    search: str
    trial: str  # where the trial was read, for messages: "trial 03, trials.jsonl line 4"
    hyperparameters: Mapping[str, float]
    claimed_val_accuracy: float
    config: Config | None
    problem: str | None = None

    @property
    def config_id(self) -> str | None:
        return config_id(self.config) if self.config is not None else None


@dataclass(frozen=True)
class VerifiedSearch:
    """One search's claim and what re-training its configuration gave (None: not re-trained yet, or not trainable)."""

    search: str
    trial: str
    hyperparameters: Mapping[str, float]
    claimed_val_accuracy: float
    retrained_val_accuracy: float | None
    retrained_seconds: float | None
    problem: str | None = None


@dataclass(frozen=True)
class Verification:
    """A student's verified claims (OUT/<student>/verification.json), for the content graded (``content_hash``)."""

    schema_version: int
    content_hash: str | None
    dataset: str
    profile: str
    trainer: str
    searches: tuple[VerifiedSearch, ...]

    def of(self, search: str) -> VerifiedSearch | None:
        return next((v for v in self.searches if v.search == search), None)


@dataclass(frozen=True)
class VerifyReport:
    """What one `grader verify` did: claims seen, distinct configurations, cache hits, trained now, still pending,
    the students whose result changed, and one line per problem met."""

    claims: int
    configurations: int
    cached: int
    trained: int
    pending: int
    changed: tuple[str, ...]
    problems: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# deciding


def verified_checks(rubric: Rubric) -> tuple[Check, ...]:
    return tuple(c for c in rubric.checks if c.kind == "verified_training")


def check_searches(check: Check) -> tuple[str, ...]:
    """The searches a verified_training check verifies (default grid and random)."""
    return tuple(check.params.get("searches") or contract.ALWAYS_SEARCHED)


def config_id(config: Config) -> str:
    """A configuration's cache name: the sha256 of its canonical key (0.1 + 0.2 and 0.3 are one configuration)."""
    return hashlib.sha256(json.dumps(config.key()).encode()).hexdigest()[:32]


def claims_of(evidence: Evidence, searches: Sequence[str]) -> tuple[Claim, ...]:
    """The claim of each search that has a completed trial: its best one (the first on a tie)."""
    claims = []
    for search in searches:
        best = evidence.best_of(search)
        if best is not None:
            claims.append(_claim(search, best))
    return tuple(claims)


def _claim(search: str, trial: Trial) -> Claim:
    values = {**contract.BASELINE_DEFAULTS, **{k: v for k, v in trial.hyperparameters.items()
                                               if k in contract.HYPERPARAMETERS}}
    where = f"trial {trial.trial_id[:40]}, {trial.source}"
    claimed = float(trial.val_accuracy or 0.0)
    odd = [name for name, value in values.items() if not finite_number(value)]
    if odd:
        numbers = {k: v for k, v in values.items() if k not in odd}
        return Claim(search, where, numbers, claimed, None, f"{odd[0]} is not a number the baseline CNN takes")
    limits = {"epochs": MAX_EPOCHS, "filters": MAX_FILTERS, "batch_size": MAX_BATCH, "kernel_size": MAX_KERNEL}
    for name, most in limits.items():
        value = values[name]
        if value > most:
            return Claim(search, where, values, claimed, None,
                         f"{name} {_fmt(value)} is more than the {most} verify re-trains")
    try:
        config = Config.from_hyperparameters(values)
    except FastTrainError as exc:
        return Claim(search, where, values, claimed, None, str(exc))
    return Claim(search, where, values, claimed, config)


def cache_dir(out: Path, dataset: str, profile: str) -> Path:
    return out / VERIFY_DIR / f"{dataset}-{profile}-seed{SEED}"


def read_cached(folder: Path, cid: str) -> Outcome | None:
    """The cached outcome of a configuration, or None (missing, unreadable, another trainer's, or malformed)."""
    try:
        doc = json.loads(read_regular(folder / f"{cid}.json", MAX_CACHE_BYTES))
    except (FileProblem, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("trainer") != TRAINER or not isinstance(doc.get("config"), dict):
        return None
    try:
        config = Config.from_hyperparameters(doc["config"])
    except FastTrainError:
        return None
    accuracy, seconds = doc.get("val_accuracy"), doc.get("seconds")
    if config_id(config) != cid or not (accuracy is None or _fraction(accuracy)) or not _seconds(seconds):
        return None
    return Outcome(config, accuracy, None, {}, float(seconds))


def write_cached(folder: Path, outcome: Outcome) -> None:
    config = outcome.config
    write_json_atomic(folder / f"{config_id(config)}.json", {
        "trainer": TRAINER,
        "config": {name: getattr(config, name) for name in contract.HYPERPARAMETERS},
        "val_accuracy": outcome.val_accuracy,
        "val_loss": outcome.val_loss,
        "seconds": outcome.seconds,
    })


# ---------------------------------------------------------------------------------------------
# judging (the verified_training check's judge is in grader.checks; it reads Evidence.verification)


def verification_for(result: Result, claims: Sequence[Claim], outcomes: Mapping[str, Outcome], rubric: Rubric
                     ) -> Verification:
    searched = []
    for claim in claims:
        outcome = outcomes.get(claim.config_id or "")
        searched.append(VerifiedSearch(
            search=claim.search, trial=claim.trial, hyperparameters=dict(claim.hyperparameters),
            claimed_val_accuracy=claim.claimed_val_accuracy,
            retrained_val_accuracy=None if outcome is None else (outcome.val_accuracy or 0.0),
            retrained_seconds=None if outcome is None else outcome.seconds,
            problem=claim.problem))
    return Verification(VERIFICATION_SCHEMA_VERSION, result.content_hash, rubric.dataset, rubric.profile, TRAINER,
                        tuple(searched))


def write_verification(path: Path, verification: Verification) -> None:
    write_json_atomic(path, {
        "schema_version": verification.schema_version,
        "content_hash": verification.content_hash,
        "dataset": verification.dataset,
        "profile": verification.profile,
        "trainer": verification.trainer,
        "searches": [{"search": v.search, "trial": v.trial, "hyperparameters": dict(v.hyperparameters),
                      "claimed_val_accuracy": v.claimed_val_accuracy,
                      "retrained_val_accuracy": v.retrained_val_accuracy,
                      "retrained_seconds": v.retrained_seconds, "problem": v.problem}
                     for v in verification.searches],
    })


def read_verification(path: Path, content_hash: str | None, rubric: Rubric) -> Verification | None:
    """The verification written for this content, dataset and profile, or None (absent, stale or not valid)."""
    try:
        doc = json.loads(read_regular(path, MAX_VERIFICATION_BYTES))
    except (FileProblem, ValueError, RecursionError):
        return None
    if schema_errors(doc, "verification"):
        return None
    if (doc["content_hash"], doc["dataset"], doc["profile"], doc["trainer"]) != (
            content_hash, rubric.dataset, rubric.profile, TRAINER):
        return None
    return Verification(doc["schema_version"], doc["content_hash"], doc["dataset"], doc["profile"], doc["trainer"],
                        tuple(VerifiedSearch(**v) for v in doc["searches"]))


def rejudged(result: Result, rubric: Rubric, evidence: Evidence) -> Result:
    """result with its verified_training checks judged again on evidence (the others as they were)."""
    from grader.checks import run_check, score

    fresh = {c.id: run_check(c, evidence) for c in verified_checks(rubric)}
    checks = tuple(fresh.get(c.id, c) if c.override is None else _kept_override(c, fresh.get(c.id)) for c in
                   result.checks)
    if checks == result.checks:
        return result
    return replace(result, checks=checks, score=score(checks))


def _kept_override(check: Any, fresh: Any) -> Any:
    """A check a reviewer set keeps their points; the grader's own verdict underneath is renewed."""
    if fresh is None:
        return check
    return replace(fresh, points=check.points, status=check.status, automatic_points=fresh.points,
                   override=replace(check.override, automatic_status=fresh.status))


# ---------------------------------------------------------------------------------------------
# doing


def main(*, out: Path, rubric: Rubric, retrain: bool, jobs: int | None = None, device: str | None = None,
         log: Any = print) -> VerifyReport:
    """Verify every graded student under out (see the module docstring); `log` gets one progress line at a time."""
    from grader.review import apply_reviews, rewrite_feedback

    checks = verified_checks(rubric)
    if not checks:
        raise VerifyError(f"rubric {rubric.path} has no verified_training check: add one to verify claims "
                          "(docs/rubrics.md, verified_training)")
    searches = tuple(dict.fromkeys(s for c in checks for s in check_searches(c)))
    found, skipped = read_results(out)
    if not found:
        raise VerifyError(f"no result.json under {out}: grade the submissions first (grader grade ... --out {out})")
    students: list[tuple[str, Result, Evidence, tuple[Claim, ...]]] = []
    for folder, result in found:
        evidence = gather_graded(out / folder, aliases=rubric.aliases)
        students.append((folder, result, evidence, claims_of(evidence, searches)))
    folder = cache_dir(out, rubric.dataset, rubric.profile)
    wanted: dict[str, Config] = {config_id(c.config): c.config for *_, claims in students for c in claims
                                 if c.config is not None}
    outcomes = {cid: o for cid in wanted if (o := read_cached(folder, cid)) is not None}
    cached = len(outcomes)
    missing = [wanted[cid] for cid in wanted if cid not in outcomes]
    if retrain and missing:

        def keep(outcome: Outcome) -> None:  # cached as each ends: a killed verify loses only what was training
            write_cached(folder, outcome)
            outcomes[config_id(outcome.config)] = outcome
            log(f"re-trained {len(outcomes) - cached} of {len(missing)} configurations")

        train_many(missing, _train_val(out, rubric), seed=SEED, workers=jobs, device=device, on_outcome=keep)
    changed = []
    for student_folder, result, evidence, claims in students:
        verification = verification_for(result, claims, outcomes, rubric)
        write_verification(out / student_folder / VERIFICATION_FILE, verification)
        updated = rejudged(result, rubric, replace(evidence, verification=verification))
        if updated != result:
            write_result(out / student_folder / "result.json", updated)
            rewrite_feedback(out / student_folder, updated, evidence)
            changed.append(updated.student_id)
    merge = apply_reviews(out, gradebook=False)
    from grader.gradebook import rebuild_gradebook

    rebuild_gradebook(out)
    claims_count = sum(len(claims) for *_, claims in students)
    return VerifyReport(claims=claims_count, configurations=len(wanted), cached=cached, trained=len(outcomes) - cached,
                        pending=len(wanted) - len(outcomes), changed=tuple(changed),
                        problems=tuple(skipped) + tuple(merge.problems))


def _train_val(out: Path, rubric: Rubric) -> Any:
    """The reference's train/validation split of the rubric's dataset and profile, from the train split the grader
    gave the submissions (OUT/.data/train) when it is there, else from wherever the dataset is found."""
    from grader.grade import DATA_DIR
    from tunekit import data

    train_size, val_size = contract.PROFILE_SPLITS[rubric.profile]
    given = out / DATA_DIR / "train"
    try:
        return data.load_train_val(rubric.dataset, data_dir=given if (given / f"{rubric.dataset}.npz").is_file()
                                   else None, train_size=train_size, val_size=val_size, seed=SEED,
                                   allow_download=True, shrink_to_fit=True)
    except (OSError, ValueError) as exc:
        raise VerifyError(f"cannot load the {rubric.dataset} train split to re-train with: {exc}") from None


def _fraction(value: Any) -> bool:
    return finite_number(value) and 0 <= value <= 1


def _seconds(value: Any) -> bool:
    return finite_number(value) and value >= 0


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
