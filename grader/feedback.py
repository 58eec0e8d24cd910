"""Feedback for one graded submission: feedback.md and a self-contained feedback.html, for a student or the instructor.

Deciding what is shown is kept apart from drawing it:

- ``visible_checks`` and ``shown_score`` are pure: which checks an audience sees
  (hidden ones never reach a student; ``after_due_date`` ones only once the due
  date has passed) and the score those checks add up to;
- ``log_excerpt`` reads the end of the student's log; ``trial_plots`` draws the trial
  records it is given (the grader passes ``[t.as_record() for t in evidence.trials]`` from
  ``grader.evidence``, so trials read from trials.jsonl and from KerasTuner project folders
  count alike; the submission's tree is never read again here);
- ``result.fallbacks`` (written by grader.runner) holds the lines saying which of the contract's
  fallbacks graded this run (keras.datasets
  answered from the train split, a KerasTuner folder found outside the output dir, a tuner
  checkpoint evaluated instead of models/best_<search>.keras, the backend switched or missing),
  shown under "How your submission was read" so a student learns the contract;
- ``notebook_link`` links the executed notebook's page only when it is the one the
  grader rendered itself (``grader.nbhtml``), never a file the submission wrote;
- ``render_markdown`` and ``render_html`` turn a ``Feedback`` into text, escaping
  whatever came from the submission (and removing terminal escapes and control
  characters from both, so a ``cat`` of either file cannot drive the terminal);
- ``write_feedback`` does the rest: builds the ``Feedback`` and writes the files.

The student's copy is ``OUT/<student>/feedback.md`` and ``feedback.html``; the
instructor's (every check, with visibility and suspect flags, and the grader's own
error log) is ``feedback.instructor.md`` and ``feedback.instructor.html``. The plots
are also written as ``OUT/<student>/feedback_plots/<search>_trials.png``.

A check whose points a reviewer set (``CheckResult.override``, from review.csv through grader.review) shows its final
points everywhere; ``review_lines`` adds, under its message, the reviewer's comment (both copies) and, in the
instructor's copy only, who set the points, when, and the grader's automatic points. Such a check counts as looked
at: the "Flagged for review" line names only flagged checks no reviewer has set yet.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from grader.contract import SEARCHES, TRIALS_FILE
from grader.jsonio import write_bytes_atomic, write_text_atomic
from grader.nbhtml import PAGE_CSP, is_rendered_page
from grader.result import CheckResult, ModelEvaluation, Result, Score
from grader.text import clean_line, markdown_text, one_line  # clean_line stays importable from here

Audience = Literal["student", "instructor"]
AUDIENCES: tuple[str, ...] = ("student", "instructor")

PLOTS_DIR = "feedback_plots"
NOTEBOOK_HTML = "notebook.html"
LOG_LINES = 40  # lines of the log shown in the excerpt
LOG_TAIL_BYTES = 64 * 1024  # only the end of a log is read: a flooded log can be gigabytes
LABEL_CHARS = 16  # trial ids on a plot's axis are cut to this
LOGGED_STATUSES = ("crashed", "timed_out", "sandbox_error")

STATUS_TEXT = {
    "completed": "Your submission ran to the end.",
    "timed_out": "Your submission was stopped at the time limit; the trials it finished before then still count.",
    "crashed": "Your submission stopped with an error.",
    "invalid_submission": "Your submission could not be run as handed in.",
    "sandbox_error": "The grader itself failed while running your submission; this is not your fault, "
                     "and it will be graded again.",
}
CHECK_STATUS_TEXT = {
    "pass": "passed",
    "partial": "partial credit",
    "fail": "failed",
    "error": "could not be checked",
    "skipped": "skipped",
}
WARN = "\u26a0"
NO_TRIALS = "No plots: no trials were recorded (in trials.jsonl or a KerasTuner project folder)."

TUNER_SOURCE = "tuner"  # Evidence.trials_source for trials read from KerasTuner project folders
FALLBACKS_INTRO = ("How your submission was read: it did not follow the submission contract here, and the grader "
                   "found its way anyway.")


@dataclass(frozen=True)
class FeedbackFiles:
    """What write_feedback wrote: the Markdown file, the HTML file and the plot PNGs (possibly none)."""

    md: Path
    html: Path
    plots: tuple[Path, ...]


@dataclass(frozen=True)
class LogExcerpt:
    """The last lines of one log, cleaned for display; ``name`` is its key in Result.logs."""

    name: str
    path: str
    lines: tuple[str, ...]
    truncated: bool


@dataclass(frozen=True)
class TrialPlot:
    """One plot of a search's trials: PNG bytes, its path relative to the student's folder, and a caption."""

    search: str
    path: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Feedback:
    """Everything one copy of the feedback shows, decided before anything is drawn."""

    student_id: str
    audience: Audience
    status: str
    message: str
    score: Score | None
    evaluations: tuple[ModelEvaluation, ...]
    checks: tuple[CheckResult, ...]
    withheld_until_due: int
    plots: tuple[TrialPlot, ...]
    plot_notes: tuple[str, ...]
    log: LogExcerpt | None
    notebook: str | None
    run_facts: tuple[tuple[str, str], ...] = ()  # instructor copy only: how the run went, as (what, value) pairs
    fallbacks: tuple[str, ...] = ()  # the contract's fallbacks that graded this run (result.fallbacks)

    @property
    def suspect(self) -> bool:
        return any(c.suspect for c in self.checks)

    @property
    def suspect_text(self) -> str:
        """One line naming the flagged checks no reviewer has set yet, and what the flag means ('' when there is none)."""
        names = [one_line(_check_name(c), None) for c in self.checks if c.suspect and c.override is None]
        if not names:
            return ""
        return (f"Flagged for review: {', '.join(names)}. The grader found something in "
                f"{'this check' if len(names) == 1 else 'these checks'} (marked {WARN}) that an instructor will "
                f"look at before the grade is final.")


# ---------------------------------------------------------------- deciding


def visible_checks(result: Result, audience: Audience, now: datetime | None, due: datetime | None
                   ) -> tuple[CheckResult, ...]:
    """The checks an audience sees, in rubric order.

    The instructor sees every check. A student never sees a hidden check, and sees an
    ``after_due_date`` check only once ``now`` is at or past ``due`` (never while either
    is unknown). A naive datetime is taken to be UTC.
    """
    _check_audience(audience)
    if audience == "instructor":
        return tuple(result.checks)
    past_due = now is not None and due is not None and _utc(now) >= _utc(due)
    return tuple(
        c for c in result.checks
        if c.visibility == "visible" or (c.visibility == "after_due_date" and past_due)
    )


def withheld_until_due(result: Result, shown: Sequence[CheckResult]) -> int:
    """How many after_due_date checks were left out of shown (so the student knows the score is not final)."""
    ids = {c.id for c in shown}
    return sum(1 for c in result.checks if c.visibility == "after_due_date" and c.id not in ids)


def shown_score(result: Result, checks: Sequence[CheckResult], audience: Audience) -> Score | None:
    """The score a copy shows: the instructor sees the result's score; a student, what the shown checks add up to.

    None when there is nothing to add up (no score recorded and no checks shown).
    """
    _check_audience(audience)
    if audience == "instructor" and result.score is not None:
        return result.score
    if not checks:
        return None
    return Score(earned=sum(c.points for c in checks), possible=sum(c.max_points for c in checks))


def review_lines(check: CheckResult, audience: Audience) -> tuple[str, ...]:
    """The lines shown under a check a reviewer set: their comment (when they wrote one) for both audiences, and for
    the instructor who set the points, when, and the grader's automatic points. Nothing for any other check."""
    _check_audience(audience)
    override = check.override
    if override is None:
        return ()
    lines = []
    if audience == "instructor":
        automatic = "none" if check.automatic_points is None else _num(check.automatic_points)
        lines.append(f"Points set by {one_line(override.reviewer, None) or 'a reviewer'} at {override.at}: "
                     f"{_num(override.points)}/{_num(check.max_points)} (automatic: {automatic}, "
                     f"{CHECK_STATUS_TEXT.get(override.automatic_status, override.automatic_status)})")
    if override.comment:
        lines.append(f"Reviewer's comment: {one_line(override.comment, None)}")
    return tuple(lines)


