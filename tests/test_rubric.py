"""Tests for the rubric format: the shipped rubrics, the per-kind params schema, and that no rubric makes the grader raise."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from grader import template
from grader.checks import JUDGES, run_checks
from grader.evidence import gather
from grader.result import CHECK_STATUSES
from grader.rubric import RubricError, load_rubric, rubric_problems
from test_evidence import REFERENCE_EVALUATIONS, reference_output

RUBRICS = ROOT / "grader" / "rubrics"
QUICK_DOC = json.loads((RUBRICS / "quick.json").read_text())


# ---------------------------------------------------------------------------------------------
# The shipped rubrics


@pytest.mark.parametrize("name", ["quick", "full"])
def test_the_shipped_rubrics_are_valid_and_worth_100_points(name: str) -> None:
    rubric = load_rubric(RUBRICS / f"{name}.json")
    assert rubric.profile == name and rubric.max_points == 100
    # a rubric asks for Bayesian optimisation and a manual search by choice (week_quick does); the course's full
    # rubric also holds the claims against the grader's measurements (verified_training needs grader verify first)
    by_choice = {"bayesian_coverage", "manual_search", "verified_training"}
    cross_checks = {"model_architecture", "consistency"}
    assert {c.kind for c in rubric.checks} == set(JUDGES) - by_choice - (cross_checks if name == "quick" else set())
    claims = [c.params.get("check_claims", False) for c in rubric.checks if c.kind == "answer_text"]
    assert claims == [name == "full"] * len(claims)
    assert "calibration" not in rubric.raw
    assert all(c.title and c.params is not None for c in rubric.checks)


def test_the_quick_rubric_asks_for_what_the_reference_quick_profile_does() -> None:
    checks = {c.id: c.params for c in load_rubric(RUBRICS / "quick.json").checks}
    assert checks["grid-coverage"] == {"min_combinations": 16}
    assert checks["random-coverage"]["min_trials"] == 8
    assert [t["min_accuracy"] for t in checks["accuracy-grid"]["tiers"]] == [0.85, 0.90, 0.92]
    assert checks["accuracy-grid"]["suspect_tolerance"] == 0.05


def test_the_full_rubric_has_the_gpu_tiers_and_the_lectures_grid() -> None:
    checks = {c.id: c.params for c in load_rubric(RUBRICS / "full.json").checks}
    assert checks["grid-coverage"] == {"min_combinations": 72}
    assert [t["min_accuracy"] for t in checks["accuracy-grid"]["tiers"]] == [0.97, 0.98, 0.99]
    assert checks["search-space"]["grid_span"] == {"learning_rate": 100}


def test_the_students_copy_of_the_quick_rubric_is_still_a_valid_rubric(tmp_path: Path) -> None:
    path = tmp_path / "quick.json"
    path.write_bytes(template.student_rubric(RUBRICS / "quick.json"))
    assert load_rubric(path).max_points == 100  # the quick rubric has no hidden check to drop


# ---------------------------------------------------------------------------------------------
# The per-kind params schema


def with_check(index: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(QUICK_DOC)
    check = doc["checks"][index]
    for key, value in changes.items():
        if value is None:
            check.pop(key, None)
        else:
            check[key] = value
    return doc


def with_params(index: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(QUICK_DOC)
    params = doc["checks"][index]["params"]
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return doc


def index_of(kind: str) -> int:
    return next(i for i, c in enumerate(QUICK_DOC["checks"]) if c["kind"] == kind)


@pytest.mark.parametrize(("doc", "problems"), [
    (with_check(0, kind="best_loss"),
     ["$.checks[0].kind: 'best_loss' is not one of ['artifacts', 'search_space', 'grid_coverage', 'random_coverage', "
      "'bayesian_coverage', 'manual_search', 'verified_training', 'model_architecture', 'consistency', 'accuracy_threshold', 'comparison', 'answer_choice', 'answer_numeric', 'answer_text', 'runtime']"]),
    (with_check(0, params=None), ["$.checks[0]: 'params' is a required property"]),
    (with_params(0, files=[]), ["$.checks[0].params.files: [] should be non-empty"]),
    (with_params(0, files=["../secret"]),
     ["$.checks[0].params.files[0]: '../secret' does not match '^(?![/.])(?!.*/\\\\.\\\\.?(/|$))[^\\\\\\\\]+$'"]),
    (with_params(index_of("grid_coverage"), min_combos=3),
     ["$.checks[2].params: Additional properties are not allowed ('min_combos' was unexpected)"]),
    (with_params(index_of("accuracy_threshold"), tiers=[{"min_accuracy": 0.9, "fraction": 1.5}]),
     ["$.checks[4].params.tiers[0].fraction: 1.5 is greater than the maximum of 1"]),
    (with_params(index_of("random_coverage"), min_trials=None), ["$.checks[3].params: 'min_trials' is a required property"]),
    (with_params(index_of("answer_choice"), key="better_search"),
     ["$.checks[7].params.key: 'most_important_hyperparameter' was expected"]),
    (with_params(index_of("search_space"), grid_span={"lr": 10}),
     ["$.checks[1].params.grid_span: 'lr' is not one of ['learning_rate', 'batch_size', 'epochs', 'filters', "
      "'kernel_size', 'dropout', 'l1', 'l2']"]),
    (with_check(index_of("runtime"), params=None), []),
])
def test_each_kinds_params_are_validated(doc: dict[str, Any], problems: list[str]) -> None:
    assert rubric_problems(doc) == problems


def test_a_choice_needs_exactly_one_of_against_and_accepted() -> None:
    both = with_params(index_of("answer_choice"), accepted=["learning_rate"])
    assert rubric_problems(both)[0].endswith("is not valid under any of the given schemas")
    only_accepted = with_params(index_of("answer_choice"), against=None, k=None, accepted=["learning_rate"])
    assert rubric_problems(only_accepted) == []


def test_an_invalid_rubric_file_is_one_rubric_error_listing_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(with_check(0, kind="best_loss", points=-1)))
    with pytest.raises(RubricError) as err:
        load_rubric(path)
    assert err.value.problems == [
        "$.checks[0].kind: 'best_loss' is not one of ['artifacts', 'search_space', 'grid_coverage', 'random_coverage', "
        "'bayesian_coverage', 'manual_search', 'verified_training', 'model_architecture', 'consistency', 'accuracy_threshold', 'comparison', 'answer_choice', 'answer_numeric', 'answer_text', 'runtime']",
        "$.checks[0].points: -1 is less than the minimum of 0"]


# ---------------------------------------------------------------------------------------------
# No rubric, however malformed, makes the grader raise


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def _mutate(doc: Any, data: st.DataObject, values: st.SearchStrategy[Any] = _json) -> Any:
    """doc with one value somewhere inside it replaced by one drawn from values."""
    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 4)) == 0:
        return data.draw(values)
    if isinstance(doc, dict):
        key = data.draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _mutate(doc[key], data, values)}
    index = data.draw(st.integers(0, len(doc) - 1))
    return [*doc[:index], _mutate(doc[index], data, values), *doc[index + 1:]]


def _load_or_refuse(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_bytes(raw)
        try:
            load_rubric(path)
        except RubricError as exc:
            assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.text(max_size=300).map(str.encode) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_text_is_a_rubric_or_a_rubric_error(raw: bytes) -> None:
    _load_or_refuse(raw)


@pytest.mark.parametrize("raw", [b"\x80{}", b"[" * 100_000], ids=["not-utf8", "nested-too-deeply"])
def test_undecodable_or_too_deep_bytes_are_a_rubric_error(raw: bytes) -> None:
    _load_or_refuse(raw)


HPS = ["learning_rate", "batch_size", "epochs", "filters", "kernel_size", "dropout", "l1", "l2"]
SEARCHES = ["grid", "random", "bayesian"]
_fraction = st.floats(0, 1)
_hp = st.sampled_from(HPS)
_searches = st.lists(st.sampled_from(SEARCHES), min_size=1, max_size=3, unique=True)
_answer_key = st.sampled_from(["best_val_accuracy", "search_seconds", "search_comparison", "better_search",
                               "most_important_hyperparameter", "learning_rate_effect", "not_asked"])
_number = st.floats(-1e3, 1e3)

PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "artifacts": st.fixed_dictionaries({"files": st.lists(st.sampled_from(
        ["trials.jsonl", "plots/*.png", "models/*.keras", "answers.yaml", "missing.txt", "*", "models/best_grid.keras"]),
        min_size=1, max_size=4, unique=True)}),
    "search_space": st.fixed_dictionaries({}, optional={
        "grid_min_values": st.dictionaries(_hp, st.integers(1, 5), max_size=3),
        "grid_span": st.dictionaries(_hp, st.floats(1, 1e4), max_size=3),
        "random_ranges": st.dictionaries(_hp, st.fixed_dictionaries(
            {"min": _number, "max": _number}, optional={"sampling": st.sampled_from(["linear", "log"])}), max_size=3),
    }).filter(bool),
    "grid_coverage": st.fixed_dictionaries({}, optional={"min_combinations": st.integers(1, 10**6)}),
    "random_coverage": st.fixed_dictionaries({"min_trials": st.integers(1, 100)}, optional={
        "search": st.sampled_from(["random", "bayesian"]), "continuous": st.lists(_hp, max_size=3, unique=True),
        "min_distinct_fraction": _fraction}),
    "bayesian_coverage": st.fixed_dictionaries({"min_trials": st.integers(1, 100)}, optional={"margin": _fraction}),
    "verified_training": st.fixed_dictionaries({}, optional={"searches": _searches, "tolerance": _fraction}),
    "manual_search": st.fixed_dictionaries({}, optional={"min_trials": st.integers(1, 100),
                                                         "min_reason_words": st.integers(1, 20)}),
    "model_architecture": st.fixed_dictionaries({}, optional={
        "searches": _searches, "conv_blocks": st.integers(0, 5),
        "required_layers": st.lists(st.sampled_from(["Conv2D", "MaxPooling2D", "Dropout", "Dense", "Flatten"]),
                                    min_size=1, max_size=4, unique=True),
        "params": st.fixed_dictionaries({}, optional={"min": st.integers(0, 10**7), "max": st.integers(0, 10**7)}
                                        ).filter(bool),
        "input_shape": st.lists(st.integers(1, 64), min_size=1, max_size=4)}).filter(
        lambda p: any(k in p for k in ("conv_blocks", "required_layers", "params", "input_shape"))),
    "consistency": st.fixed_dictionaries({}, optional={
        "searches": _searches, "seconds_slack": st.fixed_dictionaries({}, optional={
            "factor": st.floats(1, 10), "seconds": st.floats(0, 100)}),
        "tuner_tolerance": _fraction, "above_val_tolerance": _fraction, "ceiling": _fraction}),
    "accuracy_threshold": st.fixed_dictionaries({"tiers": st.lists(st.fixed_dictionaries(
        {"min_accuracy": _fraction, "fraction": _fraction}, optional={"margin": _fraction}), min_size=1, max_size=4)},
        optional={"searches": _searches, "suspect_tolerance": _fraction}),
    "comparison": st.fixed_dictionaries({}, optional={
        "searches": _searches, "accuracy_tolerance": _fraction, "seconds_tolerance_s": st.floats(0, 100),
        "seconds_tolerance_fraction": _fraction}),
    "answer_choice": st.one_of(
        st.fixed_dictionaries({"key": st.just("most_important_hyperparameter"), "against": st.just("top_k")},
                              optional={"k": st.integers(1, 8)}),
        st.fixed_dictionaries({"key": st.just("hyperparameter_ranking"), "against": st.just("ranking")},
                              optional={"k": st.integers(1, 8)}),
        st.fixed_dictionaries({"key": st.just("better_search"), "against": st.just("better_search")},
                              optional={"margin": _fraction}),
        st.fixed_dictionaries({"key": _answer_key, "accepted": st.lists(
            st.text(max_size=5) | st.integers() | st.booleans(), min_size=1, max_size=3)})),
    "answer_numeric": st.one_of(
        st.fixed_dictionaries({"key": _answer_key, "against": st.sampled_from(["best_val_accuracy", "search_seconds"])},
                              optional={"searches": _searches, "tolerance": st.floats(0, 10),
                                        "relative_tolerance": st.floats(0, 1)}),
        st.fixed_dictionaries({"key": _answer_key, "expected": _number}, optional={"tolerance": st.floats(0, 10)})),
    "answer_text": st.fixed_dictionaries({"key": _answer_key}, optional={
        "min_words": st.integers(0, 200), "concepts": st.lists(st.text(min_size=1, max_size=6) | st.lists(
            st.text(min_size=1, max_size=6), min_size=1, max_size=3), max_size=3),
        "require_number": st.booleans(), "manual_review": st.booleans(), "check_claims": st.booleans(),
        "hyperparameter": _hp, "direction_margin": _fraction}),
    "runtime": st.fixed_dictionaries({}, optional={"timed_out_fraction": _fraction, "crashed_fraction": _fraction}),
}


@st.composite
def rubric_checks(draw: st.DrawFn) -> list[dict[str, Any]]:
    kinds = draw(st.lists(st.sampled_from(sorted(PARAMS)), min_size=1, max_size=6))
    return [{"id": f"c{i}", "kind": kind, "points": draw(st.floats(0, 50)), "title": "t",
             "visibility": draw(st.sampled_from(["visible", "hidden", "after_due_date"])),
             "params": draw(PARAMS[kind])} for i, kind in enumerate(kinds)]


def test_every_kind_has_a_params_strategy() -> None:
    assert sorted(PARAMS) == sorted(JUDGES)


@pytest.fixture(scope="module")
def reference_evidence(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = reference_output(tmp_path_factory.mktemp("rubric") / "out")
    return gather(out, run_status="completed", run_message="ran to the end", evaluations=REFERENCE_EVALUATIONS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(checks=rubric_checks(), empty=st.booleans())
def test_every_rubric_the_schema_accepts_is_judged_without_an_error(checks: list[dict[str, Any]], empty: bool,
                                                                   reference_evidence: Any) -> None:
    doc = {**QUICK_DOC, "checks": checks}
    assert rubric_problems(doc) == []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(json.dumps(doc))
        rubric = load_rubric(path)
        evidence = gather(Path(tmp) / "nothing", run_status="crashed") if empty else reference_evidence
        results = run_checks(rubric, evidence)
    assert [(c.id, c.message) for c in results if c.status == "error"] == []
    assert all(c.status in CHECK_STATUSES and 0 <= c.points <= c.max_points for c in results)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_rubric_never_makes_the_schema_check_raise(data: st.DataObject) -> None:
    problems = rubric_problems(_mutate(QUICK_DOC, data))
    assert all(isinstance(p, str) for p in problems)


def test_a_shipped_rubric_is_named_by_its_name_and_a_file_wins_over_a_name(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.rubric import SHIPPED, resolve_rubric, shipped_rubrics

    assert shipped_rubrics() == ("cifar10_full", "cifar10_quick", "full", "quick", "week_quick")
    assert resolve_rubric("full") == SHIPPED / "full.json"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").write_text("{}")
    assert resolve_rubric("quick") == Path("quick")


def test_an_unknown_rubric_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    from grader.rubric import RubricError, resolve_rubric

    with pytest.raises(RubricError) as err:
        resolve_rubric(tmp_path / "nope.json")
    assert str(err.value) == (f"invalid rubric {tmp_path / 'nope.json'}: cannot read it: no such file, and the "
                              f"rubrics shipped with the grader are cifar10_full, cifar10_quick, full, quick, week_quick")
