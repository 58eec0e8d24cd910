"""Find the claims a free-text answer makes (the numbers it cites, the direction it states) and test each against the trials.

Pure functions over the answer's text and the submission's own `grader.evidence.Trial`s;
grader.checks' `answer_text` judge scores with them when a rubric sets `check_claims`
(docs/rubrics.md, `### answer_text`, says the same for instructors). Each claim becomes a
frozen `Claim`: supported (True), contradicted (False) or not a claim about the trials
(None: neither credited nor penalised), with the student's snippet (escaped, at most
SNIPPET_CHARS) and the student's own numbers as evidence.

Everything is bounded: at most MAX_TEXT_CHARS of the answer are read, at most MAX_NUMBERS
numbers in it are looked at, and a number longer than MAX_NUMBER_CHARS characters (a
5000-digit run) is skipped without being parsed.

Numbers. A number is read with its unit: a percentage ("94.7 %", "94.7 percent": read as
0.947), seconds ("25.5 s", "25.5 seconds"), a ratio ("0.07x", "3 times"), accuracy points
("2.2 points", "2.2 pp"), or none. It matches a figure of the trials within rounding to the
digits written (0.95 matches 0.947 and, truncated, 0.9549; 94.7 % matches 0.9470); seconds
and ratios also match within SECONDS_TOLERANCE (5 %). The figures: each completed trial's
val accuracy and val loss, each search's best and mean val accuracy, each hyperparameter's
per-level mean val accuracy and share of the variance (`tunekit.analysis.hyperparameter_effects`);
each trial's train seconds, each search's total, the total of all trials, the per-level mean
seconds; the ratios of the searches' total seconds; the gaps, in points, between the searches'
best accuracies and between a hyperparameter's level means.
  - not measurements, never judged: integers without a unit (counts of trials, epochs,
    ranks, batch sizes), numbers in e-notation ("1e-3"), and a number written as a
    hyperparameter's value ("learning rate of 0.01", "lr=0.01", "dropout 0.2 to 0.5"), and
    a bound or a denial ("above 0.9", "more than 30 s", "not 0.97");
  - judged (supported or contradicted): seconds; a percentage or a decimal of at most 1 in
    a sentence about accuracy, loss or variance, unless it is a hyperparameter value of
    the trials (then it is not judged);
  - credited when they match, never penalised: ratios, points, other decimals (a decimal
    above 1 without a unit may be anything).

Directions. For one hyperparameter (learning_rate, batch_size, ...), a small phrase grammar,
matched within one sentence, case-insensitively (HP is one of the hyperparameter's names,
"learning rate", "learning_rate", "lr"; UP is higher, larger, bigger, greater, increasing,
more; DOWN is lower, smaller, decreasing, reducing, fewer, less):
  A. "[a] UP|DOWN HP ... improved|raised|increased|boosted|helped | lowered|reduced|
     decreased|hurt|worsened accuracy", or "... led to|gave|yielded higher|better |
     lower|worse accuracy" (at most 6 words in between);
  B. "higher|better | lower|worse accuracy ... with|for|at|from|using [a] UP|DOWN HP";
  C. "accuracy ... rose|improved|increased | fell|dropped|decreased ... with|as|when [the]
     UP|DOWN HP | HP increased|grew | decreased|fell";
  D. "as|when|if [the] HP increased | decreased, [the] accuracy ... rose | fell";
  E. "the UP|DOWN [the] HP, the higher|better | lower|worse [the] accuracy".
A phrase with a negation or a hedge in it or in the four words before it ("did not lower",
"might improve", "I expected"), or with a contrast ("but", "while", "than") or another
hyperparameter's name in its gaps, is no claim: when unsure, no claim. The stated sign
(UP with improved: accuracy rises with HP) is held against the trials': the mean val
accuracy at the highest level minus that at the lowest level of HP
(`hyperparameter_effects`' levels); a difference smaller than the margin supports either.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from grader.evidence import Trial
from grader.jsonio import finite_number
from grader.parse import escaped_line
from tunekit import analysis

MAX_TEXT_CHARS = 20_000  # the part of an answer read; a longer answer's tail is ignored
MAX_NUMBERS = 50  # numbers looked at in one answer
MAX_NUMBER_CHARS = 30  # a longer run of digits is skipped, not parsed
SNIPPET_CHARS = 80
EVIDENCE_CHARS = 240
DIRECTION_MARGIN = 0.005  # a level-mean difference below this supports either direction
SECONDS_TOLERANCE = 0.05  # seconds and ratios also match within this fraction

ClaimKind = Literal["number", "direction"]


@dataclass(frozen=True)
class Claim:
    """One claim of an answer: its kind, the student's snippet (escaped, cut), whether the trials support it
    (None: not a claim about the trials, neither credited nor penalised), and the trials' own numbers."""

    kind: ClaimKind
    text: str
    supported: bool | None
    evidence: str