def shows_log(result: Result) -> bool:
    """Whether the feedback includes a log excerpt: only when the run crashed, timed out or hit a sandbox error."""
    return result.status in LOGGED_STATUSES


def log_names(audience: Audience) -> tuple[str, ...]:
    """The Result.logs keys an audience's excerpt may come from, first found wins.

    Students see their own program's stderr only; the instructor also gets the
    grader's own traceback when the grader failed.
    """
    _check_audience(audience)
    return ("stderr",) if audience == "student" else ("stderr", "grader-error")


# ---------------------------------------------------------------- reading


def log_excerpt(student_dir: Path, result: Result, audience: Audience, *, lines: int = LOG_LINES) -> LogExcerpt | None:
    """The last lines of the first log named for the audience, or None when there is none to show.

    Only the last LOG_TAIL_BYTES of the file are read. Bytes that are not UTF-8 are
    replaced, ANSI escape sequences and control characters removed, long lines cut.
    A log path that leaves the student's folder, or is not a regular file, is ignored.
    """
    if not shows_log(result):
        return None
    for name in log_names(audience):
        relative = result.logs.get(name)
        path = _inside(student_dir, relative) if relative else None
        if path is None:
            continue
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                raw = fh.read(LOG_TAIL_BYTES)
        except OSError:
            continue
        text = raw.decode("utf-8", errors="replace")
        all_lines = text.splitlines()
        if size > LOG_TAIL_BYTES and all_lines:
            all_lines = all_lines[1:]  # the first line read is probably cut
        while all_lines and not all_lines[-1].strip():
            all_lines.pop()
        kept = [clean_line(line) for line in all_lines[-lines:]]
        return LogExcerpt(name=name, path=str(relative), lines=tuple(kept),
                          truncated=len(all_lines) > lines or size > LOG_TAIL_BYTES)
    return None


