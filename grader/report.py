"""The class report: ``grader report OUT`` writes one self-contained HTML page (OUT/report/index.html) and its PNGs.

What the page holds, one section each (the section's ``id`` in brackets): the class at a glance [``summary``]; the
score distribution [``scores``]; the grader's own test accuracy of each search's exported model (ModelEvaluation, not
what a student claims) [``test-accuracy``]; grid against random across the class, per student the best test
accuracy of each search, else (a search's model not evaluated) the best validation accuracy of its trials
[``grid-vs-random``];
per-check pass rates [``checks``]; hyperparameter importance across the class, the share of validation-accuracy variance
tunekit.analysis.hyperparameter_effects gives each hyperparameter in each student's own trials, averaged over the
students whose trials vary it [``importance``]; the suspect list, every check flagged ``suspect`` with its message
[``suspects``]; the pairs grader.similarity finds [``similarity``]; the review queue's state, checks flagged (manual
review or suspect), reviewed (an override applied) and pending, and what OUT/review.csv holds [``review``]; the result
files that could not be read [``problems``]. A section without data says "none" in a line of its own, so an empty
class, a class where nobody completed, or a student with no trials still gives a whole page.

The page is safe to open whatever the submissions wrote: every string that comes from a result or a submission
(student ids, messages, answers quoted in the evidence, trial ids) is made one line (grader.text.one_line: no escape
or control character), cut short and HTML-escaped; labels drawn in the plots go through the same cleaning with
matplotlib's mathtext disarmed. CSS is inline, images are PNG files next to the page referenced by relative names, and
the page holds no script; its Content-Security-Policy forbids any. PNGs are drawn with matplotlib's Agg canvas (no
display needed); a plot without data is not drawn and the PNG of an earlier run is removed.

Students' trials and answers are read once, from the grader's own copy of each output dir (grader.similarity.read_works,
through grader.evidence.gather); nothing here changes a result.
"""

from __future__ import annotations

import html
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.evidence import Evidence
from grader.jsonio import write_bytes_atomic, write_text_atomic
from grader.result import CHECK_STATUSES, RESULT_FILE, STATUSES, Result
from grader.rubric import Rubric
from grader.similarity import Pair, find_pairs, read_works, work_of
from grader.text import one_line

REPORT_DIR = "report"
INDEX_FILE = "index.html"
SCORES_PNG = "scores.png"
TEST_ACCURACY_PNG = "test_accuracy.png"
GRID_VS_RANDOM_PNG = "grid_vs_random.png"
CHECKS_PNG = "check_pass_rates.png"
IMAGES: tuple[str, ...] = (SCORES_PNG, TEST_ACCURACY_PNG, GRID_VS_RANDOM_PNG, CHECKS_PNG)
TEXT_CHARS = 300  # a message or evidence shown in a table cell
NAME_CHARS = 80  # a student id, check id or title
LABEL_CHARS = 30  # a label in a plot
NONE = "none"
MAX_ROWS = 500  # of the suspect list and of the similar pairs (a class that shares one log makes n(n-1)/2 pairs)


class ReportError(GraderError):
    """The class report cannot be written where it was asked (one line saying why)."""


@dataclass(frozen=True)
class StudentFacts:
    """What the report shows of one graded student."""

    student_id: str
    status: str
    score_percent: float | None  # None: no score (no checks were run)
    test_accuracy: Mapping[str, float]  # search -> the grader's test accuracy of its exported model
    best_val: Mapping[str, float]  # search -> the best validation accuracy among its completed trials
    effects: Mapping[str, float]  # hyperparameter -> its share of val-accuracy variance in the student's trials


@dataclass(frozen=True)
class ClassReport:
    """What ``grader report`` wrote: the page, the PNGs drawn, how many students and pairs, and the results not read."""

    path: Path
    images: tuple[Path, ...]
    students: int
    pairs: int
    skipped: tuple[str, ...]


# ---------------------------------------------------------------- gathering


def student_facts(result: Result, evidence: Evidence) -> StudentFacts:
    from tunekit.analysis import hyperparameter_effects

    score = result.score
    percent = 100.0 * score.earned / score.possible if score is not None and score.possible > 0 else None
    tests = {e.search: float(e.test_accuracy) for e in result.evaluations if e.test_accuracy is not None}
    best_val = {}
    for search in sorted({t.search for t in evidence.trials}):
        best = evidence.best_of(search)
        if best is not None and best.val_accuracy is not None:
            best_val[search] = float(best.val_accuracy)
    records = [t.as_record() for t in evidence.trials if t.completed]
    effects = {e.name: float(e.share) for e in hyperparameter_effects(records)} if len(records) >= 2 else {}
    return StudentFacts(result.student_id, result.status, percent, tests, best_val, effects)


