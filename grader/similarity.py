"""Pairs of students whose trial logs or free-text answers are identical or near-identical, with the evidence.

A lead for a person to follow, never a verdict: nothing here changes a grade. ``grader report`` shows the pairs.

Trials (:func:`trial_pair`). Each student's completed trials are keyed by (search, hyperparameter values); two students'
trials at the same key are *identical* when their validation accuracies agree to 4 decimals. A pair is reported when
at least :data:`TRIAL_SHARE` of the larger log's trials (and at least :data:`MIN_TRIALS`) are identical, or when as
many have the same ``train_seconds`` to the millisecond (wall-clock times never repeat in a re-run: the same file was
handed in twice, whatever was then done to its accuracies). The evidence says which: identical accuracies with
different seconds can also come from running the same code with the same seed, so the code is what to compare then.

Answers (:func:`answer_pair`). Each free-text answer (a string of at least :data:`MIN_WORDS` words; choices such as
``better_search: grid`` are equal by design and left out) is normalised (Unicode NFKC, lower case, escapes and
punctuation dropped, numbers kept, so answers derived from different trials differ) and cut into word 5-grams. Two
students' answers to the same question are near-identical when the Jaccard index of their 5-gram sets is at least
:data:`ANSWER_JACCARD`; the pair's score is its most similar question. Wording most of the class shares (a 5-gram
with no number in it, found in more than :data:`COMMON_SHARE` of a question's answers and more than :data:`MIN_COMMON`
of them: the phrases of the answers tuning.py derives, the question's own words) is left out first; 5-grams with a
number always count.

Scale (:func:`find_pairs`). Pairs are never compared all against all. Each student becomes sets of hashed tokens
(one per trial: key and accuracy; one per trial: key and seconds; one per 5-gram and question), and a prefix-filtered
similarity join finds the candidates: with tokens ordered rarest first across the class, two sets whose overlap must
reach a share t of each set share a token among the first ``n - ceil(t n) + 1`` of either, so only those prefixes
are indexed, and tokens every student has (a template's phrases, a trial everyone ran to the same accuracy) mostly
fall outside them. Candidates are then checked exactly. Students with the same trials (or the same answer) are
compared once, as a group. 500 students take well under a second (tests/test_similarity.py).

Reading (:func:`read_works`). Each graded student's trials and answers come from the grader's own copy of the output
dir (``OUT/<student>/collected/outputs``, the executed notebook's answers cell when there is no answers.yaml, the
KerasTuner files copied from the work dir) through grader.evidence.gather: bounded, never through a link.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from grader.evidence import Evidence, gather_graded
from grader.jsonio import finite_number
from grader.result import Result, read_results
from grader.text import one_line, plain_text

TRIAL_SHARE = 0.8  # identical trials / the larger log's completed trials
MIN_TRIALS = 4  # fewer identical trials than this is never a pair (one lucky grid point proves nothing)
ACCURACY_DECIMALS = 4
SECONDS_DECIMALS = 3
ANSWER_JACCARD = 0.6
COMMON_SHARE = 0.25  # a 5-gram without a number in more than this share of a question's answers is boilerplate
MIN_COMMON = 5  # ... and in more than this many (a small class's copies are never taken for boilerplate)
SHINGLE_WORDS = 5
MIN_WORDS = 8  # a free-text answer shorter than this is not compared
QUOTE_CHARS = 80  # the answer quoted in a pair's evidence
TRIAL_ID_CHARS = 12
MAX_ANSWER_CHARS = 20_000  # of one answer, normalised (answers.yaml is bounded; this bounds the work per answer)
_WORD = re.compile(r"[^\W_]+(?:[.'][^\W_]+)*")  # words and numbers such as 0.9470 or don't

Kind = Literal["trials", "answers"]


@dataclass(frozen=True)
class Pair:
    """Two students (``a`` < ``b``, by student id) whose trials or answers look copied, how much, and why (one line).

    ``score`` is the share of identical trials, or the Jaccard index of the most similar answer; ``evidence`` is
    plain one-line text (no escape or control character) that may quote a student's words: escape it for HTML.
    """

    a: str
    b: str
    kind: Kind
    score: float
    evidence: str


@dataclass(frozen=True)
class TrialFacts:
    """What is compared of one trial: its id (as written), accuracy to 4 decimals, seconds to the millisecond."""

    trial_id: str
    accuracy: float
    seconds: float | None


@dataclass(frozen=True)
class Work:
    """One student's trials and free-text answers, as compared.

    ``trials`` maps (search, ((hyperparameter, value), ...)) to the first completed trial with those values, in the
    order they were read; ``answers`` maps a question to its normalised words.
    """

    student_id: str
    trials: Mapping[tuple[str, tuple[tuple[str, str], ...]], TrialFacts] = field(default_factory=dict)
    answers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    quotes: Mapping[str, str] = field(default_factory=dict)  # a question -> the answer as written, one line, cut


@dataclass(frozen=True)
class Similarity:
    """Every pair found in a results folder, how many students were compared, and the result files not read."""

    pairs: tuple[Pair, ...]
    students: int
    skipped: tuple[str, ...] = ()


# ---------------------------------------------------------------- reading


def work_of(student_id: str, evidence: Evidence) -> Work:
    """What is compared of one student, from the evidence grader.evidence.gather read."""
    trials: dict[tuple[str, tuple[tuple[str, str], ...]], TrialFacts] = {}
    for trial in evidence.trials:
        if not trial.completed:
            continue
        key = (trial.search, tuple(sorted((name, _value_key(v)) for name, v in trial.hyperparameters.items())))
        if key in trials:
            continue
        seconds = trial.train_seconds
        trials[key] = TrialFacts(
            trial_id=str(trial.trial_id),
            accuracy=round(float(trial.val_accuracy or 0.0), ACCURACY_DECIMALS),
            seconds=round(float(seconds), SECONDS_DECIMALS) if finite_number(seconds) and seconds > 0 else None,
        )
    answers: dict[str, tuple[str, ...]] = {}
    quotes: dict[str, str] = {}
    for question, value in (evidence.answers or {}).items():
        if not isinstance(value, str):
            continue
        words = normalised_words(value)
        if len(words) >= MIN_WORDS:
            answers[str(question)] = words
            quotes[str(question)] = one_line(value, QUOTE_CHARS)
    return Work(student_id=student_id, trials=trials, answers=answers, quotes=quotes)


def read_works(out: str | Path, aliases: Mapping[str, str] | None = None
               ) -> tuple[list[tuple[str, Result, Evidence]], list[str]]:
    """Every graded student under out as (folder, result, evidence read from its grader-side copy), and the one-line
    error of each result file that could not be read."""
    root = Path(out)
    found, skipped = read_results(root)
    return [(folder, result, gather_graded(root / folder, aliases=aliases)) for folder, result in found], skipped


def similar_pairs(out: str | Path, aliases: Mapping[str, str] | None = None) -> Similarity:
    """The pairs among every graded student under out (see the module docstring)."""
    students, skipped = read_works(out, aliases)
    works = [work_of(result.student_id, evidence) for _, result, evidence in students]
    return Similarity(pairs=find_pairs(works), students=len(works), skipped=tuple(skipped))


def normalised_words(text: str) -> tuple[str, ...]:
    """text's words as compared: NFKC, lower case, no escape or control character, punctuation dropped, numbers kept."""
    clean = unicodedata.normalize("NFKC", plain_text(text[:MAX_ANSWER_CHARS])).casefold()
    return tuple(_WORD.findall(clean))


