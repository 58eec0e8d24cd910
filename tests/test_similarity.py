"""Tests for grader.similarity: copied trial logs and answers found across a class, with the evidence a person reads.

Students are written as the grader leaves them (OUT/<student>/result.json and the grader's copy of the output dir,
collected/outputs/ with trials.jsonl and answers.yaml) and read back through grader.evidence.gather.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

from test_export import make_result

from grader.result import write_result
from grader.similarity import (
    Pair,
    TrialFacts,
    Work,
    find_pairs,
    normalised_words,
    similar_pairs,
)

GRID = list(itertools.product([0.001, 0.01], [32, 64], [8, 16]))  # learning_rate, batch_size, filters: 8 points
COMPARISON = ("The grid search found the better model with {a} validation accuracy in 8 trials and {s} seconds of "
              "training, against {b} for the random search, so the grid was worth its extra time here.")


def trial_lines(seed: int, *, accuracies: list[float] | None = None, seconds: list[float] | None = None) -> list[dict]:
    """A student's trials: the 8 grid points, then 4 random ones, accuracies and seconds drawn from seed."""
    rng = random.Random(seed)
    points = [("grid", f"{i:02d}", {"learning_rate": lr, "batch_size": bs, "filters": f})
              for i, (lr, bs, f) in enumerate(GRID)]
    points += [("random", f"{i:02d}", {"learning_rate": round(10 ** rng.uniform(-4, -2), 8), "batch_size": 32,
                                       "filters": 8}) for i in range(4)]
    lines = []
    for n, (search, trial_id, hps) in enumerate(points):
        accuracy, drawn_seconds = rng.randint(850, 960) / 1000, round(rng.uniform(5, 40), 3)
        accuracy = accuracies[n] if accuracies else accuracy
        lines.append({"contract_version": 1, "search": search, "trial_id": trial_id, "hyperparameters": hps,
                      "status": "COMPLETED", "val_accuracy": accuracy, "val_loss": 0.3,
                      "history": {"val_accuracy": [accuracy]},
                      "train_seconds": seconds[n] if seconds else drawn_seconds,
                      "finished_at": "2026-11-26T20:07:54Z"})
    return lines