def trials_note(trials: Sequence[Mapping[str, Any]], trials_source: str | None) -> str | None:
    """The line shown instead of plots when there are no trials (None when there are some).

    trials_source is ``Evidence.trials_source``: ``trials.jsonl``, ``tuner`` (KerasTuner
    project folders) or None when the run left neither; it tells a run that recorded no
    trials apart from one whose every recorded trial was refused.
    """
    if trials:
        return None
    if trials_source is None:
        return NO_TRIALS
    where = trials_place(trials_source, 60)
    return (f"No plots: {where} holds no valid trial (`grader validate-output` on your output "
            f"folder says why).")


def trials_place(trials_source: str, width: int) -> str:
    """Where the trials were read, in words: the KerasTuner project folder, or the files named (escaped, cut)."""
    return "the KerasTuner project folder" if trials_source == TUNER_SOURCE else clean_line(trials_source, width)


def trial_plots(trials: Sequence[Mapping[str, Any]]) -> tuple[tuple[TrialPlot, ...], tuple[str, ...]]:
    """One PNG per search with completed trials (val accuracy per trial, the best trial marked), and notes on the rest.

    The notes say why a plot is missing (no trials at all, a search with no completed
    trial, a plot that could not be drawn) so the feedback can say so in a line.
    """
    from tunekit.analysis import best_trial, completed

    if not trials:
        return (), (NO_TRIALS,)
    by_search: dict[str, list[Mapping[str, Any]]] = {}
    for t in trials:
        by_search.setdefault(str(t.get("search")), []).append(t)
    plots: list[TrialPlot] = []
    notes: list[str] = []
    for search in sorted(by_search, key=lambda s: (SEARCHES.index(s) if s in SEARCHES else len(SEARCHES), s)):
        group = by_search[search]
        done = completed(group)
        if not done:
            notes.append(f"No plot for the {search} search: none of its {len(group)} trial(s) completed.")
            continue
        best = best_trial(done)
        failed = len(group) - len(done)
        caption = (f"{search} search: validation accuracy of its {len(done)} completed trial(s); best is trial "
                   f"{clean_line(str(best['trial_id']), 40)} at {float(best['val_accuracy']):.4f}")
        if failed:
            caption += f"; {failed} trial(s) that did not complete are not shown"
        try:
            png = _draw_search(search, done, best)
        except Exception as exc:  # noqa: BLE001 - a plot that cannot be drawn must not cost the student their feedback
            notes.append(f"No plot for the {search} search: it could not be drawn ({type(exc).__name__}).")
            continue
        plots.append(TrialPlot(search, f"{PLOTS_DIR}/{_safe_name(search)}_trials.png", png, caption + "."))
    return tuple(plots), tuple(notes)