@dataclass(frozen=True)
class Cited:
    """One number as an answer writes it: its value (a percentage already divided by 100), unit ("", "%", "s", "x",
    "points"), step (the unit of its last digit, in the value's terms), and how it is written."""

    value: float
    unit: str
    step: float
    written: str  # the number and its unit as written (escaped)
    text: str  # the words around it (escaped, cut)
    integer: bool  # no decimal point, no exponent
    setting: bool  # e-notation, or written as a hyperparameter's value
    about_accuracy: bool  # its sentence speaks of accuracy, loss or variance


@dataclass(frozen=True)
class Stated:
    """A direction an answer states for a hyperparameter: +1 when accuracy rises with it, -1 when it falls."""

    sign: int
    text: str


def find_claims(text: str, trials: Iterable[Trial], *, hyperparameter: str | None = None,
                direction_margin: float = DIRECTION_MARGIN) -> tuple[Claim, ...]:
    """Every claim of text, numbers first then directions (for hyperparameter, when given), each tested on trials."""
    trials = tuple(trials)
    claims = number_claims(text, trials)
    if hyperparameter:
        claims += direction_claims(text, trials, hyperparameter, direction_margin)
    return claims


# ---------------------------------------------------------------------------------------------
# Numbers


def number_claims(text: str, trials: Iterable[Trial]) -> tuple[Claim, ...]:
    """Each number text cites, tested against the trials' figures."""
    cited = cited_numbers(text)
    if not cited:
        return ()
    figures = Figures.of(tuple(trials))
    return tuple(_judge_number(n, figures) for n in cited)


