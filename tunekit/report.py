"""Writes the contract's report files: search_spaces.json, comparison.csv, plots/*.png and answers.yaml."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from grader.contract import (
    ANSWERS_FILE,
    COMPARISON_COLUMNS,
    COMPARISON_FILE,
    CONTRACT_VERSION,
    HYPERPARAMETERS,
    PLOTS_DIR,
    SEARCH_SPACES_FILE,
)
from grader.jsonio import write_json_atomic, write_text_atomic
from tunekit import analysis
from tunekit.spaces import GridSpace, RandomSpace


def write_search_spaces(out: Path, *, dataset: str, profile: str, spaces: Mapping[str, GridSpace | RandomSpace]) -> Path:
    """search_spaces.json: the declared grid and random ranges."""
    doc: dict[str, Any] = {"contract_version": CONTRACT_VERSION, "dataset": dataset, "profile": profile}
    doc.update({name: space.to_json() for name, space in spaces.items()})
    path = Path(out) / SEARCH_SPACES_FILE
    write_json_atomic(path, doc)
    return path


def comparison_rows(trials: Sequence[Mapping[str, Any]], searches: Sequence[str]) -> list[dict[str, Any]]:
    """One row per search: trial counts, the best trial's accuracy, loss and hyperparameters, total training time."""
    rows = []
    for search in searches:
        mine = [t for t in trials if t.get("search") == search]
        best = analysis.best_trial(mine)
        row: dict[str, Any] = {
            "search": search,
            "trials": len(mine),
            "completed_trials": len(analysis.completed(mine)),
            "best_trial_id": best["trial_id"] if best else "",
            "best_val_accuracy": best["val_accuracy"] if best else "",
            "best_val_loss": best["val_loss"] if best else "",
            "total_train_seconds": round(sum(float(t.get("train_seconds") or 0) for t in mine), 3),
        }
        for name in HYPERPARAMETERS:
            row[name] = best["hyperparameters"].get(name, "") if best else ""
        rows.append(row)
    return rows


def write_comparison(out: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """comparison.csv with the contract's columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COMPARISON_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(out) / COMPARISON_FILE
    write_text_atomic(path, buf.getvalue())
    return path


def write_answers(out: Path, answers: Mapping[str, Any]) -> Path:
    """answers.yaml, contract_version first, keys in the order given."""
    doc = {"contract_version": CONTRACT_VERSION, **{k: v for k, v in answers.items() if k != "contract_version"}}
    path = Path(out) / ANSWERS_FILE
    write_text_atomic(path, yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True, width=100))
    return path


def merge_answers(derived: Mapping[str, Any], own: Path) -> dict[str, Any]:
    """The derived answers, with every answer the student wrote in `own` (an answers.yaml) taking precedence.

    Blank answers (null or empty) leave the derived ones in place, also inside nested answers
    such as best_val_accuracy: {grid: ..., random: ...}.
    """
    if not own.is_file():
        return dict(derived)
    written = yaml.safe_load(own.read_text("utf-8")) or {}
    if not isinstance(written, dict):
        raise ValueError(f"{own}: expected question: answer pairs, found {type(written).__name__}")
    written.pop("contract_version", None)
    return _overlay(derived, written)


def _overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _overlay(merged[key], value)
        elif value not in (None, "", [], {}):
            merged[key] = value
    return merged


def write_plots(out: Path, trials: Sequence[Mapping[str, Any]], searches: Sequence[str]) -> list[Path]:
    """plots/<search>_trials.png for each search and plots/best_so_far.png comparing them."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(out) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for search in searches:
        mine = [t for t in trials if t.get("search") == search]
        fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
        xs = list(range(len(mine)))
        acc = [t["val_accuracy"] if t.get("val_accuracy") is not None else float("nan") for t in mine]
        loss = [t["val_loss"] if t.get("val_loss") is not None else float("nan") for t in mine]
        ax_acc.bar(xs, acc, color="tab:blue")
        best = analysis.best_trial(mine)
        if best is not None:
            i = mine.index(best)
            ax_acc.bar([i], [acc[i]], color="tab:orange", label=f"best: trial {best['trial_id']}")
            ax_acc.legend(loc="lower right")
        ax_acc.set(title=f"{search} search: validation accuracy", xlabel="trial", ylabel="val accuracy", ylim=(0, 1))
        ax_loss.plot(xs, loss, marker="o", color="tab:red")
        ax_loss.set(title=f"{search} search: validation loss", xlabel="trial", ylabel="val loss")
        fig.tight_layout()
        written.append(_save(fig, folder / f"{search}_trials.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for search in searches:
        elapsed, best = analysis.best_so_far([t for t in trials if t.get("search") == search])
        if len(elapsed):
            ax.step(elapsed, best, where="post", marker="o", label=search)
    ax.set(title="best validation accuracy so far", xlabel="training seconds", ylabel="best val accuracy")
    ax.legend(loc="lower right")
    fig.tight_layout()
    written.append(_save(fig, folder / "best_so_far.png"))
    plt.close(fig)
    return written


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of the comparison rows, for the terminal."""
    cols = ["search", "trials", "completed_trials", "best_val_accuracy", "total_train_seconds", *HYPERPARAMETERS]
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=80)
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples turned into YAML-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