def write_student(out: Path, student_id: str, trials: list[dict] | None, answers: dict | None = None) -> Path:
    """A graded student: result.json, and collected/outputs/ holding trials.jsonl and answers.yaml when given."""
    write_result(out / student_id / "result.json", make_result(student_id))
    outputs = out / student_id / "collected" / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    if trials is not None:
        (outputs / "trials.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trials), "utf-8")
    if answers is not None:
        (outputs / "answers.yaml").write_text(
            "contract_version: 1\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in answers.items()), "utf-8")
    return outputs


def comparison(seed: int) -> dict:
    rng = random.Random(seed)
    return {"search_comparison": COMPARISON.format(a=f"{rng.randint(900, 960) / 1000:.4f}",
                                                   b=f"{rng.randint(850, 899) / 1000:.4f}",
                                                   s=f"{rng.uniform(100, 300):.1f}"),
            "better_search": "grid"}


def test_a_copied_trial_log_is_a_pair_with_its_identical_trials_named(tmp_path: Path) -> None:
    copied = trial_lines(1)
    write_student(tmp_path, "s001", copied)
    write_student(tmp_path, "s002", copied)
    write_student(tmp_path, "s003", trial_lines(3))
    found = similar_pairs(tmp_path)
    assert found.students == 3
    assert found.pairs == (Pair("s001", "s002", "trials", 1.0,
                                "12 of 12 trials identical: grid 00..07, random 00..03 same accuracies to 4 decimals; "
                                "train_seconds identical too in 12: the same log handed in twice"),)


def test_the_same_accuracies_with_other_seconds_point_at_the_code_not_a_copied_file(tmp_path: Path) -> None:
    accuracies = [line["val_accuracy"] for line in trial_lines(1)]
    write_student(tmp_path, "s001", trial_lines(1))
    rerun = trial_lines(1, seconds=[20.0 + i for i in range(12)])
    write_student(tmp_path, "s002", rerun)
    assert [t["val_accuracy"] for t in rerun] == accuracies
    (pair,) = similar_pairs(tmp_path).pairs
    assert pair.evidence == ("12 of 12 trials identical: grid 00..07, random 00..03 same accuracies to 4 decimals; "
                             "train_seconds differ: the same code and seed also give these, compare the code")


def test_a_copied_log_with_edited_accuracies_is_found_by_its_seconds(tmp_path: Path) -> None:
    original = trial_lines(1)
    edited = [dict(t, val_accuracy=round(t["val_accuracy"] - 0.011, 4)) for t in original]
    write_student(tmp_path, "s001", original)
    write_student(tmp_path, "s002", edited)
    (pair,) = similar_pairs(tmp_path).pairs
    assert (pair.kind, pair.score) == ("trials", 1.0)
    assert pair.evidence == ("12 of 12 trials have identical train_seconds (grid 00..07, random 00..03) though only 0 "
                             "have the same accuracy: one log, edited")


def test_ten_of_twelve_identical_trials_is_a_pair_and_nine_is_not(tmp_path: Path) -> None:
    base = trial_lines(1)
    ten = [dict(t, val_accuracy=0.5, train_seconds=1.5 + i) if i >= 10 else t for i, t in enumerate(base)]
    nine = [dict(t, val_accuracy=0.5, train_seconds=1.5 + i) if i >= 9 else t for i, t in enumerate(base)]
    write_student(tmp_path / "a", "s001", base)
    write_student(tmp_path / "a", "s002", ten)
    write_student(tmp_path / "b", "s001", base)
    write_student(tmp_path / "b", "s002", nine)
    (pair,) = similar_pairs(tmp_path / "a").pairs
    assert pair.score == 0.8333
    assert pair.evidence.startswith("10 of 12 trials identical: grid 00..07, random 00..01 same accuracies")
    assert similar_pairs(tmp_path / "b").pairs == ()


def test_honest_students_who_share_a_few_grid_accuracies_are_not_a_pair(tmp_path: Path) -> None:
    one = trial_lines(1)
    other = trial_lines(2)
    other[:3] = one[:3]  # three grid points with the same accuracy and seconds: fewer than MIN_TRIALS and 80 %
    write_student(tmp_path, "s001", one)
    write_student(tmp_path, "s002", other)
    assert similar_pairs(tmp_path).pairs == ()


def test_a_lightly_edited_answer_is_a_pair_and_the_evidence_quotes_it_as_one_clean_line(tmp_path: Path) -> None:
    text = comparison(1)["search_comparison"]
    edited = text.replace("so the grid was worth its extra time here", "so the grid was worth the extra time")
    hostile = "\x1b]0;pwned\x07\x1b[2J" + text
    write_student(tmp_path, "s001", trial_lines(1), {"search_comparison": hostile})
    write_student(tmp_path, "s002", trial_lines(2), {"search_comparison": edited})
    write_student(tmp_path, "s003", trial_lines(3), comparison(3))
    (pair,) = similar_pairs(tmp_path).pairs
    assert (pair.a, pair.b, pair.kind) == ("s001", "s002", "answers")
    assert pair.score == 0.7879  # 26 shared 5-grams of 33: the last words differ
    assert pair.evidence == ("search_comparison 0.79 similar: 'The grid search found the better model with 0.9080 "
                             "validation accuracy in 8 tri\u2026'")  # 80 characters, the ellipsis included


def test_answers_in_one_template_with_each_students_own_numbers_are_not_pairs_but_a_copy_among_them_is(
        tmp_path: Path) -> None:
    for n in range(8):
        write_student(tmp_path, f"s{n:03d}", trial_lines(n), comparison(n))
    write_student(tmp_path, "s100", trial_lines(100), comparison(5))
    pairs = similar_pairs(tmp_path).pairs
    assert [(p.a, p.b, p.kind, p.score) for p in pairs] == [("s005", "s100", "answers", 1.0)]


def test_short_choice_answers_are_never_compared(tmp_path: Path) -> None:
    answers = {"better_search": "grid", "most_important_hyperparameter": "learning_rate",
               "search_comparison": "grid was better, random was faster"}
    write_student(tmp_path, "s001", trial_lines(1), answers)
    write_student(tmp_path, "s002", trial_lines(2), answers)
    assert similar_pairs(tmp_path).pairs == ()


def test_a_trial_log_linked_to_another_students_file_is_not_read(tmp_path: Path) -> None:
    write_student(tmp_path, "s001", trial_lines(1))
    outputs = write_student(tmp_path, "s002", None)
    (outputs / "trials.jsonl").symlink_to(tmp_path / "s001" / "collected" / "outputs" / "trials.jsonl")
    assert similar_pairs(tmp_path).pairs == ()


def test_a_student_without_trials_or_answers_is_compared_with_nobody(tmp_path: Path) -> None:
    write_student(tmp_path, "s001", None)
    write_student(tmp_path, "s002", None)
    (tmp_path / "s003").mkdir()  # no result.json: not a graded student
    found = similar_pairs(tmp_path)
    assert (found.students, found.pairs) == (2, ())


def test_five_hundred_students_are_compared_in_well_under_a_second() -> None:
    rng = random.Random(0)
    keys = [("grid", (("batch_size", str(bs)), ("filters", str(f)), ("learning_rate", str(lr))))
            for lr, bs, f in GRID * 3]
    keys = [(s, k + (("rep", str(i)),)) for i, (s, k) in enumerate(keys)]  # 24 grid trials each

    def work(n: int) -> Work:
        trials = {key: TrialFacts(f"{i:02d}", rng.randint(850, 950) / 1000, round(rng.uniform(5, 40), 3))
                  for i, key in enumerate(keys)}
        a, b = rng.randint(850, 950) / 1000, rng.randint(850, 950) / 1000
        text = (f"Mean validation accuracy by learning_rate: 0.001: {a:.3f} over 8 trials, 0.01: {b:.3f} over 8 "
                f"trials. It explains {rng.randint(1, 90)}% of the variance in validation accuracy.")
        return Work(f"s{n:03d}", trials, {"learning_rate_effect": normalised_words(text)}, {})

    works = [work(n) for n in range(500)]
    for n in (400, 401, 402):  # four students hand in one log and one answer: six pairs of each
        works[n] = Work(f"s{n:03d}", works[7].trials, works[7].answers, {})
    started = time.perf_counter()
    pairs = find_pairs(works)
    seconds = time.perf_counter() - started
    four = ["s007", "s400", "s401", "s402"]
    assert [(p.a, p.b, p.kind) for p in pairs] == [
        *[(a, b, "trials") for a, b in itertools.combinations(four, 2)],
        *[(a, b, "answers") for a, b in itertools.combinations(four, 2)]]
    assert seconds < 3.0, f"{seconds:.2f} s for 500 students"  # 0.15 s here (2 busy cores)