def notebook_link(student_dir: Path, result: Result) -> str | None:
    """NOTEBOOK_HTML (relative to the student's folder) when the grader rendered it there with grader.nbhtml; else None.

    Only that one name is ever linked, and only when it is a regular file (not a
    symlink) that starts the way grader.nbhtml's pages start: an HTML file that nbconvert
    or the submission wrote is not linked, whatever ``result.logs`` says.
    """
    path = _inside(student_dir, NOTEBOOK_HTML)
    return NOTEBOOK_HTML if path is not None and is_rendered_page(path) else None


# ---------------------------------------------------------------- rendering


def render_markdown(fb: Feedback) -> str:
    """The feedback as Markdown: header, checks table, a section per check with its message, plots, log excerpt."""
    md = markdown_text  # every text that came from the submission is shown literally, never as Markdown
    out = [f"# Feedback for {md(fb.student_id)}" + (" (instructor copy)" if fb.audience == "instructor" else ""), ""]
    out += [f"**Status:** {fb.status}. {STATUS_TEXT.get(fb.status, '')}", ""]
    if fb.message:
        out += [f"> {md(one_line(fb.message, None))}", ""]
    out += [f"**Score:** {_score_text(fb.score)}", ""]
    if fb.withheld_until_due:
        out += [f"{_withheld_text(fb.withheld_until_due)}", ""]
    out += ["**Verified test accuracy** (the grader's own evaluation of your exported models on the held-out "
            "test split):", ""]
    out += [f"- {md(_accuracy_text(e))}" for e in fb.evaluations] or ["- no exported model was evaluated"]
    out.append("")
    if fb.suspect_text:
        out += [f"{WARN} **{fb.suspect_text}**", ""]
    if fb.fallbacks:
        out += [f"**{FALLBACKS_INTRO}**", ""] + [f"- {md(note)}" for note in fb.fallbacks] + [""]
    if fb.notebook:
        out += [f"Your executed notebook: [{fb.notebook}]({fb.notebook})", ""]

    out += ["## Checks", ""]
    if fb.checks:
        head = ["Check", "Points", "Status"] + (["Visibility", "Suspect"] if fb.audience == "instructor" else [])
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in fb.checks:
            row = [_cell(_check_name(c)), f"{_num(c.points)}/{_num(c.max_points)}", CHECK_STATUS_TEXT[c.status]]
            if fb.audience == "instructor":
                row += [c.visibility, "yes" if c.suspect else ""]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        for c in fb.checks:
            out += [f"### {one_line(_check_name(c), None)}" + (f" {WARN}" if c.suspect else ""), "",
                    f"{CHECK_STATUS_TEXT[c.status]}, {_num(c.points)}/{_num(c.max_points)} points", "",
                    md(c.message), ""]
            out += [line for note in review_lines(c, fb.audience) for line in (md(note), "")]
    else:
        out += ["No checks were run.", ""]

    out += ["## Your trials" if fb.audience == "student" else "## Trials", ""]
    for plot in fb.plots:
        out += [f"![{md(plot.search)} trials]({plot.path})", "", md(plot.caption), ""]
    for note in fb.plot_notes:
        out += [md(note), ""]

    if fb.log is not None:
        body = "\n".join(fb.log.lines)
        fence = "`" * max(3, _longest_backtick_run(body) + 1)
        out += [f"## Log excerpt ({fb.log.path})", "", _log_intro(fb.log), "", fence, body, fence, ""]
    if fb.run_facts:
        out += ["## Run", ""] + [f"- {k}: {md(v)}" for k, v in fb.run_facts] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def render_html(fb: Feedback) -> str:
    """The feedback as one self-contained HTML page: inline CSS, plots as data URIs, no script or external asset."""
    e = _esc
    body: list[str] = []
    title = f"Feedback for {fb.student_id}" + (" (instructor copy)" if fb.audience == "instructor" else "")
    body.append(f"<h1>{e(title)}</h1>")
    body.append(f'<p class="status status-{e(fb.status)}"><strong>Status:</strong> {e(fb.status)}. '
                f"{e(STATUS_TEXT.get(fb.status, ''))}</p>")
    if fb.message:
        body.append(f"<blockquote>{e(fb.message)}</blockquote>")
    body.append(f"<p><strong>Score:</strong> {e(_score_text(fb.score))}</p>")
    if fb.withheld_until_due:
        body.append(f"<p>{e(_withheld_text(fb.withheld_until_due))}</p>")
    body.append("<p><strong>Verified test accuracy</strong> (the grader's own evaluation of your exported models "
                "on the held-out test split):</p>")
    items = ([f"<li>{e(_accuracy_text(ev))}</li>" for ev in fb.evaluations]
             or ["<li>no exported model was evaluated</li>"])
    body.append("<ul>" + "".join(items) + "</ul>")
    if fb.suspect_text:
        body.append(f'<p class="suspect">{WARN} {e(fb.suspect_text)}</p>')
    if fb.fallbacks:
        body.append(f"<p><strong>{e(FALLBACKS_INTRO)}</strong></p><ul>"
                    + "".join(f"<li>{e(note)}</li>" for note in fb.fallbacks) + "</ul>")
    if fb.notebook:
        body.append(f'<p>Your executed notebook: <a href="{e(fb.notebook)}">{e(fb.notebook)}</a></p>')

    body.append("<h2>Checks</h2>")
    if fb.checks:
        head = ["Check", "Points", "Status"] + (["Visibility", "Suspect"] if fb.audience == "instructor" else [])
        rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
        for c in fb.checks:
            cells = [_check_name(c) + (f" {WARN}" if c.suspect else ""), f"{_num(c.points)}/{_num(c.max_points)}",
                     CHECK_STATUS_TEXT[c.status]]
            if fb.audience == "instructor":
                cells += [c.visibility, "yes" if c.suspect else ""]
            rows.append(f'<tr class="check {e(c.status)}">' + "".join(f"<td>{e(x)}</td>" for x in cells) + "</tr>")
            rows.append(f'<tr class="message"><td colspan="{len(head)}">{e(c.message)}</td></tr>')
            rows += [f'<tr class="message review"><td colspan="{len(head)}">{e(note)}</td></tr>'
                     for note in review_lines(c, fb.audience)]
        body.append("<table>" + "".join(rows) + "</table>")
    else:
        body.append("<p>No checks were run.</p>")

    body.append("<h2>Your trials</h2>" if fb.audience == "student" else "<h2>Trials</h2>")
    for plot in fb.plots:
        data = base64.b64encode(plot.png).decode("ascii")
        body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(plot.caption)}">'
                    f"<figcaption>{e(plot.caption)}</figcaption></figure>")
    body += [f"<p>{e(note)}</p>" for note in fb.plot_notes]

    if fb.log is not None:
        body.append(f"<h2>Log excerpt ({e(fb.log.path)})</h2>")
        body.append(f"<p>{e(_log_intro(fb.log))}</p>")
        body.append("<pre>" + e("\n".join(fb.log.lines)) + "</pre>")
    if fb.run_facts:
        body.append("<h2>Run</h2><ul>" + "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in fb.run_facts) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{PAGE_CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- doing


def build_feedback(student_dir: Path, result: Result, *, trials: Sequence[Mapping[str, Any]],
                   trials_source: str | None, now: datetime | None, due: datetime | None,
                   audience: Audience) -> Feedback:
    """Decide what one copy of the feedback shows from the trial records given and the log (nothing is written)."""
    checks = visible_checks(result, audience, now, due)
    missing = trials_note(trials, trials_source)
    plots, notes = trial_plots(trials) if missing is None else ((), (missing,))
    if missing is None and trials_source not in (None, TRIALS_FILE):  # say where, so the student learns the contract
        where = trials_place(trials_source, 80)
        notes = (f"Trials read from {where} (there is no usable {TRIALS_FILE}).", *notes)
    return Feedback(
        student_id=result.student_id,
        audience=audience,
        status=result.status,
        message=result.message,
        score=shown_score(result, checks, audience),
        evaluations=tuple(result.evaluations),
        checks=checks,
        withheld_until_due=withheld_until_due(result, checks) if audience == "student" else 0,
        plots=plots,
        plot_notes=notes,
        log=log_excerpt(student_dir, result, audience),
        notebook=notebook_link(student_dir, result),
        run_facts=run_facts(result) if audience == "instructor" else (),
        fallbacks=result.fallbacks,
    )


def write_feedback(student_dir: Path, result: Result, *, trials: Sequence[Mapping[str, Any]] = (),
                   trials_source: str | None = None, now: datetime | None = None, due: datetime | None = None,
                   audience: Audience = "student") -> FeedbackFiles:
    """Write the audience's feedback.md / feedback.html (feedback.instructor.* for the instructor) and the plots.

    ``trials`` are the run's trial records in trials.jsonl's shape (``[t.as_record() for t
    in evidence.trials]``) and ``trials_source`` is ``evidence.trials_source``; nothing is
    read from the submission's output dir. ``now`` defaults to the current time; ``due``
    None keeps after_due_date checks from students.
    """
    _check_audience(audience)
    student_dir = Path(student_dir)
    fb = build_feedback(student_dir, result, trials=trials, trials_source=trials_source,
                        now=now if now is not None else datetime.now(timezone.utc), due=due, audience=audience)
    plots = []
    for plot in fb.plots:
        target = student_dir / plot.path
        write_bytes_atomic(target, plot.png)
        plots.append(target)
    stem = "feedback" if audience == "student" else "feedback.instructor"
    md, page = student_dir / f"{stem}.md", student_dir / f"{stem}.html"
    write_text_atomic(md, _printable(render_markdown(fb)))
    write_text_atomic(page, _printable(render_html(fb)))
    return FeedbackFiles(md=md, html=page, plots=tuple(plots))


# ---------------------------------------------------------------- helpers


def _check_audience(audience: str) -> None:
    if audience not in AUDIENCES:
        raise ValueError(f"unknown feedback audience '{audience}': expected student or instructor")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _inside(root: Path, relative: str) -> Path | None:
    """root/relative when it is a regular file inside root (no absolute path, no '..', no symbolic link); else None."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    path = root / rel
    try:
        for part in [path, *path.parents]:
            if part == root:
                break
            if part.is_symlink():
                return None
        return path if path.is_file() else None
    except OSError:
        return None


def _draw_search(search: str, done: Sequence[Mapping[str, Any]], best: Mapping[str, Any]) -> bytes:
    """A PNG of one search's completed trials: val accuracy per trial in file order, the best one starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = list(range(1, len(done) + 1))
    ys = [float(t["val_accuracy"]) for t in done]
    best_x = next(i for i, t in zip(xs, done) if t is best)
    fig = Figure(figsize=(7, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o", linewidth=1, color="#3572b0", label="completed trial")
    ax.plot([best_x], [float(best["val_accuracy"])], marker="*", markersize=16, linestyle="none",
            color="#d62728", label=f"best: trial {_label(best['trial_id'])} ({float(best['val_accuracy']):.4f})")
    ax.set_title(f"{_label(search)} search: validation accuracy per trial")
    ax.set_xlabel("trial (in the order it finished)")
    ax.set_ylabel("val accuracy")
    if len(done) <= 20:
        ax.set_xticks(xs, [_label(t["trial_id"]) for t in done], rotation=45 if len(done) > 8 else 0,
                      fontsize=8)
    low = min(ys)
    ax.set_ylim(max(0.0, low - 0.05 * max(1e-3, max(ys) - low) - 0.01), min(1.0, max(ys) + 0.02) + 0.005)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(value: Any) -> str:
    """Student-given text made safe for a matplotlib label: no mathtext, no control characters, short."""
    text = clean_line(str(value), LABEL_CHARS).replace("$", r"\$")
    return text or "?"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40] or "search"


def _num(x: float) -> str:
    return f"{round(float(x), 2):g}"


def _score_text(score: Score | None) -> str:
    return "not available (no checks were run)" if score is None else f"{_num(score.earned)}/{_num(score.possible)}"


def _withheld_text(n: int) -> str:
    return (f"{n} more check(s) will be shown after the due date; the score above does not include them yet.")


def _log_intro(log: LogExcerpt) -> str:
    if not log.lines:
        return "The log is empty."
    more = " (earlier lines left out)" if log.truncated else ""
    return f"The last {len(log.lines)} line(s) of the log{more}:"


def _accuracy_text(ev: ModelEvaluation) -> str:
    if ev.test_accuracy is None:
        return f"{ev.search}: not evaluated ({ev.error or 'no accuracy recorded'})"
    return f"{ev.search}: {ev.test_accuracy:.2%} on {ev.n_test} test images ({ev.path})"


def _check_name(c: CheckResult) -> str:
    return c.title or c.id


def _cell(text: str) -> str:
    return one_line(text, None).replace("|", "\\|")


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _printable(text: str) -> str:
    """text with every line cleaned of terminal escapes, control and bidirectional characters (line breaks kept)."""
    return "\n".join(clean_line(line, None) for line in text.split("\n"))


def run_facts(result: Result) -> tuple[tuple[str, str], ...]:
    """How the run went, for the instructor's copy: entry point, exit, timings, slot, isolation, versions, logs."""
    t = result.timings
    facts = [
        ("entry point", str(result.entry_point)),
        ("exit code", str(result.exit_code)),
        ("signal", str(result.signal)),
        ("run", f"{t.run_s:.1f} s (queued {t.queued_s:.1f} s, evaluation {t.evaluation_s:.1f} s), "
                f"{t.started_at} to {t.finished_at}"),
        ("slot", "none" if result.slot is None else f"{result.slot.kind} {result.slot.index}"
         + (f" ({result.slot.gpu})" if result.slot.gpu else "")
         + (f" on Ray node {result.slot.node}" if result.slot.node else "")),
        ("isolation", "none" if result.isolation is None
         else f"{result.isolation.method}: {result.isolation.details}"),
        ("profile", result.profile),
        ("grader", f"{result.grader_version}, rubric {result.rubric_hash}"),
        ("content hash", str(result.content_hash)),
    ]
    facts += [(f"log {name}", path) for name, path in sorted(result.logs.items())]
    return tuple(facts)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;"
    "padding:0 1rem;color:#1b1f24;line-height:1.45}"
    "table{border-collapse:collapse;width:100%;margin:1rem 0}"
    "th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f6f8fa}"
    "tr.message td{color:#444;background:#fbfbfb;border-top:none}"
    "tr.pass td:nth-child(3){color:#1a7f37}tr.partial td:nth-child(3){color:#9a6700}"
    "tr.fail td:nth-child(3),tr.error td:nth-child(3){color:#cf222e}"
    "blockquote{margin:.5rem 0;padding:.2rem .8rem;border-left:4px solid #d0d7de;color:#444}"
    ".suspect{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .8rem}"
    "pre{background:#f6f8fa;padding:.8rem;overflow:auto;white-space:pre-wrap;word-break:break-all}"
    "figure{margin:1rem 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9rem}"
)