def shingles(words: Sequence[str], size: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    """The set of word n-grams of words (one n-gram of all of them when there are fewer than size)."""
    if len(words) < size:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i:i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _value_key(value: Any) -> str:
    if isinstance(value, bool) or not finite_number(value):
        return one_line(value, 100)
    return format(float(value), ".9g")


# ---------------------------------------------------------------- comparing


def find_pairs(works: Sequence[Work], *, trial_share: float = TRIAL_SHARE,
               answer_jaccard: float = ANSWER_JACCARD) -> tuple[Pair, ...]:
    """Every pair of works whose trials or answers look copied: trial pairs first, then answers, each by score
    (highest first), then by student ids. A student id given twice is compared as two students.

    Students with exactly the same trials (or the same answer to a question) are compared once, as one group: a
    class that hands in one log n times makes n(n-1)/2 pairs, but the work to find them stays that of one student.
    """
    pairs: list[Pair] = []
    reps, members = _groups([frozenset(w.trials.items()) for w in works])
    for rep in reps:
        if len(members[rep]) > 1:
            same = trial_pair(works[rep], works[rep], share=trial_share)
            if same is not None:
                pairs += [_renamed(same, works[i], works[j]) for i, j in combinations(members[rep], 2)]
    sizes = [len(works[r].trials) for r in reps]
    by_accuracy = [frozenset(hash((k, f.accuracy)) for k, f in works[r].trials.items()) for r in reps]
    by_seconds = [frozenset(hash((k, f.seconds)) for k, f in works[r].trials.items() if f.seconds is not None)
                  for r in reps]
    candidates = _join(by_accuracy, sizes, trial_share, MIN_TRIALS) | _join(by_seconds, sizes, trial_share, MIN_TRIALS)
    for i, j in sorted(candidates):
        pair = trial_pair(works[reps[i]], works[reps[j]], share=trial_share)
        if pair is not None:
            pairs += [_renamed(pair, works[x], works[y]) for x in members[reps[i]] for y in members[reps[j]]]

    questions = sorted({q for w in works for q in w.answers})
    similar: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for question in questions:
        exact = _without_boilerplate([shingles(w.answers[question]) if question in w.answers else frozenset()
                                      for w in works])
        reps, members = _groups(exact)
        for rep in reps:
            if exact[rep] and len(members[rep]) > 1:
                for i, j in combinations(members[rep], 2):
                    similar[(i, j)][question] = 1.0
        sets = [frozenset(hash(s) for s in exact[r]) for r in reps]
        for i, j in _join(sets, [len(s) for s in sets], answer_jaccard, 1):
            score = jaccard(exact[reps[i]], exact[reps[j]])
            if score >= answer_jaccard:
                for x in members[reps[i]]:
                    for y in members[reps[j]]:
                        similar[(min(x, y), max(x, y))][question] = score
    for (i, j), scores in similar.items():
        pairs.append(_answer_pair(works[i], works[j], scores))
    return tuple(sorted(pairs, key=lambda p: (p.kind != "trials", -p.score, p.a, p.b)))


def _groups(keys: Sequence[Hashable]) -> tuple[list[int], dict[int, list[int]]]:
    """The index of the first of each group of equal keys, and each first index -> every index of its group."""
    first: dict[Hashable, int] = {}
    members: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        if key in first:
            members[first[key]].append(i)
        else:
            first[key] = i
            members[i] = [i]
    return list(members), members


def _renamed(pair: Pair, x: Work, y: Work) -> Pair:
    """pair, found between two members' groups, as the pair of x and y."""
    a, b = sorted((x.student_id, y.student_id))
    return Pair(a, b, pair.kind, pair.score, pair.evidence)


def trial_pair(x: Work, y: Work, *, share: float = TRIAL_SHARE) -> Pair | None:
    """The pair x and y make by their trials, or None when too few of them are identical (see the module docstring)."""
    total = max(len(x.trials), len(y.trials))
    if total == 0:
        return None
    same_accuracy: list[tuple[str, str]] = []  # (search, trial id) in x's order
    same_seconds: list[tuple[str, str]] = []
    for key, mine in x.trials.items():
        theirs = y.trials.get(key)
        if theirs is None:
            continue
        if mine.accuracy == theirs.accuracy:
            same_accuracy.append((key[0], mine.trial_id))
        if mine.seconds is not None and mine.seconds == theirs.seconds:
            same_seconds.append((key[0], mine.trial_id))
    accuracy_share = len(same_accuracy) / total
    seconds_share = len(same_seconds) / total
    by_accuracy = len(same_accuracy) >= MIN_TRIALS and accuracy_share >= share - 1e-12
    by_seconds = len(same_seconds) >= MIN_TRIALS and seconds_share >= share - 1e-12
    if not (by_accuracy or by_seconds):
        return None
    a, b = sorted((x.student_id, y.student_id))
    if by_accuracy:
        evidence = (f"{len(same_accuracy)} of {total} trials identical: {_trial_ranges(same_accuracy)} "
                    f"same accuracies to {ACCURACY_DECIMALS} decimals; ")
        evidence += (f"train_seconds identical too in {len(same_seconds)}: the same log handed in twice" if by_seconds
                     else "train_seconds differ: the same code and seed also give these, compare the code")
    else:
        evidence = (f"{len(same_seconds)} of {total} trials have identical train_seconds "
                    f"({_trial_ranges(same_seconds)}) though only {len(same_accuracy)} have the same accuracy: "
                    f"one log, edited")
    return Pair(a, b, "trials", round(max(accuracy_share, seconds_share), 4), evidence)


def answer_pair(x: Work, y: Work, *, threshold: float = ANSWER_JACCARD) -> Pair | None:
    """The pair x and y make by their free-text answers, or None when no question's answers are near-identical."""
    scores = {}
    for question in sorted(set(x.answers) & set(y.answers)):
        score = jaccard(shingles(x.answers[question]), shingles(y.answers[question]))
        if score >= threshold:
            scores[question] = score
    return _answer_pair(x, y, scores) if scores else None


def _answer_pair(x: Work, y: Work, scores: Mapping[str, float]) -> Pair:
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    first = x if x.student_id <= y.student_id else y
    top = ranked[0][0]
    listed = ", ".join(f"{one_line(q, 40)} {s:.2f}" for q, s in ranked)
    a, b = sorted((x.student_id, y.student_id))
    return Pair(a, b, "answers", round(ranked[0][1], 4), f"{listed} similar: '{first.quotes.get(top, '')}'")


def _without_boilerplate(sets: Sequence[frozenset[tuple[str, ...]]]) -> list[frozenset[tuple[str, ...]]]:
    """sets without the wording many students share: each 5-gram with no digit in it found in more than
    COMMON_SHARE of the answers (and in more than MIN_COMMON of them), such as the phrases of an answer tuning.py
    derives; 5-grams with a number stay, so answers derived from different trials stay apart."""
    answering = sum(1 for s in sets if s)
    limit = max(MIN_COMMON, COMMON_SHARE * answering)
    frequency: Counter[tuple[str, ...]] = Counter(g for s in sets for g in s if not any(map(_has_digit, g)))
    common = {g for g, n in frequency.items() if n > limit}
    return [s - common if common else s for s in sets]


def _has_digit(word: str) -> bool:
    return any(ch.isdigit() for ch in word)


def _trial_ranges(found: Sequence[tuple[str, str]]) -> str:
    """'grid 00..15, random 00..06': each search's first and last identical trial (ids as written, cut short)."""
    by_search: dict[str, list[str]] = {}
    for search, trial_id in found:
        by_search.setdefault(search, []).append(trial_id)
    parts = []
    for search, ids in by_search.items():
        first, last = one_line(ids[0], TRIAL_ID_CHARS), one_line(ids[-1], TRIAL_ID_CHARS)
        parts.append(f"{one_line(search, 20)} {first}" + (f"..{last}" if len(ids) > 1 else ""))
    return ", ".join(parts)


def _join(sets: Sequence[frozenset[int]], sizes: Sequence[int], share: float, minimum: int) -> set[tuple[int, int]]:
    """Candidate index pairs (i < j) whose sets may overlap in at least share of max(sizes[i], sizes[j]) tokens (and
    at least minimum): a prefix-filtered join, exact in what it may miss (nothing) and cheap in what it tries."""
    frequency: Counter[int] = Counter(token for s in sets for token in s)
    index: dict[int, list[int]] = defaultdict(list)
    candidates: set[tuple[int, int]] = set()
    for i, tokens in enumerate(sets):
        needed = max(minimum, math.ceil(share * sizes[i] - 1e-9))
        prefix_length = len(tokens) - needed + 1
        if prefix_length <= 0:
            continue
        prefix = sorted(tokens, key=lambda t: (frequency[t], t))[:prefix_length]
        for token in prefix:
            bucket = index[token]
            candidates.update((j, i) for j in bucket)
            bucket.append(i)
    return candidates