def main(*, out: Path, rubric: Rubric | None = None, dest: Path | None = None,
         now: datetime | None = None) -> ClassReport:
    """The ``report`` verb: read every result under out and write dest (default OUT/report) with index.html and PNGs.

    rubric gives the checks' order and titles and the hyperparameter aliases; without it, results' own order is used.
    """
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder '{root}' does not exist")
    target = Path(dest) if dest is not None else root / REPORT_DIR
    if (target / RESULT_FILE).exists() or target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ReportError(f"'{target}' is a student's folder or not a folder; write the report elsewhere with --dest")
    students, skipped = read_works(root, rubric.aliases if rubric is not None else None)
    results = [result for _, result, _ in students]
    facts = [student_facts(result, evidence) for _, result, evidence in students]
    pairs = find_pairs([work_of(result.student_id, evidence) for _, result, evidence in students])
    rates = check_rates(results, rubric)
    review = review_state(root, results)

    target.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    images: dict[str, bool] = {}
    for name, draw in ((SCORES_PNG, lambda: draw_scores(facts)),
                       (TEST_ACCURACY_PNG, lambda: draw_test_accuracy(facts)),
                       (GRID_VS_RANDOM_PNG, lambda: draw_grid_vs_random(facts)),
                       (CHECKS_PNG, lambda: draw_check_rates(rates))):
        data = draw()
        path = target / name
        if data is None:
            if path.is_file() and not path.is_symlink():
                path.unlink()  # an earlier run's plot would show data this class no longer has
            images[name] = False
            continue
        write_bytes_atomic(path, data)
        drawn.append(path)
        images[name] = True
    page = render(results, facts, pairs, rates, review, skipped, images,
                  now or datetime.now(timezone.utc))
    index = target / INDEX_FILE
    write_text_atomic(index, page)
    return ClassReport(index, tuple(drawn), len(results), len(pairs), tuple(skipped))


@dataclass(frozen=True)
class CheckRate:
    """One check across the class: how many results hold it, by status, and the points earned on average."""

    id: str
    title: str
    results: int
    statuses: Mapping[str, int]
    mean_points: float
    max_points: float

    @property
    def pass_rate(self) -> float:
        return self.statuses.get("pass", 0) / self.results if self.results else 0.0


def check_rates(results: Sequence[Result], rubric: Rubric | None) -> list[CheckRate]:
    """Each check's pass rate, in the rubric's order (then any check the rubric lacks, in the results' order)."""
    order: list[str] = [c.id for c in rubric.checks] if rubric is not None else []
    titles: dict[str, str] = {c.id: c.title for c in rubric.checks} if rubric is not None else {}
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    points: dict[str, list[float]] = defaultdict(list)
    maximum: dict[str, float] = {}
    for result in results:
        for check in result.checks:
            if check.id not in titles:
                titles[check.id] = check.title
            if check.id not in order:
                order.append(check.id)
            statuses[check.id][check.status] += 1
            points[check.id].append(check.points)
            maximum[check.id] = max(maximum.get(check.id, 0.0), check.max_points)
    return [CheckRate(cid, titles[cid], sum(statuses[cid].values()), dict(statuses[cid]),
                      statistics.fmean(points[cid]), maximum[cid]) for cid in order if points[cid]]


@dataclass(frozen=True)
class ReviewState:
    """The review queue: checks flagged (manual review or suspect), reviewed (overridden), pending; review.csv."""

    flagged: int
    reviewed: int
    pending: int
    overridden_unflagged: int  # overrides on checks that are no longer flagged
    file_line: str  # one line on OUT/review.csv


def review_state(out: Path, results: Sequence[Result]) -> ReviewState:
    from grader.review import NO_LONGER_FLAGGED, REVIEW_FILE, ReviewFileError, read_review

    flagged = reviewed = unflagged = 0
    for result in results:
        for check in result.checks:
            if check.review or check.suspect:
                flagged += 1
                reviewed += check.override is not None
            elif check.override is not None:
                unflagged += 1
    path = out / REVIEW_FILE
    if not (path.exists() or path.is_symlink()):
        line = f"no {REVIEW_FILE} yet: `grader review OUT` writes it" if flagged else f"no {REVIEW_FILE}"
    else:
        try:
            _, rows = read_review(path)
        except ReviewFileError as exc:
            line = str(exc)
        else:
            typed = sum(1 for _, row in rows if row.get("override_points", "").strip())
            stale = sum(1 for _, row in rows if row.get("reason", "").strip() == NO_LONGER_FLAGGED)
            line = (f"{REVIEW_FILE}: {len(rows)} row(s), {typed} with override points typed, "
                    f"{stale} {NO_LONGER_FLAGGED}")
    return ReviewState(flagged, reviewed, flagged - reviewed, unflagged, line)