_NUMBER = re.compile(r"(?<!\w)(?<!\d\.)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:[eE]([-+]?\d{1,3}))?")
_UNIT = re.compile(r"[ \t\u00a0]?(?:(?P<pct>%|percent\b|per cent\b)|(?P<pts>percentage points?\b|points?\b|pp\b|pts?\b)"
                   r"|(?P<x>x\b|\u00d7|times\b)|(?P<s>s\b|secs?\b|seconds?\b))", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
_ABOUT_ACCURACY = re.compile(r"accura|val_acc|\bacc\b|variance|\bloss", re.IGNORECASE)
_HP_NAMES = {
    "learning_rate": r"learning[ _]rates?|lrs?|step[ _]sizes?",
    "batch_size": r"batch[ _]sizes?|batch(?:es)?",
    "epochs": r"epochs?|number of epochs",
    "filters": r"filters?|number of filters|filter counts?",
    "kernel_size": r"kernel[ _]sizes?|kernels?",
    "dropout": r"dropout(?:[ _]rates?)?",
    "l1": r"l1(?:[ _](?:penalty|regulari[sz]ation|weights?))?",
    "l2": r"l2(?:[ _](?:penalty|regulari[sz]ation|weights?))?|weight[ _]decay",
}
_ANY_HP = "|".join(f"(?:{pattern})" for pattern in _HP_NAMES.values())
# a number right after a hyperparameter's name: "learning rate of 0.01", "lr=0.01", "dropout: 0.2", "batch size 32"
_AFTER_HP = re.compile(rf"\b(?:{_ANY_HP})\s*(?:(?:=|:|\(|of|at|from|between|is|was|were|set to|to|values?)\s*){{0,2}}$",
                       re.IGNORECASE)
# a number after these is a bound or a denial: "above 0.9", "more than 30 s", "not 0.97"
_BOUND = re.compile(r"\b(?:above|below|over|under|than|least|most|beyond|exceeding|exceeds?|not|never|to within|"
                    r"up to|nearly|almost)\s*$|[<>\u2264\u2265~]\s*$", re.IGNORECASE)
# the second number of a range or list of values: "0.2 to 0.5", "0.001 and 0.01", "0.001..0.01"
_BETWEEN_VALUES = re.compile(r"\s*(?:to|and|or|-|\u2013|\.\.|,|/|vs\.?|versus)?\s*", re.IGNORECASE)


def cited_numbers(text: str) -> tuple[Cited, ...]:
    """The numbers text cites (at most MAX_NUMBERS, read in the first MAX_TEXT_CHARS characters), in order."""
    text = text[:MAX_TEXT_CHARS]
    sentences = _sentences(text)
    starts = [s for s, _ in sentences]
    out: list[Cited] = []
    previous: tuple[int, bool] | None = None  # where the last number ended, and whether it was a setting
    for match in _NUMBER.finditer(text):
        if len(out) >= MAX_NUMBERS:
            break
        token, exponent = match.group(1), match.group(2)
        if len(match.group(0)) > MAX_NUMBER_CHARS:
            continue
        end = match.end()
        unit_match = _UNIT.match(text, end, min(len(text), end + 24))
        unit = ""
        if unit_match:
            unit = next(name for name in ("pct", "pts", "x", "s") if unit_match.group(name))
            end = unit_match.end()
        elif end < len(text) and (text[end].isalpha() or text[end] == "_"
                                  or (text[end] == "." and text[end + 1:end + 2].isdigit())):
            continue  # "3rd", "2D", a version such as 1.2.3: not a quantity
        mantissa = token.replace(",", "")
        decimals = len(mantissa.partition(".")[2])
        power = int(exponent) if exponent else 0
        value = float(f"{mantissa}e{power}")  # a string: an exponent of 999 gives inf, never OverflowError
        step = float(f"1e{power - decimals}")
        if unit == "pct":
            value, step = value / 100, step / 100
        index = max(0, bisect.bisect_right(starts, match.start()) - 1)
        s_start, s_end = sentences[index]
        before = text[max(s_start, match.start() - 60):match.start()]
        if _BOUND.search(before):
            continue  # "above 0.9", "not 0.97": a bound or a denial, not a figure the student reports
        setting = bool(exponent) or bool(_AFTER_HP.search(before)) or (
            previous is not None and previous[1] and previous[0] >= s_start
            and _BETWEEN_VALUES.fullmatch(text, previous[0], match.start()) is not None)
        out.append(Cited(
            value=value, unit={"pct": "%", "pts": "points", "x": "x", "s": "s", "": ""}[unit], step=step,
            written=escaped_line(text[match.start():end], MAX_NUMBER_CHARS + 24),
            text=_snippet(text, match.start(), end, s_start, s_end), integer="." not in mantissa and not exponent,
            setting=setting, about_accuracy=bool(_ABOUT_ACCURACY.search(text, s_start, s_end))))
        previous = (end, setting)
    return tuple(out)


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: split after . ! ? followed by a space, and at line ends."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def _snippet(text: str, start: int, end: int, s_start: int, s_end: int) -> str:
    """The cited span with up to three words before it and one after, inside its sentence, escaped and cut."""
    left = text[max(s_start, start - 60):start]
    words_before = re.search(r"(?:\S+\s+){0,3}\S*$", left)
    a = start - (len(left) - words_before.start()) if words_before else start
    right = text[end:min(s_end, end + 60)]
    words_after = re.match(r"(?:\s+\S+){0,1}", right)
    b = end + (words_after.end() if words_after else 0)
    return escaped_line(text[a:b].strip().rstrip(".,;:)").lstrip("(") or text[start:end], SNIPPET_CHARS)


@dataclass(frozen=True)
class Figure:
    """One number the trials give, with how to name it in a message; rank orders figures of equal value (a level's
    or a search's figure is named before a single trial's)."""

    value: float
    label: str
    rank: int = 0


MAX_CANDIDATES = 64  # figures compared in one interval (10,000 equal accuracies cannot slow a match down)


class _Pool:
    """Figures sorted by value, searched by interval."""

    def __init__(self, figures: Iterable[Figure]) -> None:
        self.figures = sorted((f for f in figures if math.isfinite(f.value)), key=lambda f: (f.value, f.rank))
        self.values = [f.value for f in self.figures]

    def within(self, low: float, high: float, aim: float) -> Figure | None:
        """The best-named figure in [low, high] (a level's or a search's before a trial's), the nearest aim first."""
        i = bisect.bisect_left(self.values, low)
        j = min(bisect.bisect_right(self.values, high), i + MAX_CANDIDATES)
        inside = self.figures[i:j]
        return min(inside, key=lambda f: (f.rank, abs(f.value - aim))) if inside else None

    def closest(self, value: float) -> Figure | None:
        """The best-named figure of the value nearest value."""
        i = bisect.bisect_left(self.values, value)
        near = min((self.values[j] for j in (i - 1, i) if 0 <= j < len(self.values)), key=lambda v: abs(v - value),
                   default=None)
        return None if near is None else self.within(near, near, near)


@dataclass(frozen=True)
class Figures:
    """What the trials measured, by kind (see the module docstring), and the hyperparameter values they used."""

    measures: _Pool  # val accuracies and shares of the variance: what a percentage may be
    losses: _Pool
    seconds: _Pool
    ratios: _Pool
    points: _Pool
    settings: _Pool

    @classmethod
    def of(cls, trials: Sequence[Trial]) -> Figures:
        measures, losses, seconds, ratios, points, settings = [], [], [], [], [], []
        done = [t for t in trials if t.completed]
        for t in trials:
            where = f"{t.search} trial {t.trial_id}"
            if t.completed:
                measures.append(Figure(float(t.val_accuracy or 0.0), f"{where}'s val accuracy {t.val_accuracy:.4f}", 2))
                if finite_number(t.val_loss):
                    losses.append(Figure(float(t.val_loss or 0.0), f"{where}'s val loss {t.val_loss:.4f}", 2))
            if finite_number(t.train_seconds):
                seconds.append(Figure(float(t.train_seconds or 0.0), f"{where}'s train seconds {t.train_seconds:.1f} s", 2))
            settings += [Figure(float(v), f"{name} {v}") for name, v in t.hyperparameters.items() if finite_number(v)]
        searches = list(dict.fromkeys(t.search for t in trials))
        best: dict[str, float] = {}
        total: dict[str, float] = {}
        for search in searches:
            accs = [float(t.val_accuracy or 0.0) for t in done if t.search == search]
            if accs:
                best[search] = max(accs)
                measures.append(Figure(best[search], f"the {search} search's best val accuracy {best[search]:.4f}"))
                mean = sum(accs) / len(accs)
                measures.append(Figure(mean, f"the {search} search's mean val accuracy {mean:.4f}", 1))
            secs = [float(t.train_seconds or 0.0) for t in trials if t.search == search and finite_number(t.train_seconds)]
            if secs:
                total[search] = sum(secs)
                seconds.append(Figure(total[search], f"the {search} search's total train seconds {total[search]:.1f} s"))
        every = [float(t.train_seconds or 0.0) for t in trials if finite_number(t.train_seconds)]
        if len(total) > 1:
            seconds.append(Figure(sum(every), f"all your trials' train seconds {sum(every):.1f} s"))
        for a, a_seconds in total.items():
            for b, b_seconds in total.items():
                if a != b and b_seconds > 0:
                    ratio = a_seconds / b_seconds
                    ratios.append(Figure(ratio, f"the {a} search's train seconds over the {b} search's {ratio:.2f}x"))
        for a, a_best in best.items():
            for b, b_best in best.items():
                if a != b and a_best >= b_best:
                    gap = (a_best - b_best) * 100
                    points.append(Figure(gap, f"the {a} search's best val accuracy {gap:.1f} points above the {b} "
                                              "search's"))
        for effect in analysis.hyperparameter_effects([t.as_record() for t in done]):
            measures.append(Figure(effect.share, f"{effect.name}'s share of the variance {effect.share:.0%}"))
            for level in effect.levels:
                measures.append(Figure(level.mean_val_accuracy,
                                       f"{effect.name} {level.label}'s mean val accuracy {level.mean_val_accuracy:.3f} "
                                       f"over {level.n} trials"))
                seconds.append(Figure(level.mean_train_seconds,
                                      f"{effect.name} {level.label}'s mean train seconds {level.mean_train_seconds:.1f} s"))
                for other in effect.levels:
                    if other.mean_val_accuracy < level.mean_val_accuracy:
                        gap = (level.mean_val_accuracy - other.mean_val_accuracy) * 100
                        points.append(Figure(gap, f"{effect.name} {level.label}'s mean val accuracy {gap:.1f} points "
                                                  f"above {other.label}'s"))
        return cls(_Pool(measures), _Pool(losses), _Pool(seconds), _Pool(ratios), _Pool(points), _Pool(settings))


def _rounded(pool: _Pool, n: Cited) -> Figure | None:
    """A figure that rounds to n at the digits written, else one that n truncates (0.94 for 0.9479)."""
    eps = 1e-9 * max(1.0, abs(n.value))
    return (pool.within(n.value - n.step / 2 - eps, n.value + n.step / 2 + eps, n.value)
            or pool.within(n.value, n.value + n.step - eps, n.value))


def _near(pool: _Pool, n: Cited) -> Figure | None:
    """A figure within rounding of n, else one within SECONDS_TOLERANCE of it."""
    return _rounded(pool, n) or pool.within(n.value / (1 + SECONDS_TOLERANCE), n.value / (1 - SECONDS_TOLERANCE),
                                            n.value)


def _judge_number(n: Cited, figures: Figures) -> Claim:
    def claim(supported: bool | None, evidence: str) -> Claim:
        return Claim("number", n.text, supported, escaped_line(evidence, EVIDENCE_CHARS))

    def matches(figure: Figure) -> Claim:
        return claim(True, f"matches {figure.label}")

    if n.setting:
        return claim(None, "a hyperparameter setting, not a measurement")
    if n.unit == "s":
        if hit := _near(figures.seconds, n):
            return matches(hit)
        near = figures.seconds.closest(n.value)
        return claim(False, f"no time in your trials is within 5 % of {n.written}"
                            + (f" (the closest is {near.label})" if near else ""))
    if n.unit == "x":
        return matches(hit) if (hit := _near(figures.ratios, n)) else claim(None, "a ratio your trials do not give")
    if n.unit == "points":
        return matches(hit) if (hit := _rounded(figures.points, n)) else claim(None, "a gap your trials do not give")
    if n.integer and n.unit != "%":
        return claim(None, "a count or a setting, not a measurement")
    if hit := _rounded(figures.measures, n):
        return matches(hit)
    if n.unit == "" and (hit := _rounded(figures.losses, n)):
        return matches(hit)
    if _rounded(figures.settings, n):
        return claim(None, "a hyperparameter value of your trials, not a measurement")
    if n.unit == "" and (hit := _near(figures.seconds, n) or _near(figures.ratios, n)):
        return matches(hit)
    if n.about_accuracy and n.value <= 1.0:
        near = figures.measures.closest(n.value)
        return claim(False, f"no figure in your trials rounds to {n.written}"
                            + (f" (the closest is {near.label})" if near else " (your trials have no completed trial)"))
    return claim(None, "not a figure of your trials")


# ---------------------------------------------------------------------------------------------
# Directions


_UP_ADJ = r"higher|larger|bigger|greater|increasing|increased|raising|more"
_DOWN_ADJ = r"lower|smaller|decreasing|decreased|reducing|reduced|lowering|fewer|less"
_UP_VERB = r"improved?|improves|improving|raised?|raises|increased?|increases|boost(?:ed|s)?|help(?:ed|s)?|lift(?:ed|s)?"
_DOWN_VERB = (r"lower(?:ed|s)?|reduced?|reduces|decreased?|decreases|hurt|hurts|harm(?:ed|s)?|worsen(?:ed|s)?|"
              r"degraded?|degrades|damaged?|damages|cut|cuts")
_RESULT = (r"led to|leads? to|gave|gives?|yielded|yields?|produced?|produces|resulted in|results? in|meant|means|"
           r"caused?|causes|brought|brings?|had|has|have|got|gets?|showed|shows?|achieved|achieves?|reached|reaches")
_UP_CMP = r"higher|better|improved|increased|greater"
_DOWN_CMP = r"lower|worse|reduced|decreased|poorer"
_ROSE = (r"improved|improves|rose|rises|increased|increases|went up|goes up|grew|grows|climbed|climbs|"
         r"(?:was|were|is|are) (?:higher|better)|(?:got|gets) better")
_FELL = (r"dropped|drops|fell|falls|decreased|decreases|went down|goes down|declined|declines|suffered|suffers|"
         r"degraded|degrades|worsened|worsens|(?:was|were|is|are) (?:lower|worse)|(?:got|gets) worse")
_UP_CHANGE = r"increased|increases|grew|grows|rose|rises|went up|goes up|doubled|(?:was|is|were|are) (?:raised|increased)"
_DOWN_CHANGE = (r"decreased|decreases|fell|falls|dropped|drops|went down|goes down|shrank|shrinks|halved|"
                r"(?:was|is|were|are) (?:reduced|lowered|decreased)")
_ADVERBS = (r"(?:(?:a|an|the|slightly|much|far|significantly|noticeably|clearly|consistently|generally|somewhat|"
            r"markedly|substantially|little|bit)\s+){0,3}")
_ACCURACY = (r"(?:(?:the|its|their|our|my|mean|average|final|best|overall|val|validation|test)\s+){0,3}"
             r"(?:accuracy|accuracies|val_accuracy|acc)\b")
_ARTICLE = r"(?:(?:a|an|the)\s+)?"
# words that make a phrase no claim: negations and hedges anywhere near it, contrasts inside it
_UNSURE = re.compile(r"\b(?:not|no|never|neither|nor|without|hardly|barely|cannot|fail(?:ed|s)?|might|may|could|would|"
                     r"should|expect(?:ed|s)?|thought|think|believe[ds]?|hypothesi[sz]ed|predicted|unclear|unless|if)\b"
                     r"|n't\b")
_CONTRAST = re.compile(r"\b(?:but|while|whereas|although|though|however|yet|except|than|whether|unlike)\b")


def _gap(words: int) -> str:
    return rf"(?:\S+\s+){{0,{words}}}?"


def _forms(hp: str) -> list[re.Pattern[str]]:
    name = _HP_NAMES.get(hp, re.escape(hp.replace("_", " ")) + "s?|" + re.escape(hp))
    subject = rf"{_ARTICLE}(?P<h>{_UP_ADJ}|{_DOWN_ADJ})\s+(?:values?\s+of\s+)?{_ARTICLE}(?:{name})\b"
    change = rf"{_ARTICLE}(?:{name})\s+(?P<h2>{_UP_CHANGE}|{_DOWN_CHANGE})\b"
    forms = [
        rf"\b{subject}\s+(?P<gap>{_gap(6)})(?:(?P<v>{_UP_VERB}|{_DOWN_VERB})\s+{_ADVERBS}{_ACCURACY}"
        rf"|(?:{_RESULT})\s+{_ADVERBS}(?P<c>{_UP_CMP}|{_DOWN_CMP})\s+{_ACCURACY})",  # A
        rf"\b(?P<c>{_UP_CMP}|{_DOWN_CMP})\s+{_ACCURACY}\s+(?P<gap>{_gap(3)})"
        rf"(?:with|for|at|from|using|under)\s+{subject}",  # B
        rf"\b{_ACCURACY}\s+(?P<gap>{_gap(2)})(?P<v>{_ROSE}|{_FELL})\s+(?P<gap2>{_gap(3)})"
        rf"(?:with|for|as|when|at|using|under|once)\s+(?:{subject}|{change})",  # C
        rf"\b(?:as|when|once)\s+{change}\s*,?\s+(?P<gap>{_gap(2)}){_ACCURACY}\s+(?P<gap2>{_gap(2)})"
        rf"(?P<v>{_ROSE}|{_FELL})\b",  # D
        rf"\bthe\s+(?P<h>{_UP_ADJ}|{_DOWN_ADJ})\s+{_ARTICLE}(?:{name})\s*,?\s+the\s+(?P<c>{_UP_CMP}|{_DOWN_CMP})\s+"
        rf"{_ACCURACY}",  # E
    ]
    return [re.compile(form) for form in forms]


_SIGNS = [(re.compile(rf"(?:{words})"), sign) for words, sign in (
    (_UP_ADJ, 1), (_DOWN_ADJ, -1), (_UP_VERB, 1), (_DOWN_VERB, -1), (_UP_CMP, 1), (_DOWN_CMP, -1),
    (_ROSE, 1), (_FELL, -1), (_UP_CHANGE, 1), (_DOWN_CHANGE, -1))]


def _sign(word: str) -> int:
    return next(sign for pattern, sign in _SIGNS if pattern.fullmatch(word))


def stated_directions(text: str, hyperparameter: str) -> tuple[Stated, ...]:
    """The directions text states for hyperparameter (see the module docstring's grammar), in order."""
    text = text[:MAX_TEXT_CHARS]
    # lower-cased and de-hyphenated character for character, so that a match's span is also the original's
    plain = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text).replace("-", " ").replace("\u2019", "'")
    other_names = re.compile(r"\b(?:" + "|".join(f"(?:{p})" for n, p in _HP_NAMES.items() if n != hyperparameter)
                             + r")\b")
    forms = _forms(hyperparameter)
    found: list[tuple[int, int, int]] = []
    for s_start, s_end in _sentences(plain):
        sentence = plain[s_start:s_end]
        for form in forms:
            for match in form.finditer(sentence):
                groups = match.groupdict()
                gaps = " ".join(groups.get(g) or "" for g in ("gap", "gap2"))
                before = " ".join(sentence[max(0, match.start() - 80):match.start()].split()[-4:])
                if _UNSURE.search(before) or _UNSURE.search(match.group(0)) or _CONTRAST.search(gaps) \
                        or other_names.search(gaps):
                    continue
                cause = groups.get("h") or groups.get("h2")
                effect = groups.get("v") or groups.get("c")
                if cause and effect:
                    found.append((s_start + match.start(), s_start + match.end(), _sign(cause) * _sign(effect)))
    kept: list[tuple[int, int, int]] = []
    for start, end, sign in sorted(found):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end, sign))
    return tuple(Stated(sign, escaped_line(text[start:end], SNIPPET_CHARS)) for start, end, sign in kept)


