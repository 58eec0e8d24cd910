"""Judge a run's Evidence against a rubric: one small judge per check kind, each giving points and an actionable message.

Judging only: a judge reads its check's params and the frozen Evidence, and returns a
`Verdict` (the fraction of the check's points earned, a one-line message, whether the
result is suspect). `run_checks` turns verdicts into `CheckResult`s; a judge that raises
becomes an "error" result and the other checks still run. Every message that is not full
marks ends with " — " and what to do next. docs/rubrics.md describes each kind's params
and partial credit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from grader import claims, contract
from grader.evidence import Evidence, Trial, same_value
from grader.jsonio import finite_number
from grader.parse import escaped_line, show_int, show_value
from grader.result import Architecture, CheckResult, Score
from grader.rubric import Check, Rubric
from tunekit import analysis
from tunekit.spaces import GridSpace, RandomSpace

MAX_COMBINATIONS = 100_000  # a declared grid larger than this is not enumerated
LISTED = 3  # items named in a message before "and N more"
MAX_MESSAGE_CHARS = 600


@dataclass(frozen=True)
class Verdict:
    """What a judge decided: the fraction of the points earned (0..1), the message, and flags (``review``: the rubric
    asks a person to read this check, which puts it in ``grader review``'s queue)."""

    fraction: float
    message: str
    suspect: bool = False
    skipped: bool = False
    review: bool = False


Judge = Callable[[Mapping[str, Any], Evidence], Verdict]
JUDGES: dict[str, Judge] = {}


def judge(kind: str) -> Callable[[Judge], Judge]:
    """Register a judge for a check kind."""

    def register(fn: Judge) -> Judge:
        JUDGES[kind] = fn
        return fn

    return register


def run_checks(rubric: Rubric, evidence: Evidence) -> tuple[CheckResult, ...]:
    """Every check of the rubric judged on evidence, in rubric order; never raises for a check that fails to judge."""
    return tuple(run_check(check, evidence) for check in rubric.checks)


def run_check(check: Check, evidence: Evidence) -> CheckResult:
    """One check judged on evidence: its CheckResult, status "error" when its judge raised."""
    try:
        fn = JUDGES.get(check.kind)
        if fn is None:
            raise LookupError(f"no judge for check kind '{check.kind}'")
        verdict = fn(check.params or {}, evidence)
    except Exception as exc:  # noqa: BLE001 - a broken check must not cost the other checks
        text = " ".join(str(exc).split())[:200]
        return _result(check, 0.0, "error", f"the grader could not judge this check ({type(exc).__name__}: {text}) "
                                            "— tell your instructor; your other checks are not affected")
    fraction = min(1.0, max(0.0, float(verdict.fraction))) if math.isfinite(verdict.fraction) else 0.0
    if verdict.skipped:
        status = "skipped"
    else:
        status = "pass" if fraction >= 1.0 else ("fail" if fraction <= 0.0 else "partial")
    return _result(check, 0.0 if verdict.skipped else fraction, status, verdict.message, verdict.suspect,
                   verdict.review)


def score(checks: Iterable[CheckResult]) -> Score:
    """Points earned out of points possible over the checks (a skipped check earns nothing and still counts)."""
    listed = list(checks)
    return Score(earned=round(sum(c.points for c in listed), 2), possible=round(sum(c.max_points for c in listed), 2))


def _result(check: Check, fraction: float, status: str, message: str, suspect: bool = False,
            review: bool = False) -> CheckResult:
    line = escaped_line(message, MAX_MESSAGE_CHARS)  # control characters a submission wrote are escaped
    earned = check.points if fraction >= 1.0 else min(check.points, round(check.points * fraction, 2))
    return CheckResult(id=check.id, title=check.title, kind=check.kind, points=earned,
                       max_points=check.points, status=status, visibility=check.visibility,  # type: ignore[arg-type]
                       message=line, suspect=suspect, review=review)


# ---------------------------------------------------------------------------------------------
# artifacts


@judge("artifacts")
def judge_artifacts(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Each required file (a glob such as plots/*.png; "a|b" when either will do) exists and is what it claims; credit
    by the fraction that are."""
    patterns = list(params["files"])
    ok, missing, invalid = 0, [], []
    for pattern in patterns:
        either = pattern.split("|")
        matches = [rel for rel in ev.files if any(_glob(rel, one) for one in either)]
        if not matches:
            missing.append(" or ".join(either))
            continue
        bad = [(rel, why) for rel in matches if (why := _artifact_problem(ev, rel))]
        if bad:
            invalid.append(f"{bad[0][0]} ({bad[0][1]})")
        else:
            ok += 1
    if ok == len(patterns):
        return Verdict(1.0, f"all {len(patterns)} required files are present and valid")
    found = [f"{ok} of {len(patterns)} required files are present and valid"]
    if missing:
        found.append(f"missing: {_listed(missing)}")
    if invalid:
        found.append(f"invalid: {_listed(invalid)}")
    return Verdict(ok / len(patterns), _say(found, "write each required file into your output dir (GRADER_OUTPUT_DIR) "
                                                   "in the format its name promises"))


def _glob(rel: str, pattern: str) -> bool:
    """fnmatch within one folder level: plots/*.png matches plots/a.png, not plots/old/a.png."""
    return rel.count("/") == pattern.count("/") and fnmatchcase(rel, pattern)


def _artifact_problem(ev: Evidence, rel: str) -> str | None:
    problem = ev.files.get(rel)
    if problem:
        return problem
    if rel.endswith(".keras"):
        evaluation = ev.evaluation_at(rel)
        if evaluation is not None and evaluation.test_accuracy is None:
            return evaluation.error or "the grader could not evaluate it"
    return None


# ---------------------------------------------------------------------------------------------
# search_space


@judge("search_space")
def judge_search_space(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """The grid lists enough values (spanning a ratio) and the random ranges cover the asked ranges; credit per requirement."""
    grid = ev.spaces.get("grid")
    rand = ev.spaces.get("random")
    if not isinstance(grid, GridSpace) and not isinstance(rand, RandomSpace):
        return Verdict(0.0, _say([f"no search space could be read ({_why_no_spaces(ev)})"],
                                 "write search_spaces.json with your grid values and random ranges"))
    met, unmet = 0, []
    grid_missing = not isinstance(grid, GridSpace)
    for name, need in dict(params.get("grid_min_values", {})).items():
        have = 0 if grid_missing else len(grid.values.get(name, ())) or (1 if name in grid.fixed else 0)
        if have >= need:
            met += 1
        else:
            unmet.append("no grid is declared" if grid_missing else f"the grid has {have} value{_s(have)} for {name} "
                                                                     f"(needs {need})")
    for name, ratio in dict(params.get("grid_span", {})).items():
        values = [] if grid_missing else [v for v in grid.values.get(name, ()) if finite_number(v) and v > 0]
        span = max(values) / min(values) if values else 1.0
        if span >= ratio * (1 - 1e-9):
            met += 1
        else:
            unmet.append("no grid is declared" if grid_missing else f"the grid's {name} values span {span:.3g}x "
                                                                     f"(needs {ratio:g}x)")
    for name, want in dict(params.get("random_ranges", {})).items():
        why = _range_shortfall(rand, name, want)
        if why is None:
            met += 1
        else:
            unmet.append(why)
    total = met + len(unmet)
    if not unmet:
        return Verdict(1.0, f"the grid and the random ranges meet all {total} search-space requirements")
    unique = list(dict.fromkeys(unmet))
    return Verdict(met / total, _say([f"{met} of {total} search-space requirements met: {_listed(unique, sep='; ')}"],
                                     "declare more grid values and wider random ranges, then rerun the searches"))


def _range_shortfall(space: Any, name: str, want: Mapping[str, Any]) -> str | None:
    low, high, sampling = want["min"], want["max"], want.get("sampling")
    if not isinstance(space, RandomSpace):
        return "no random search ranges are declared"
    rng = space.ranges.get(name)
    if rng is None:
        return f"the random search does not vary {name} (needs a range covering {_fmt(low)}..{_fmt(high)})"
    if rng.type == "choice":
        numbers = [v for v in rng.values if finite_number(v)]
        have_low, have_high = (min(numbers), max(numbers)) if numbers else (math.inf, -math.inf)
    else:
        have_low, have_high = rng.min, rng.max
    if have_low > low + 1e-12 * abs(low) or have_high < high - 1e-12 * abs(high):
        return (f"the random range for {name} is {_fmt(have_low)}..{_fmt(have_high)} "
                f"(needs to cover {_fmt(low)}..{_fmt(high)})")
    if sampling and rng.sampling != sampling:
        return f"the random range for {name} is sampled {rng.sampling} (needs {sampling})"
    return None


def _why_no_spaces(ev: Evidence) -> str:
    return _why_unread(ev, contract.SEARCH_SPACES_FILE)


def _why_unread(ev: Evidence, file: str) -> str:
    """The first problem of a file that could not be used: its own, the output dir's, or that it is missing."""
    problem = next(iter(ev.problems_in(file)), None) or next(iter(ev.problems_in("output dir")), None)
    return str(problem) if problem else f"{file}: file is missing"


# ---------------------------------------------------------------------------------------------
# grid_coverage


@judge("grid_coverage")
def judge_grid_coverage(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Each declared grid combination has a completed trial; credit = covered / max(grid size, min_combinations)."""
    search = params.get("search", "grid")
    minimum = int(params.get("min_combinations", 1))
    grid = ev.spaces.get(search)
    if not isinstance(grid, GridSpace):
        return Verdict(0.0, _say([f"no grid could be read ({_why_no_spaces(ev)})"] + _trial_note(ev),
                                 f"declare your grid in {contract.SEARCH_SPACES_FILE} and train every combination"))
    if grid.size > MAX_COMBINATIONS:
        return Verdict(0.0, _say([f"the grid declares {grid.size} combinations, more than the grader lists "
                                  f"({MAX_COMBINATIONS})"], "declare a grid you can train in the time box"))
    names = list(grid.values)
    combos = [tuple(_key(combo[n]) for n in names) for combo in grid.combinations()]
    done = {_values_of(t, names) for t in ev.completed_of(search) if not t.outside}
    tried = {_values_of(t, names) for t in ev.trials_of(search) if not t.completed}
    covered = [c for c in combos if c in done]
    missing = [c for c in combos if c not in done]
    failed = sum(1 for c in missing if c in tried)
    denominator = max(len(combos), minimum)
    fraction = len(covered) / denominator
    if fraction >= 1.0:
        return Verdict(1.0, f"the grid covers all {len(combos)} combinations")
    found = []
    if len(combos) < minimum:
        found.append(f"the grid declares {len(combos)} combination{_s(len(combos))} (the assignment asks for at "
                     f"least {minimum}) and covers {len(covered)} of them")
    else:
        found.append(f"the grid covers {len(covered)} of {len(combos)} combinations")
    if missing:
        shown = ["(" + ", ".join(f"{n}={_fmt(v)}" for n, v in zip(names, c)) + ")" for c in missing]
        found.append(f"missing: {_listed(shown)}")
    if failed:
        found.append(f"{failed} of the missing ran but did not complete")
    found += _trial_note(ev)
    action = "train every combination of your declared grid"
    if len(combos) < minimum:
        action = f"declare at least {minimum} combinations (more values per hyperparameter) and train every one"
    return Verdict(fraction, _say(found, action))


def _values_of(trial: Trial, names: Sequence[str]) -> tuple[Any, ...] | None:
    """The trial's values of names, each as _key makes it comparable; None when it lacks one."""
    if any(n not in trial.hyperparameters for n in names):
        return None
    return tuple(_key(trial.hyperparameters[n]) for n in names)


# ---------------------------------------------------------------------------------------------
# random_coverage


@judge("random_coverage")
def judge_random_coverage(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Enough distinct completed trials, inside the declared ranges, continuous ones really sampled; a third each."""
    search = params.get("search", "random")
    need = int(params["min_trials"])
    continuous = list(params.get("continuous", []))
    share = float(params.get("min_distinct_fraction", 0.8))
    space = ev.spaces.get(search)
    if not isinstance(space, RandomSpace):
        return Verdict(0.0, _say([f"no {search} search ranges could be read ({_why_no_spaces(ev)})"] + _trial_note(ev),
                                 f"declare your {search} search's ranges in {contract.SEARCH_SPACES_FILE} and run "
                                 f"at least {need} trials sampled from them"))
    done = ev.completed_of(search)
    inside = [t for t in done if not t.outside]
    names = sorted(space.ranges)
    distinct = len({tuple(_key(t.hyperparameters.get(n)) for n in names) for t in inside})
    count_part = min(1.0, distinct / need)
    range_part = len(inside) / len(done) if done else 0.0
    unsampled = [why for name in continuous if (why := _not_sampled(space, name, inside, share)) is not None]
    sampling_part = (len(continuous) - len(unsampled)) / len(continuous) if continuous else (1.0 if inside else 0.0)
    fraction = (count_part + range_part + sampling_part) / 3
    summary = f"{distinct} distinct completed {search} trial{_s(distinct)} inside the declared ranges (needs {need})"
    if fraction >= 1.0:
        tail = f", {_and(continuous)} sampled continuously" if continuous else ""
        return Verdict(1.0, summary + tail)
    if space.max_trials < need and ev.spaces_source.get(search) == contract.SEARCH_SPACES_FILE:
        summary += f"; it declares only max_trials={space.max_trials}"
    found = [summary]
    outside = [t for t in done if t.outside]
    if outside:
        first = outside[0]
        found.append(f"{len(outside)} of {len(done)} completed trials lie outside the declared ranges (first: "
                     f"{_trial_name(first)}: {', '.join(first.outside)})")
    actions = [f"run at least {need} {search} trials sampled from your declared ranges"]
    if unsampled and len(inside) >= 2:  # with fewer trials the count already says what is wrong
        found += unsampled
        actions.append(f"sample {_and(continuous)} from float ranges")
    return Verdict(fraction, _say([*found, *_trial_note(ev)], ", ".join(actions)))


def _not_sampled(space: RandomSpace, name: str, trials: Sequence[Trial], share: float) -> str | None:
    rng = space.ranges.get(name)
    if rng is None:
        return f"{name} is not sampled: the random search does not vary it"
    if rng.type != "float":
        return f"{name} is declared as {'a choice' if rng.type == 'choice' else 'an int range'}, not a float range"
    values = [t.hyperparameters[name] for t in trials if name in t.hyperparameters]
    if len(values) < 2:
        return f"too few completed trials to tell whether {name} is sampled"
    distinct = len({_key(v) for v in values})
    if distinct < max(2, math.ceil(share * len(values))):
        return f"{name} takes only {distinct} distinct value{_s(distinct)} in {len(values)} trials: a grid in disguise"
    return None


# ---------------------------------------------------------------------------------------------
# bayesian_coverage


@judge("bayesian_coverage")
def judge_bayesian_coverage(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Enough completed Bayesian trials, inside the declared ranges, its later trials nearer its best than random's; a
    third each.

    The concentration measure, for a search: take its completed trials inside its declared ranges, in the order they
    were recorded, and its best trial (highest val accuracy, the first on a tie). Each range maps a value to [0, 1]:
    (v - min) / (max - min) for a linear float or int range, the same on log(v) for a log range, and the value's
    position among the declared values (index / (count - 1)) for a choice of numbers; a choice of anything else
    gives 0 when equal and 1 when not. The distance of a trial to the best is the Euclidean distance over the ranged
    hyperparameters both have, divided by the square root of their number (so it lies in [0, 1]). The measure is the
    mean distance to the best of the later half of the trials (the last ceil(n / 2), the best trial left out). The
    third part passes when the Bayesian search's measure is at most the random search's minus `margin` (default 0);
    each search is measured in its own declared ranges, and each needs 3 such trials.
    """
    need = int(params["min_trials"])
    margin = float(params.get("margin", 0.0))
    space = ev.spaces.get("bayesian")
    if not isinstance(space, RandomSpace):
        return Verdict(0.0, _say([f"no bayesian search ranges could be read ({_why_no_spaces(ev)})"] + _trial_note(ev),
                                 f"declare your bayesian search's ranges in {contract.SEARCH_SPACES_FILE} and run at "
                                 f"least {need} Bayesian optimisation trials over them"))
    done = ev.completed_of("bayesian")
    inside = [t for t in done if not t.outside]
    count_part = min(1.0, len(inside) / need)
    range_part = len(inside) / len(done) if done else 0.0
    found = [f"{len(inside)} completed bayesian trial{_s(len(inside))} inside the declared ranges (needs {need})"]
    actions = []
    if count_part < 1.0:
        actions.append(f"run at least {need} Bayesian optimisation trials")
    outside = [t for t in done if t.outside]
    if outside:
        first = outside[0]
        found.append(f"{len(outside)} of {len(done)} completed trials lie outside the declared ranges (first: "
                     f"{_trial_name(first)}: {', '.join(first.outside)})")
        actions.append("sample only from your declared bayesian ranges")
    mine = concentration(space, inside)
    rand_space = ev.spaces.get("random")
    theirs = (concentration(rand_space, [t for t in ev.completed_of("random") if not t.outside])
              if isinstance(rand_space, RandomSpace) else None)
    if not isinstance(rand_space, RandomSpace):
        found.append("no random search ranges could be read, so there is nothing to hold its concentration against")
        actions.append(f"declare your random search's ranges in {contract.SEARCH_SPACES_FILE} and run it too")
        concentration_part = 0.0
    elif mine is None or theirs is None:
        lacking = [s for s, m in (("bayesian", mine), ("random", theirs)) if m is None]
        found.append(f"the {' and '.join(lacking)} search{'es have' if len(lacking) > 1 else ' has'} fewer than "
                     f"{MIN_CONCENTRATION_TRIALS} completed trials inside declared ranges, so its concentration "
                     "cannot be measured")
        actions.append("run both the random and the Bayesian search with several trials each")
        concentration_part = 0.0
    else:
        concentration_part = 1.0 if mine <= theirs - margin + 1e-12 else 0.0
        shown = (f"its later trials lie {mine:.3f} from its best on average against {theirs:.3f} for random search"
                 + (f" (needs {margin:g} less)" if margin else ""))
        found.append(shown)
        if not concentration_part:
            actions.append("let the Bayesian optimiser use its earlier trials (fewer initial random points, "
                           "BayesianOptimization rather than random sampling)")
    fraction = (count_part + range_part + concentration_part) / 3
    if fraction >= 1.0:
        return Verdict(1.0, "; ".join(found))
    return Verdict(fraction, _say([*found, *_trial_note(ev)], ", ".join(actions)))


MIN_CONCENTRATION_TRIALS = 3  # a best trial and at least one later trial besides it


def concentration(space: RandomSpace, trials: Sequence[Trial]) -> float | None:
    """The mean normalised distance of the later half of trials to the best of them (judge_bayesian_coverage says
    how); None with fewer than MIN_CONCENTRATION_TRIALS trials or nothing to measure."""
    if len(trials) < MIN_CONCENTRATION_TRIALS:
        return None
    best = max(trials, key=lambda t: float(t.val_accuracy or 0.0))
    later = [t for t in trials[len(trials) // 2:] if t is not best]
    distances = [d for t in later if (d := _distance(space, t, best)) is not None]
    return sum(distances) / len(distances) if distances else None


def _distance(space: RandomSpace, a: Trial, b: Trial) -> float | None:
    """The Euclidean distance of two trials over the ranges both have values for, each mapped to [0, 1], over
    sqrt(their number); None when they share none."""
    parts = []
    for name, rng in space.ranges.items():
        x, y = _position(rng, a.hyperparameters.get(name)), _position(rng, b.hyperparameters.get(name))
        if x is not None and y is not None:
            parts.append((x - y) ** 2)
        elif rng.type == "choice" and name in a.hyperparameters and name in b.hyperparameters:
            parts.append(0.0 if same_value(a.hyperparameters[name], b.hyperparameters[name]) else 1.0)
    return math.sqrt(sum(parts) / len(parts)) if parts else None


def _position(rng: Any, value: Any) -> float | None:
    """Where value lies in its range, from 0 to 1 (linear or log as declared; a numeric choice by its rank); None
    when that cannot be said (a missing or non-numeric value, a choice of non-numbers)."""
    if not finite_number(value):
        return None
    if rng.type == "choice":
        numbers = sorted({float(v) for v in rng.values if finite_number(v)})
        if len(numbers) != len(rng.values) or not numbers:
            return None
        index = next((i for i, v in enumerate(numbers) if same_value(v, value)), None)
        return None if index is None else (index / (len(numbers) - 1) if len(numbers) > 1 else 0.0)
    low, high, v = float(rng.min), float(rng.max), float(value)
    if rng.sampling == "log":
        if low <= 0 or v <= 0:
            return None
        low, high, v = math.log(low), math.log(high), math.log(v)
    return min(1.0, max(0.0, (v - low) / (high - low))) if high > low else 0.0


# ---------------------------------------------------------------------------------------------
# verified_training


@judge("verified_training")
def judge_verified_training(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Each search's claimed best val accuracy against the grader's re-training of the same configuration (grader
    verify): an equal share per search; a claim above the re-trained figure by more than `tolerance` earns half up
    to twice the tolerance, nothing beyond, and is suspect. Skipped until `grader verify --retrain` has run."""
    from grader.verify import claims_of

    tolerance = float(params.get("tolerance", 0.03))
    searches = tuple(params.get("searches") or contract.ALWAYS_SEARCHED)
    verification = ev.verification
    not_yet = Verdict(0.0, "not verified yet: the instructor re-trains the claimed configurations with grader verify "
                           "OUT --retrain", skipped=True)
    if verification is None:
        return not_yet
    claims = {c.search: c for c in claims_of(ev, searches)}
    parts, found, actions, suspect, pending = [], [], [], False, []
    for search in searches:
        claim, verified = claims.get(search), verification.of(search)
        if claim is None:
            parts.append(0.0)
            found.append(f"{search}: no completed trial to verify")
            actions.append(f"run the {search} search to completion")
            continue
        if verified is None or (verified.trial, verified.claimed_val_accuracy) != (claim.trial,
                                                                                  claim.claimed_val_accuracy):
            pending.append(search)
            continue
        config = ", ".join(f"{k} {_fmt(v)}" for k, v in verified.hyperparameters.items())
        if verified.problem is not None:
            parts.append(0.0)
            found.append(f"{search}: {escaped_line(verified.trial, 80)} cannot be re-trained "
                         f"({escaped_line(verified.problem, 120)})")
            actions.append("claim only configurations of the assignment's baseline CNN")
            continue
        if verified.retrained_val_accuracy is None:
            pending.append(search)
            continue
        claimed, got = verified.claimed_val_accuracy, verified.retrained_val_accuracy
        above = claimed - got
        said = (f"{search}: you claimed {claimed:.4f} val accuracy ({escaped_line(verified.trial, 80)}: {config}); "
                f"re-trained here with the same configuration and data: {got:.4f}")
        if above <= tolerance + 1e-12:
            parts.append(1.0)
            found.append(said)
        else:
            parts.append(0.5 if above <= 2 * tolerance + 1e-12 else 0.0)
            suspect = suspect or above > 2 * tolerance + 1e-12
            found.append(f"{said}, {above:.4f} below your claim (tolerance {tolerance:g})")
            actions.append("report the val accuracy your trials really reached")
    if pending:
        return not_yet
    fraction = sum(parts) / len(parts) if parts else 0.0
    if fraction >= 1.0:
        return Verdict(1.0, "; ".join(found))
    return Verdict(fraction, _say(found, ", ".join(dict.fromkeys(actions))), suspect=suspect)


# ---------------------------------------------------------------------------------------------
# manual_search


@judge("manual_search")
def judge_manual_search(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Enough completed manual trials, each with its reason, each a configuration not tried before; a third each.

    A reason counts when it has at least `min_reason_words` words (default 4). The message also sets the best
    manual trial against the best automated one (grid, random or Bayesian), for the student's comparison; how
    they compare earns nothing and costs nothing.
    """
    need = int(params.get("min_trials", 3))
    words = int(params.get("min_reason_words", 4))
    done = ev.completed_of("manual")
    if not done:
        ran = [name for name in contract.SEARCHES if ev.trials_of(name)]
        where = f"among your {_and(ran)} trials" if ran else f"({_why_unread(ev, contract.TRIALS_FILE)})"
        return Verdict(0.0, _say([f"no completed manual trial was found {where}"] + _trial_note(ev),
                                 f"choose {need} configurations by hand (manual_trials in tuning.py), each with a "
                                 "one-line reason, and run them with the manual search"))
    count_part = min(1.0, len(done) / need)
    unexplained = [t for t in done if len((t.reason or "").split()) < words]
    seen: set[tuple[Any, ...]] = set()
    repeats = []
    for trial in done:
        point = tuple(sorted((name, _key(value)) for name, value in trial.hyperparameters.items()))
        if point in seen:
            repeats.append(trial)
        seen.add(point)
    reason_part = 1 - len(unexplained) / len(done)
    distinct_part = 1 - len(repeats) / len(done)
    found = [f"{len(done)} completed manual trial{_s(len(done))} (needs {need})"]
    actions = []
    if count_part < 1.0:
        actions.append(f"run at least {need} manual trials")
    if unexplained:
        found.append(f"{len(unexplained)} without a reason of {words} words or more "
                     f"({_listed([_trial_name(t) for t in unexplained], sep='; ')})")
        actions.append("give each manual trial a one-line reason for choosing it")
    if repeats:
        found.append(f"{len(repeats)} repeating an earlier configuration "
                     f"({_listed([_trial_name(t) for t in repeats], sep='; ')})")
        actions.append("make each manual trial a configuration you have not tried yet")
    comparison = _manual_against_automated(ev)
    if count_part + reason_part + distinct_part >= 3.0:
        return Verdict(1.0, "; ".join([*found, comparison]))
    return Verdict((count_part + reason_part + distinct_part) / 3, _say([*found, comparison, *_trial_note(ev)],
                                                                         ", ".join(actions)))


def _manual_against_automated(ev: Evidence) -> str:
    """'best manual 0.9570 in 3 trials (20.6 s) against grid 0.9470 in 16 trials (25.5 s)', or why there is none."""
    def shown(search: str) -> str:
        done = ev.completed_of(search)
        seconds = sum(t.train_seconds or 0.0 for t in done)
        best = ev.best_of(search)
        return (f"{search} {float(best.val_accuracy or 0.0):.4f} in {len(done)} trial{_s(len(done))} "
                f"({_fmt_number(round(seconds, 1))} s)")

    automated = [s for s in contract.SEARCHES if s != "manual" and ev.best_of(s) is not None]
    if not automated:
        return "no automated search has a completed trial to compare the manual search with"
    rival = max(automated, key=lambda s: float(ev.best_of(s).val_accuracy or 0.0))  # type: ignore[union-attr]
    return f"best manual {shown('manual').removeprefix('manual ')} against the best automated search, {shown(rival)}"


# ---------------------------------------------------------------------------------------------
# model_architecture


@judge("model_architecture")
def judge_model_architecture(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Each search's exported model, as its evaluator described it, against the assignment's architecture.

    Requirements (each one the rubric names): `conv_blocks` (exactly this many Conv2D layers), `required_layers`
    (class names that must appear; partial credit by the share present), `params` ({"min", "max"}: the parameter
    count inside that range), `input_shape` (the input's shape without the batch axis). Credit per requirement met,
    averaged over the searches (default: every evaluated search); a model that was not evaluated meets none.
    """
    searches = list(params.get("searches") or [e.search for e in ev.evaluations])
    wants = [key for key in ARCHITECTURE_REQUIREMENTS if key in params]
    if not searches:
        return Verdict(0.0, _say(["no exported model was evaluated, so there is no architecture to check"],
                                 "save each search's best model to models/best_<search>.keras"))
    if not wants:
        return Verdict(1.0, "the rubric asks nothing of the models' architecture")
    earned, found, short = 0.0, [], False
    for search in searches:
        evaluation = ev.evaluation(search)
        arch = evaluation.architecture if evaluation is not None else None
        if evaluation is None or arch is None:
            found.append(_undescribed(ev, search))
            short = True
            continue
        parts = [_architecture_part(key, params[key], arch) for key in wants]
        earned += sum(fraction for fraction, _ in parts) / len(wants)
        short = short or any(fraction < 1.0 for fraction, _ in parts)
        found.append(f"{evaluation.path} has {_and([text for _, text in parts])}")
    fraction = earned / len(searches)
    if not short:
        return Verdict(1.0, "; ".join(found))
    return Verdict(fraction, _say(found, "build each search's model with the assignment's architecture "
                                         f"({_architecture_wanted(params, wants)}) and export that model"))


ARCHITECTURE_REQUIREMENTS = ("conv_blocks", "required_layers", "params", "input_shape")


def _architecture_part(key: str, want: Any, arch: Architecture) -> tuple[float, str]:
    """(fraction met, what was found) for one requirement of model_architecture."""
    if key == "conv_blocks":
        text = f"{show_int(arch.conv2d)} Conv2D layer{_s(arch.conv2d)}"
        return (1.0, text) if arch.conv2d == int(want) else (0.0, f"{text} (needs {int(want)})")
    if key == "required_layers":
        needed = [str(name) for name in want]
        missing = [name for name in needed if name not in arch.layers]
        if not missing:
            return 1.0, f"the required {_and([_class_name(n) for n in needed])} layers"
        among = "among its first " + show_int(len(arch.layers)) + " layers " if arch.layer_count > len(
            arch.layers) else ""
        shown = list(dict.fromkeys(arch.layers))
        listed = ", ".join(_class_name(n) for n in shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6
                                                                  else "")
        return ((len(needed) - len(missing)) / len(needed),
                f"no {_or([_class_name(n) for n in missing])} layer {among}(its layers: {listed or 'none'})")
    if key == "params":
        low, high = want.get("min"), want.get("max")
        text = f"{arch.params:,} parameters"
        if (low is None or arch.params >= low) and (high is None or arch.params <= high):
            return 1.0, text
        return 0.0, f"{text} (needs {_params_range(low, high)})"
    shape = tuple(int(a) for a in want)  # input_shape
    if arch.input_shape is None:
        return 0.0, f"no single input of a known shape (needs {_shape(shape)})"
    text = f"input shape {_shape(arch.input_shape)}"
    return (1.0, text) if tuple(arch.input_shape) == shape else (0.0, f"{text} (needs {_shape(shape)})")


def _architecture_wanted(params: Mapping[str, Any], wants: Sequence[str]) -> str:
    """What the rubric asks of the architecture, for the action: '2 Conv2D layers, 50,000 to 500,000 parameters'."""
    said = []
    for key in wants:
        if key == "conv_blocks":
            said.append(f"{int(params[key])} Conv2D layer{_s(int(params[key]))}")
        elif key == "required_layers":
            said.append(f"{_and([_class_name(str(n)) for n in params[key]])} layers")
        elif key == "params":
            said.append(f"{_params_range(params[key].get('min'), params[key].get('max'))} parameters")
        else:
            said.append(f"input shape {_shape(tuple(int(a) for a in params[key]))}")
    return ", ".join(said)


def _undescribed(ev: Evidence, search: str) -> str:
    """Why a search's model has no architecture to judge."""
    evaluation = ev.evaluation(search)
    model = contract.best_model_path(search)
    if evaluation is None:
        return f"{search}: {model} was {'not evaluated' if model in ev.files else 'not written'}"
    if evaluation.error and evaluation.error.startswith(evaluation.path):  # "... was not written", "... is too large"
        return f"{search}: {evaluation.error}"
    return f"{search}: {evaluation.path} could not be described ({evaluation.error or 'its evaluator said nothing'})"


def _class_name(name: str) -> str:
    """A layer's class name as the submission's model reported it, escaped and cut short."""
    return escaped_line(name, 60)


def _params_range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{int(low):,} to {int(high):,}"
    return f"at least {int(low):,}" if low is not None else f"at most {int(high):,}"


def _shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("any" if a is None else str(a) for a in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------------------------
# consistency


@judge("consistency")
def judge_consistency(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """The trials' claims against what the grader measured, a third of the points each; a failed part is suspect.

    (a) time: the train_seconds of all trials add up to no more than the run's measured wall time times
    `seconds_slack.factor` (default 1.1) plus `seconds_slack.seconds` (default 5). (b) tuner: where trials.jsonl was
    read and the search's KerasTuner project sits in the output dir, both count the same completed trials (the
    project may hold one more when the run did not complete: the trial the time box stopped between its two writes)
    and their best val accuracies differ by at most `tuner_tolerance` (default 0.001). (c) accuracy: each evaluated
    model's test accuracy is at most `above_val_tolerance` (default 0.05) above its search's best claimed val
    accuracy, at most `ceiling` when the rubric sets one, and a model without any claimed val accuracy is flagged.
    A part with nothing to compare is met.
    """
    searches = list(params.get("searches") or [s for s in contract.SEARCHES
                                               if ev.trials_of(s) or ev.evaluation(s) or s in ev.tuner_projects])
    parts = [_claimed_time(params, ev), _tuner_agreement(params, ev, searches), _claimed_accuracy(params, ev, searches)]
    failed = [text for ok, text in parts if not ok]
    if not failed:
        return Verdict(1.0, "; ".join(text for _, text in parts))
    met = [text for ok, text in parts if ok]
    return Verdict((len(parts) - len(failed)) / len(parts),
                   _say([*failed, *met], "flagged for review: report what your run really did (each trial's own "
                                         "train_seconds and val accuracy, and the model its best trial trained)"),
                   suspect=True)


def _claimed_time(params: Mapping[str, Any], ev: Evidence) -> tuple[bool, str]:
    """Part (a): the trials' claimed training time against the run's wall time."""
    slack = params.get("seconds_slack") or {}
    factor, extra = float(slack.get("factor", 1.1)), float(slack.get("seconds", 5.0))
    claimed = math.fsum(t.train_seconds for t in ev.trials
                        if t.train_seconds is not None and finite_number(t.train_seconds) and t.train_seconds > 0)
    if ev.run_seconds is None:
        return True, f"trials claim {claimed:.1f} s of training (no measured run time to hold it against)"
    if claimed > ev.run_seconds * factor + extra:
        return False, f"trials claim {claimed:.1f} s of training; the run lasted {ev.run_seconds:.1f} s"
    return True, f"trials claim {claimed:.1f} s of training in a run of {ev.run_seconds:.1f} s"


def _tuner_agreement(params: Mapping[str, Any], ev: Evidence, searches: Sequence[str]) -> tuple[bool, str]:
    """Part (b): trials.jsonl against the KerasTuner project of the same search in the output dir."""
    tolerance = float(params.get("tuner_tolerance", 0.001))
    if ev.trials_source != contract.TRIALS_FILE:
        return True, "no trials.jsonl to hold against KerasTuner's trials"
    compared, disagree = [], []
    for search in searches:
        project = ev.tuner_projects.get(search)
        if project is None or project.origin != "output":
            continue
        done, best = ev.completed_of(search), ev.best_of(search)
        claimed = float(best.val_accuracy) if best is not None and best.val_accuracy is not None else None
        extra, tuner_best = project.completed - len(done), project.best_val_accuracy
        partial = extra == 1 and ev.run_status != "completed"  # a trial stopped between its two writes
        counts_agree = extra == 0 or partial
        if claimed is None or tuner_best is None:
            bests_agree = claimed is None and (tuner_best is None or partial)
        else:  # the trial only the project holds may be the best one
            bests_agree = abs(claimed - tuner_best) <= tolerance + 1e-12 or (partial and tuner_best > claimed)
        compared.append(search)
        if not (counts_agree and bests_agree):
            disagree.append(f"{search}: trials.jsonl has {len(done)} completed trial{_s(len(done))}, best "
                            f"{_accuracy_text(claimed)}; its KerasTuner project {escaped_line(project.folder, 80)} "
                            f"has {project.completed}, best {_accuracy_text(project.best_val_accuracy)}")
    if disagree:
        return False, "; ".join(disagree)
    if not compared:
        return True, "no KerasTuner project in the output dir to hold trials.jsonl against"
    return True, f"trials.jsonl agrees with the KerasTuner trials of {_and(compared)}"


def _claimed_accuracy(params: Mapping[str, Any], ev: Evidence, searches: Sequence[str]) -> tuple[bool, str]:
    """Part (c): each evaluated model's test accuracy against its search's claimed val accuracy and the ceiling."""
    tolerance = float(params.get("above_val_tolerance", 0.05))
    ceiling = params.get("ceiling")
    good, bad = [], []
    for search in searches:
        evaluation = ev.evaluation(search)
        if evaluation is None or evaluation.test_accuracy is None:
            continue
        accuracy, best = evaluation.test_accuracy, ev.best_of(search)
        if ceiling is not None and accuracy > float(ceiling) + 1e-12:
            bad.append(f"{search}: test accuracy {accuracy:.4f} is above the calibrated ceiling {float(ceiling):g}")
        elif best is None or best.val_accuracy is None:
            bad.append(f"{search}: {evaluation.path} scores {accuracy:.4f} test accuracy, yet no completed {search} "
                       "trial claims a val accuracy")
        elif accuracy > float(best.val_accuracy) + tolerance + 1e-12:
            bad.append(f"{search}: test accuracy {accuracy:.4f} is {accuracy - float(best.val_accuracy):.4f} above "
                       f"the best claimed val accuracy {float(best.val_accuracy):.4f} (more than {tolerance:g})")
        else:
            good.append(f"{search} {accuracy:.4f} against {float(best.val_accuracy):.4f}")
    if bad:
        return False, "; ".join(bad)
    if not good:
        return True, "no evaluated model to hold the claimed val accuracy against"
    return True, f"test accuracy in line with the claimed val accuracy ({', '.join(good)})"


def _accuracy_text(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------------------------------------
# accuracy_threshold


@judge("accuracy_threshold")
def judge_accuracy_threshold(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Tiers on the grader's test accuracy of each search's exported model; a claimed val accuracy far off is suspect."""
    searches = list(params.get("searches", ["grid", "random"]))
    tiers = sorted(((float(t["min_accuracy"]), float(t["fraction"])) for t in params["tiers"]), reverse=True)
    tolerance = float(params.get("suspect_tolerance", 0.05))
    lowest = min(m for m, _ in tiers)
    total, found, suspect, weak = 0.0, [], False, False
    for search in searches:
        model = contract.best_model_path(search)
        evaluation = ev.evaluation(search)
        if evaluation is None or evaluation.test_accuracy is None:
            if model not in ev.files:
                found.append(f"{search}: {model} was not written")
            elif evaluation is None:
                found.append(f"{search}: {model} was not evaluated")
            else:
                found.append(f"{search}: {model} could not be evaluated ({evaluation.error or 'no accuracy'})")
            weak = True
            continue
        accuracy = evaluation.test_accuracy
        earned = max((f for m, f in tiers if accuracy >= m - 1e-12), default=0.0)
        total += earned
        reached = max((m for m, f in tiers if accuracy >= m - 1e-12), default=None)
        text = (f"{search}: test accuracy {accuracy:.4f} reaches the {reached:g} tier" if reached is not None
                else f"{search}: test accuracy {accuracy:.4f} is below the lowest tier {lowest:g}")
        weak = weak or earned < 1.0
        best = ev.best_of(search)
        if best is not None and abs(float(best.val_accuracy or 0.0) - accuracy) > tolerance:
            suspect = True
            text += (f" but its trials claim {float(best.val_accuracy or 0.0):.4f} val accuracy "
                     f"(gap {abs(float(best.val_accuracy or 0.0) - accuracy):.4f} > {tolerance:g}): flagged for review")
        found.append(text)
    fraction = total / len(searches) if searches else 0.0
    actions = []
    if suspect:
        actions.append("export the model your best trial trained and report its true val accuracy")
    elif weak:
        actions.append("save each search's best model to models/best_<search>.keras and raise its accuracy "
                       "(tune the learning rate, train longer)")
    message = "; ".join(found) + (" — " + "; ".join(actions) if actions else "")
    return Verdict(fraction, message, suspect=suspect)


# ---------------------------------------------------------------------------------------------
# comparison


@judge("comparison")
def judge_comparison(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """comparison.csv agrees with the trials: counts, best accuracy, total seconds; credit per agreeing cell."""
    acc_tol = float(params.get("accuracy_tolerance", 0.001))
    sec_abs = float(params.get("seconds_tolerance_s", 1.0))
    sec_rel = float(params.get("seconds_tolerance_fraction", 0.05))
    action = f"write {contract.COMPARISON_FILE} from your trials (one row per search, numbers as in your trials)"
    if ev.comparison is None:
        return Verdict(0.0, _say([f"no comparison table could be read ({_why_unread(ev, contract.COMPARISON_FILE)})"],
                                 action))
    searches = list(params.get("searches") or sorted({t.search for t in ev.trials}, key=contract.SEARCHES.index))
    if not ev.trials:
        return Verdict(0.0, _say(["there are no trials to hold comparison.csv against"] + _trial_note(ev),
                                 "run the searches so that trials.jsonl records every trial"))
    agree, total, wrong = 0, 0, []
    for search in searches:
        row = ev.comparison.get(search)
        mine = ev.trials_of(search)
        done = ev.completed_of(search)
        best = ev.best_of(search)
        seconds = [t.train_seconds for t in mine]
        expected: list[tuple[str, Any, Callable[[float, Any], bool]]] = [
            ("trials", len(mine), lambda got, want: got == want),
            ("completed_trials", len(done), lambda got, want: got == want),
            ("best_val_accuracy", None if best is None else best.val_accuracy,
             lambda got, want: abs(got - want) <= acc_tol),
        ]
        if all(s is not None for s in seconds):
            want_s = sum(float(s) for s in seconds if s is not None)
            expected.append(("total_train_seconds", want_s,
                             lambda got, want: abs(got - want) <= max(sec_abs, sec_rel * abs(want))))
        if row is None:
            total += len(expected)
            wrong.append(f"no row for {search}")
            continue
        for column, want, close in expected:
            total += 1
            cell = (row.get(column) or "").strip()
            got = _number(cell)
            if want is None:
                good = cell == ""
            else:
                good = got is not None and close(got, want)
            if good:
                agree += 1
            else:
                shown = _fmt_number(got) if got is not None else (cell or "empty")
                wrong.append(f"{search} {column} is {shown} in {contract.COMPARISON_FILE} but "
                             f"{_fmt_number(want)} in your trials")
    if total == 0:
        return Verdict(0.0, _say(["no search to compare"], action))
    if not wrong:
        return Verdict(1.0, f"{contract.COMPARISON_FILE} agrees with your trials ({total} values checked)")
    return Verdict(agree / total, _say([f"{agree} of {total} values agree with your trials: {_listed(wrong, sep='; ')}"],
                                       action))


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# answers


@judge("answer_choice")
def judge_answer_choice(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """A choice answer checked against the submission's own trials (top-k importance, better search, ranking) or a list."""
    key = params["key"]
    answer, missing = _answer(ev, key)
    if missing:
        return missing
    against = params.get("against")
    if against == "top_k":
        return _judge_top_k(key, answer, ev, int(params.get("k", 1)))
    if against == "ranking":
        return _judge_ranking(key, answer, ev, int(params.get("k", 3)))
    if against == "better_search":
        return _judge_better_search(key, answer, ev, float(params.get("margin", 0.0)), params.get("searches"))
    accepted = [str(v).strip().lower() for v in params["accepted"]]
    if str(answer).strip().lower() in accepted:
        return Verdict(1.0, f"{key}: {answer} is accepted")
    return Verdict(0.0, _say([f"{key}: {_quote(answer)} is not an accepted answer"], "reread the question and answer again"))


def _judge_top_k(key: str, answer: Any, ev: Evidence, k: int) -> Verdict:
    ranking = analysis.ranking([t.as_record() for t in ev.trials])
    if not isinstance(answer, str) or answer not in contract.HYPERPARAMETERS:
        return Verdict(0.0, _say([f"{key}: {_quote(answer)} is not a hyperparameter name"],
                                 f"answer one of {', '.join(contract.HYPERPARAMETERS)}"))
    if not ranking:
        return Verdict(0.0, _say([f"{key}: no hyperparameter varies across your completed trials, so {answer} "
                                  "cannot be checked"], "run the searches so that your trials vary the hyperparameters"))
    top = ", ".join(ranking[:k])
    if answer in ranking[:k]:
        return Verdict(1.0, f"{key}: {answer} ranks {ranking.index(answer) + 1} of {len(ranking)} in the variance "
                            f"decomposition of your trials (top {k}: {top})")
    where = (f"ranks {ranking.index(answer) + 1} of {len(ranking)}" if answer in ranking
             else "does not vary across your completed trials")
    return Verdict(0.0, _say([f"{key}: {answer} {where} in the variance decomposition of your trials (top {k}: {top})"],
                             "base the answer on your own trials (tunekit.analysis.ranking)"))


def _judge_ranking(key: str, answer: Any, ev: Evidence, k: int) -> Verdict:
    ranking = analysis.ranking([t.as_record() for t in ev.trials])
    if not isinstance(answer, list) or not answer:
        return Verdict(0.0, _say([f"{key}: expected a list of hyperparameter names, got {_quote(answer)}"],
                                 "list the hyperparameters you varied, most important first"))
    if not ranking:
        return Verdict(0.0, _say([f"{key}: no hyperparameter varies across your completed trials, so the ranking "
                                  "cannot be checked"], "run the searches so that your trials vary the hyperparameters"))
    top = ranking[:k]
    hits = [name for name in answer[:len(top)] if name in top]
    fraction = len(hits) / len(top)
    if fraction >= 1.0:
        return Verdict(1.0, f"{key}: your top {len(top)} match the top {len(top)} of your trials' variance "
                            f"decomposition ({', '.join(top)})")
    return Verdict(fraction, _say([f"{key}: {len(hits)} of your top {len(top)} are in the top {len(top)} of your "
                                   f"trials' variance decomposition ({', '.join(top)})"],
                                  "order the ranking by the share of variance each hyperparameter explains in your trials"))


def _judge_better_search(key: str, answer: Any, ev: Evidence, margin: float, searches: Sequence[str] | None) -> Verdict:
    """The answer names the search whose best completed trial has the highest val accuracy (within margin) among
    `searches`: by default grid, random, and any other search the submission ran (bayesian, manual)."""
    names = list(searches or [s for s in contract.SEARCHES if s in contract.ALWAYS_SEARCHED or ev.trials_of(s)])
    choices = _or(names)
    best = {s: ev.best_of(s) for s in names}
    if not isinstance(answer, str) or answer not in best:
        return Verdict(0.0, _say([f"{key}: {_quote(answer)} is not {choices}"], f"answer {choices}"))
    lacking = [s for s, b in best.items() if b is None]
    if lacking:
        every = "both searches" if len(names) == 2 else "every search"
        return Verdict(0.0, _say([f"{key}: the {' and '.join(lacking)} search{'es have' if len(lacking) > 1 else ' has'} "
                                  f"no completed trial, so {answer} cannot be checked"], f"run {every} to completion"))
    acc = {s: float(b.val_accuracy or 0.0) for s, b in best.items() if b is not None}
    others = [s for s in names if s != answer]
    ahead = max(others, key=lambda s: acc[s])
    shown = (f"{answer} {acc[answer]:.4f} against " + ", ".join(f"{s} {acc[s]:.4f}" for s in others)
             + " best val accuracy")
    if acc[answer] >= acc[ahead] - margin:
        return Verdict(1.0, f"{key}: {answer}, as your trials show ({shown})")
    return Verdict(0.0, _say([f"{key}: you answered {answer}, but your trials show {ahead} ahead ({shown})"],
                             "answer from your own trials"))


@judge("answer_numeric")
def judge_answer_numeric(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """A number (or one per search) checked against the trials or an expected value; credit per matching number."""
    key = params["key"]
    answer, missing = _answer(ev, key)
    if missing:
        return missing
    tolerance = float(params.get("tolerance", 0.0))
    relative = float(params.get("relative_tolerance", 0.0))
    against = params.get("against")
    if against is None:
        return _compare_numbers(key, {None: answer}, {None: float(params["expected"])}, tolerance, relative,
                                "reread the question and compute the number again")
    searches = list(params.get("searches", ["grid", "random"]))
    if not isinstance(answer, Mapping):
        return Verdict(0.0, _say([f"{key}: expected one number per search ({', '.join(searches)}), got {_quote(answer)}"],
                                 f"answer {key} as search: number pairs"))
    expected: dict[str | None, float | None] = {}
    for search in searches:
        if against == "best_val_accuracy":
            best = ev.best_of(search)
            expected[search] = None if best is None else float(best.val_accuracy or 0.0)
        else:
            seconds = [t.train_seconds for t in ev.trials_of(search)]
            expected[search] = (sum(float(s) for s in seconds if s is not None)
                                if seconds and all(s is not None for s in seconds) else None)
    what = "the best val_accuracy" if against == "best_val_accuracy" else "the total train_seconds"
    return _compare_numbers(key, {s: answer.get(s) for s in searches}, expected, tolerance, relative,
                            f"copy {what} of each search from your trials")


def _compare_numbers(key: str, answers: Mapping[str | None, Any], expected: Mapping[str | None, float | None],
                     tolerance: float, relative: float, action: str) -> Verdict:
    good, wrong = 0, []
    for name, want in expected.items():
        label = key if name is None else f"{key}.{name}"
        got = answers.get(name)
        if got is None:
            wrong.append(f"{label} is not answered")
        elif not finite_number(got):
            wrong.append(f"{label} is {_quote(got)}, not a number")
        elif want is None:
            wrong.append(f"{label} cannot be checked: your trials have no value for it")
        elif abs(float(got) - want) <= max(tolerance, relative * abs(want)):
            good += 1
        else:
            wrong.append(f"{label} is {_fmt_number(got)} but your trials give {_fmt_number(want)}")
    if not wrong:
        shown = ", ".join(f"{'' if n is None else n + ' '}{_fmt_number(answers.get(n))}" for n in expected)
        return Verdict(1.0, f"{key} matches your trials ({shown})")
    return Verdict(good / len(expected), _say([_listed(wrong, sep="; ")], action))


@judge("answer_text")
def judge_answer_text(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """Free text judged by length, required concepts and quoted numbers (equal parts); manual_review flags it for a person
    (``review``: the check goes to ``grader review``'s queue whatever its points, an unanswered question included).

    With check_claims, those parts are a floor worth half; the other half is the share of the answer's claims (the
    numbers it cites, the direction it states for `hyperparameter`, by default the one its key names:
    learning_rate_effect) that the submission's own trials support (grader.claims); no claim earns none of it."""
    key = params["key"]
    answer, missing = _answer(ev, key)
    review = bool(params.get("manual_review", False))
    if missing:
        return Verdict(missing.fraction, missing.message, review=review)
    if not isinstance(answer, str) or not answer.strip():
        return Verdict(0.0, _say([f"{key}: expected text, got {_quote(answer)}"], "answer in your own words"),
                       review=review)
    need_words = int(params.get("min_words", 0))
    concepts = [[c] if isinstance(c, str) else list(c) for c in params.get("concepts", [])]
    need_number = bool(params.get("require_number", False))
    words = len(answer.split())
    lowered = answer.lower()
    absent = [group for group in concepts
              if not any(re.search(r"(?<![a-z0-9_])" + re.escape(alt.lower()), lowered) for alt in group)]
    parts = [min(1.0, words / need_words) if need_words else 1.0]
    if concepts:
        parts.append((len(concepts) - len(absent)) / len(concepts))
    has_number = bool(re.search(r"\d", answer))
    if need_number:
        parts.append(1.0 if has_number else 0.0)
    fraction = floor = sum(parts) / len(parts)
    review_note = ["marked for manual review"] if review else []
    said, claim_asks = [], []  # what the claims earned, when the rubric checks them
    if params.get("check_claims", False):
        hp = params.get("hyperparameter") or next((h for h in contract.HYPERPARAMETERS if key == f"{h}_effect"), None)
        judged = [c for c in claims.find_claims(answer, ev.trials, hyperparameter=hp, direction_margin=float(
            params.get("direction_margin", claims.DIRECTION_MARGIN))) if c.supported is not None]
        wrong = [c for c in judged if not c.supported]
        fraction = (floor + ((len(judged) - len(wrong)) / len(judged) if judged else 0.0)) / 2
        if not judged:
            said, claim_asks = ["no number or direction from your trials was found"], ["quote your own results"]
        elif wrong:
            said = [_listed([f'you wrote "{c.text}", but {c.evidence}' for c in wrong], sep="; ")]
            claim_asks = ["make every number and direction agree with your own trials"]
        else:
            kinds = [(sum(c.kind == kind for c in judged), kind) for kind in ("number", "direction")]
            said = [_and([f"{n} {kind}{_s(n)}" for n, kind in kinds if n]) + f" agree{'s' if len(judged) == 1 else ''} "
                    "with your trials"]
    if fraction >= 1.0:
        found = [f"{key}: {words} words" + (", names every required concept" if concepts else "")
                 + (", quotes numbers" if need_number else "")]
        return Verdict(1.0, "; ".join(found + said + review_note), review=review)
    found = [] if floor >= 1.0 else [
        f"{key}: {words} word{_s(words)}" + (f" (needs {need_words})" if words < need_words else "")]
    found += [f"does not mention {g[0]}" + (f" (or {', '.join(g[1:])})" if len(g) > 1 else "") for g in absent]
    if need_number and not has_number:
        found.append("quotes no number")
    found += [f"{key}: {said[0]}" if not found else said[0]] if said else []
    asks = []
    if words < need_words:
        asks.append(f"write at least {need_words} words")
    if absent:
        asks.append(f"discuss {_and([g[0] for g in absent])}")
    if need_number and not has_number:
        asks.append("quote numbers from your trials")
    return Verdict(fraction, _say(found + review_note, ", ".join(asks + claim_asks)), review=review)


def _answer(ev: Evidence, key: str) -> tuple[Any, Verdict | None]:
    """The answer to key, or a failing verdict saying why there is none."""
    if ev.answers is None:
        problem = next((p for p in ev.problems if p.file.endswith(".ipynb")), None)
        why = str(problem) if problem else _why_unread(ev, contract.ANSWERS_FILE)
        return None, Verdict(0.0, _say([f"{key}: no answers could be read ({why})"],
                                       f"write {contract.ANSWERS_FILE} (or a notebook cell tagged answers) "
                                       f"answering {key}"))
    value = ev.answers.get(key)
    if value is None or value == "" or value == [] or value == {}:
        return None, Verdict(0.0, _say([f"{key} is not answered in {ev.answers_source or contract.ANSWERS_FILE}"],
                                       f"answer {key} from your own trials"))
    return value, None


# ---------------------------------------------------------------------------------------------
# runtime


@judge("runtime")
def judge_runtime(params: Mapping[str, Any], ev: Evidence) -> Verdict:
    """The run completed inside its time box having trained something; a time-out or crash earns the rubric's fraction."""
    status, message = ev.run_status, ev.run_message
    if status is None:
        return Verdict(0.0, "not run by the grader, so there is no time box to judge", skipped=True)
    if status == "completed":
        detail = f" ({message})" if message and message != "ran to the end" else ""
        if not any(t.completed for t in ev.trials):
            return Verdict(0.0, _say([f"ran to the end{detail} but recorded no completed trial"],
                                     "implement the searches so each finished trial is written to trials.jsonl"))
        return Verdict(1.0, f"ran to the end inside the time box{detail}")
    if status == "timed_out":
        return Verdict(float(params.get("timed_out_fraction", 0.0)),
                       _say([f"timed out: {message or 'stopped at the time limit'}"],
                            "size your searches to GRADER_TIME_BUDGET_S so the run ends in time"))
    if status == "crashed":
        return Verdict(float(params.get("crashed_fraction", 0.0)),
                       _say([f"crashed: {message or 'the run failed'}"],
                            "fix the error shown in the log (the files written before the crash were still graded)"))
    if status == "invalid_submission":
        return Verdict(0.0, _say([f"not run: {message or 'the submission is invalid'}"],
                                 "submit the files the assignment asks for"))
    return Verdict(0.0, _say([f"the grader could not run your submission: {message or status}"],
                             "this is not your fault; your instructor will rerun it"))


# ---------------------------------------------------------------------------------------------
# Message helpers


def _trial_note(ev: Evidence) -> list[str]:
    """One message part naming the first problem in the trial files (and how many more), or nothing."""
    found = [p for p in ev.problems
             if p.file == contract.TRIALS_FILE or p.file.endswith(("/trial.json", "/oracle.json"))
             or p.file.startswith(contract.CV_RESULTS_PREFIX)]
    if not found:
        return []
    more = f" (and {len(found) - 1} more problem{_s(len(found) - 1)} in your trial files)" if len(found) > 1 else ""
    return [f"{found[0]}{more}"]


def _trial_name(trial: Trial) -> str:
    """'trial 03, trials.jsonl line 4': a trial as a message names it (its id escaped and cut short)."""
    return f"trial {escaped_line(trial.trial_id, 40)}, {trial.source}"


def _say(found: Sequence[str], action: str) -> str:
    return "; ".join(part for part in found if part) + " — " + action


def _listed(items: Sequence[str], *, sep: str = ", ") -> str:
    """The first LISTED items, then how many more."""
    if len(items) <= LISTED:
        return sep.join(items)
    return sep.join(items[:LISTED]) + f" and {len(items) - LISTED} more"


def _and(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _or(items: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return " or ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + f" or {items[-1]}"


def _key(value: Any) -> Any:
    """A hyperparameter value made comparable: numbers to 9 significant digits (0.1 + 0.2 == 0.3, 32 == 32.0).

    An integer too large for a float (grader.parse refuses those, so only a hand-built
    Evidence holds one) is compared as it is.
    """
    return float(f"{value:.9g}") if finite_number(value) else value


def _fmt(value: Any) -> str:
    """A value for a message: floats as %g, anything else by grader.parse.show_value (cut short, never raising)."""
    return f"{value:g}" if isinstance(value, float) else show_value(value)


def _fmt_number(value: Any) -> str:
    """A number as a message shows it: ints as they are, floats to 4 significant decimals (0.947, 236.1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return show_int(value)
    if not isinstance(value, float) or not math.isfinite(value):
        return show_value(value)
    text = f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _quote(value: Any) -> str:
    """A submitted value quoted as Python writes it, at most 60 characters, whatever its size."""
    return show_value(value, 60)


def _s(n: int) -> str:
    return "" if n == 1 else "s"