def importance(facts: Sequence[StudentFacts]) -> list[tuple[str, int, float, int]]:
    """(hyperparameter, students whose trials vary it, mean share over them, students whose trials rank it first with
    a share above 0), largest mean share first."""
    shares: dict[str, list[float]] = defaultdict(list)
    first: Counter[str] = Counter()
    for fact in facts:
        for name, share in fact.effects.items():
            shares[name].append(share)
        top = max(fact.effects.items(), key=lambda item: (item[1], item[0]), default=None)
        if top is not None and top[1] > 0:  # a student whose trials show no effect ranks nothing first
            first[top[0]] += 1
    rows = [(name, len(values), statistics.fmean(values), first[name]) for name, values in shares.items()]
    return sorted(rows, key=lambda row: (-row[2], row[0]))


def grid_vs_random(facts: Sequence[StudentFacts]) -> list[tuple[str, float, float, str]]:
    """(student, grid, random, measure) for each student with both searches: test accuracies, else best val ones."""
    rows = []
    for fact in facts:
        if "grid" in fact.test_accuracy and "random" in fact.test_accuracy:
            rows.append((fact.student_id, fact.test_accuracy["grid"], fact.test_accuracy["random"], "test"))
        elif "grid" in fact.best_val and "random" in fact.best_val:
            rows.append((fact.student_id, fact.best_val["grid"], fact.best_val["random"], "val"))
    return rows


# ---------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(value: Any) -> str:
    """Untrusted text as a plot label: one line, short, no mathtext."""
    return one_line(value, LABEL_CHARS).replace("$", r"\$") or "?"


