"""tunekit.report: the student's own answers laid over the derived ones."""

from __future__ import annotations

from pathlib import Path

from tunekit.report import merge_answers

DERIVED = {"better_search": "grid", "best_val_accuracy": {"grid": 0.95, "random": 0.91}, "learning_rate_effect": "derived"}


def test_blank_answers_keep_the_derived_ones_even_inside_nested_answers(tmp_path: Path) -> None:
    own = tmp_path / "answers.yaml"
    own.write_text("contract_version: 1\nbetter_search:\nbest_val_accuracy:\n  grid:\n  random: 0.9\n"
                   "learning_rate_effect: 'my own words'\n")
    assert merge_answers(DERIVED, own) == {"better_search": "grid", "best_val_accuracy": {"grid": 0.95, "random": 0.9},
                                           "learning_rate_effect": "my own words"}


def test_without_an_answers_file_the_derived_answers_stand(tmp_path: Path) -> None:
    assert merge_answers(DERIVED, tmp_path / "missing.yaml") == DERIVED
