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

RUBRICS = ROOT / "rubrics"
QUICK_DOC = json.loads((RUBRICS / "quick.json").read_text())


# ---------------------------------------------------------------------------------------------
# The shipped rubrics


@pytest.mark.parametrize("name", ["quick", "full"])
def test_the_shipped_rubrics_are_valid_and_worth_100_points(name: str) -> None:
    rubric = load_rubric(RUBRICS / f"{name}.json")
    assert rubric.profile == name and rubric.max_points == 100
    assert {c.kind for c in rubric.checks} == set(JUDGES)
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
      "'accuracy_threshold', 'comparison', 'answer_choice', 'answer_numeric', 'answer_text', 'runtime']"]),
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
      "'kernel_size', 'dropout', 'l2']"]),
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
        "'accuracy_threshold', 'comparison', 'answer_choice', 'answer_numeric', 'answer_text', 'runtime']",
        "$.checks[0].points: -1 is less than the minimum of 0"]


# ---------------------------------------------------------------------------------------------
# No rubric, however malformed, makes the grader raise


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def _mutate(doc: Any, data: st.DataObject) -> Any:
    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 4)) == 0:
        return data.draw(_json)
    if isinstance(doc, dict):
        key = data.draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _mutate(doc[key], data)}
    index = data.draw(st.integers(0, len(doc) - 1))
    return [*doc[:index], _mutate(doc[index], data), *doc[index + 1:]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_a_rubric_or_a_rubric_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_bytes(raw)
        try:
            load_rubric(path)
        except RubricError as exc:
            assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)


@pytest.fixture(scope="module")
def reference_evidence(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = reference_output(tmp_path_factory.mktemp("rubric") / "out")
    return gather(out, run_status="completed", run_message="ran to the end", evaluations=REFERENCE_EVALUATIONS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_rubric_is_refused_with_problems_or_judged_without_an_error(data: st.DataObject,
                                                                              reference_evidence: Any) -> None:
    doc = _mutate(QUICK_DOC, data)
    problems = rubric_problems(doc)
    if problems:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(json.dumps(doc))
        rubric = load_rubric(path)
    results = run_checks(rubric, reference_evidence)
    assert [c for c in results if c.status not in CHECK_STATUSES or c.status == "error"] == []