def draw_scores(facts: Sequence[StudentFacts]) -> bytes | None:
    from matplotlib.ticker import MaxNLocator

    scores = [f.score_percent for f in facts if f.score_percent is not None]
    if not scores:
        return None
    fig, ax = _figure()
    ax.hist(scores, bins=[i * 5 for i in range(21)], color="#3572b0", edgecolor="white")
    ax.set_xlim(0, 100)
    ax.set_title(f"Scores of {len(scores)} student(s)")
    ax.set_xlabel("score (% of the points possible)")
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def draw_test_accuracy(facts: Sequence[StudentFacts]) -> bytes | None:
    by_search: dict[str, list[float]] = defaultdict(list)
    for fact in facts:
        for search, accuracy in fact.test_accuracy.items():
            by_search[search].append(accuracy)
    if not by_search:
        return None
    fig, ax = _figure()
    searches = sorted(by_search)
    try:
        ax.boxplot([by_search[s] for s in searches], orientation="horizontal")
    except TypeError:  # matplotlib before 3.10
        ax.boxplot([by_search[s] for s in searches], vert=False)
    for row, search in enumerate(searches, start=1):
        ax.plot(by_search[search], [row] * len(by_search[search]), "o", alpha=0.5, color="#3572b0")
    ax.set_yticks(range(1, len(searches) + 1), [f"{_label(s)} (n={len(by_search[s])})" for s in searches])
    ax.set_title("Test accuracy of each search's best model (the grader's evaluation)", fontsize=10)
    ax.set_xlabel("test accuracy")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def draw_grid_vs_random(facts: Sequence[StudentFacts]) -> bytes | None:
    rows = grid_vs_random(facts)
    if not rows:
        return None
    fig, ax = _figure(5.5, 5.0)
    for measure, marker, color in (("test", "o", "#3572b0"), ("val", "x", "#d62728")):
        xs = [g for _, g, _, m in rows if m == measure]
        ys = [r for _, _, r, m in rows if m == measure]
        if xs:
            ax.plot(xs, ys, marker, linestyle="none", color=color, alpha=0.7,
                    label=f"best {measure} accuracy ({len(xs)})")
    values = [v for _, g, r, _ in rows for v in (g, r)]
    low, high = min(values), max(values)
    pad = max(0.005, (high - low) * 0.05)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linewidth=1, label="equal")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("grid search")
    ax.set_ylabel("random search")
    ax.set_title("Grid vs random, one point per student")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def draw_check_rates(rates: Sequence[CheckRate]) -> bytes | None:
    if not rates:
        return None
    fig, ax = _figure(7.0, max(2.0, 0.35 * len(rates) + 1.2))
    names = [_label(r.id) for r in rates]
    ax.barh(range(len(rates)), [100 * r.pass_rate for r in rates], color="#2ca02c")
    ax.set_yticks(range(len(rates)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of results that pass")
    ax.set_title("Pass rate of each check")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------- the page


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:38em;overflow-wrap:anywhere}
p.none{color:#777;font-style:italic}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9em}
"""
POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _e(value: Any, limit: int = NAME_CHARS) -> str:
    """Untrusted text for the page: one line, cut to limit, HTML-escaped (quotes too)."""
    return html.escape(one_line(value, limit), quote=True)


def _num(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def _none(what: str = NONE) -> str:
    return f'<p class="none">{html.escape(what)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
           text: Sequence[int] = ()) -> str:
    """A table from escaped cells (the caller escapes each cell); numeric columns aligned right."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ' class="text"' if i in text else ""
            cells.append(f"<td{css}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(name: str, shown: bool, alt: str) -> str:
    return f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>' if shown else ""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def render(results: Sequence[Result], facts: Sequence[StudentFacts], pairs: Sequence[Pair],
           rates: Sequence[CheckRate], review: ReviewState, skipped: Sequence[str], images: Mapping[str, bool],
           now: datetime) -> str:
    """The whole page (see the module docstring)."""
    sections = [
        _summary(results, facts),
        _section("scores", "Score distribution", _scores(facts, images)),
        _section("test-accuracy", "Verified test accuracy per search", _test_accuracy(facts, images)),
        _section("grid-vs-random", "Grid vs random across the class", _grid_random(facts, images)),
        _section("checks", "Per-check pass rates", _checks(rates, images)),
        _section("importance", "Hyperparameter importance across the class", _importance(facts)),
        _section("suspects", "Suspect list", _suspects(results)),
        _section("similarity", "Similar trial logs and answers", _similarity(pairs)),
        _section("review", "Review queue", _review(review)),
        _section("problems", "Result files not read", _problems(skipped)),
    ]
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Class report</title>\n<style>{STYLE}</style></head>\n<body>\n"
            f"<h1>Class report</h1>\n<p class=\"note\">Written by <code>grader report</code> on {stamp}. "
            "Similar pairs and suspect flags are leads for a person to read, never a grade.</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def _summary(results: Sequence[Result], facts: Sequence[StudentFacts]) -> str:
    if not results:
        return _section("summary", "The class", _none("none: no graded student in this folder"))
    statuses = Counter(r.status for r in results)
    scores = [f.score_percent for f in facts if f.score_percent is not None]
    counts = ", ".join(f"{statuses[s]} {html.escape(s.replace('_', ' '))}" for s in STATUSES if statuses[s])
    lines = [f"<p>{len(results)} graded student(s): {counts}.</p>"]
    if scores:
        lines.append(f"<p>Score: mean {statistics.fmean(scores):.1f} %, median {statistics.median(scores):.1f} %, "
                     f"lowest {min(scores):.1f} %, highest {max(scores):.1f} %.</p>")
    return _section("summary", "The class", "\n".join(lines))


def _scores(facts: Sequence[StudentFacts], images: Mapping[str, bool]) -> str:
    scores = [f.score_percent for f in facts if f.score_percent is not None]
    if not scores:
        return _none("none: no student has a score")
    bands = Counter(min(int(s // 10), 9) for s in scores)
    rows = [[f"{10 * b}\u2013{10 * b + 10} %", str(bands[b])] for b in range(9, -1, -1) if bands[b]]
    return _image(SCORES_PNG, images.get(SCORES_PNG, False), "histogram of the scores") + _table(
        ["score", "students"], rows, numeric=(1,))


def _test_accuracy(facts: Sequence[StudentFacts], images: Mapping[str, bool]) -> str:
    by_search: dict[str, list[float]] = defaultdict(list)
    for fact in facts:
        for search, accuracy in fact.test_accuracy.items():
            by_search[search].append(accuracy)
    if not by_search:
        return _none("none: no exported model was evaluated")
    rows = [[_e(s), str(len(v)), _num(statistics.median(v)), _num(min(v)), _num(max(v))]
            for s, v in sorted(by_search.items())]
    return (_image(TEST_ACCURACY_PNG, images.get(TEST_ACCURACY_PNG, False), "test accuracy per search")
            + _table(["search", "models", "median", "lowest", "highest"], rows, numeric=(1, 2, 3, 4)))


def _grid_random(facts: Sequence[StudentFacts], images: Mapping[str, bool]) -> str:
    rows = grid_vs_random(facts)
    if not rows:
        return _none("none: no student has both a grid and a random search result")
    grid_wins = sum(1 for _, g, r, _ in rows if g > r)
    random_wins = sum(1 for _, g, r, _ in rows if r > g)
    ties = len(rows) - grid_wins - random_wins
    difference = statistics.median(g - r for _, g, r, _ in rows)
    val_only = sum(1 for *_, m in rows if m == "val")
    table = _table(["students", "grid better", "random better", "equal", "median grid \u2212 random"],
                   [[str(len(rows)), str(grid_wins), str(random_wins), str(ties), f"{difference:+.4f}"]],
                   numeric=(0, 1, 2, 3, 4))
    note = (f'<p class="note">{val_only} student(s) compared by best validation accuracy (a search\'s model was '
            "not evaluated); the others by the grader's test accuracy.</p>") if val_only else ""
    return _image(GRID_VS_RANDOM_PNG, images.get(GRID_VS_RANDOM_PNG, False), "grid against random") + table + note


def _checks(rates: Sequence[CheckRate], images: Mapping[str, bool]) -> str:
    if not rates:
        return _none("none: no check was run")
    rows = [[_e(r.id), _e(r.title), str(r.results), *[str(r.statuses.get(s, 0)) for s in CHECK_STATUSES],
             f"{100 * r.pass_rate:.0f} %", f"{r.mean_points:.2f} / {r.max_points:g}"] for r in rates]
    return (_image(CHECKS_PNG, images.get(CHECKS_PNG, False), "pass rate of each check")
            + _table(["check", "title", "results", *CHECK_STATUSES, "pass rate", "mean points"], rows,
                     numeric=tuple(range(2, 10))))


def _importance(facts: Sequence[StudentFacts]) -> str:
    rows = importance(facts)
    if not rows:
        return _none("none: no student has two completed trials that vary a hyperparameter")
    without = sum(1 for f in facts if not f.effects)
    table = _table(["hyperparameter", "students who varied it", "mean share of variance", "ranked first by"],
                   [[_e(name), str(n), f"{100 * share:.1f} %", str(top)] for name, n, share, top in rows],
                   numeric=(1, 2, 3))
    note = (f'<p class="note">The share of validation-accuracy variance each hyperparameter explains in a student\'s '
            f"own trials (tunekit.analysis), averaged over the students who varied it. {without} student(s) without "
            "two completed trials that vary one are left out.</p>")
    return table + note


def _suspects(results: Sequence[Result]) -> str:
    rows = [[_e(r.student_id), _e(c.id), _e(c.message, TEXT_CHARS)]
            for r in results for c in r.checks if c.suspect]
    if not rows:
        return _none()
    more = (f'<p class="note">and {len(rows) - MAX_ROWS} more (OUT/review.csv lists them all)</p>'
            if len(rows) > MAX_ROWS else "")
    return _table(["student", "check", "reason"], rows[:MAX_ROWS], text=(2,)) + more


def _similarity(pairs: Sequence[Pair]) -> str:
    if not pairs:
        return _none()
    rows = [[_e(p.a), _e(p.b), _e(p.kind), f"{p.score:.2f}", _e(p.evidence, TEXT_CHARS)]
            for p in pairs[:MAX_ROWS]]
    more = (f'<p class="note">and {len(pairs) - MAX_ROWS} more pair(s), less similar or later by student id '
            "(grader.similarity.similar_pairs lists them all)</p>") if len(pairs) > MAX_ROWS else ""
    return _table(["student", "student", "what", "score", "evidence"], rows, numeric=(3,), text=(4,)) + more


def _review(state: ReviewState) -> str:
    table = _table(["flagged", "reviewed", "pending"],
                   [[str(state.flagged), str(state.reviewed), str(state.pending)]], numeric=(0, 1, 2))
    extra = (f"<p>{state.overridden_unflagged} override(s) on checks that are no longer flagged.</p>"
             if state.overridden_unflagged else "")
    head = "" if state.flagged else _none("none flagged: no check is marked for manual review or suspect")
    return head + table + extra + f"<p>{_e(state.file_line, TEXT_CHARS)}</p>"


def _problems(skipped: Sequence[str]) -> str:
    if not skipped:
        return _none()
    return "<ul>" + "".join(f"<li>{_e(line, TEXT_CHARS)}</li>" for line in skipped) + "</ul>"