def direction_claims(text: str, trials: Iterable[Trial], hyperparameter: str,
                     margin: float = DIRECTION_MARGIN) -> tuple[Claim, ...]:
    """Each direction text states for hyperparameter, held against the sign of its effect in the trials."""
    stated = stated_directions(text, hyperparameter)
    if not stated:
        return ()
    done = [t.as_record() for t in trials if t.completed]
    effect = next(iter(analysis.hyperparameter_effects(done, names=(hyperparameter,))), None)
    if effect is None or len(effect.levels) < 2:
        why = f"{hyperparameter} did not vary across your completed trials"
        return tuple(Claim("direction", s.text, None, why) for s in stated)
    levels = sorted(effect.levels, key=_level_order)
    low, high = levels[0], levels[-1]
    difference = high.mean_val_accuracy - low.mean_val_accuracy
    evidence = escaped_line(
        f"in your trials {hyperparameter} {high.label} averaged {high.mean_val_accuracy:.3f} ({high.n} trials) "
        f"against {low.mean_val_accuracy:.3f} at {low.label} ({low.n} trials)", EVIDENCE_CHARS)
    return tuple(Claim("direction", s.text, abs(difference) < margin or s.sign * difference > 0, evidence)
                 for s in stated)


def _level_order(level: analysis.Level) -> tuple[int, float, str]:
    low = level.low
    return (0, float(low), "") if finite_number(low) else (1, 0.0, str(low))

