"""The `calibrate` verb: grade the reference on this hardware and write its figures and the accuracy tiers into the rubric."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console

from grader import __version__, grade, verify
from grader.jsonio import write_text_atomic
from grader.result import Result, read_result
from grader.rubric import load_rubric, rubric_problems
from grader.scheduler import detect_gpus
from grader.verify import Verification
from grader.errors import GraderError


class CalibrationError(GraderError, RuntimeError):
    """The reference did not give figures to calibrate with (it crashed, timed out, or a model failed to evaluate)."""


def reference_dir() -> Path:
    """The reference solution's folder in this project checkout (it is never part of the installed package)."""
    folder = Path(__file__).resolve().parents[1] / "reference"
    if not (folder / "tuning.py").is_file():
        raise CalibrationError(f"no reference solution at {folder}: run calibrate from the project's checkout")
    return folder


def hardware() -> dict[str, Any]:
    """What the figures were measured on: CPU model and cores, GPUs, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "gpus": gpu_names(), "os": platform.platform()}


def gpu_names() -> list[str]:
    import subprocess

    if not detect_gpus():
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                         timeout=20)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def apply_calibration(doc: Mapping[str, Any], result: Result, *, measured_on: Mapping[str, Any], date: str,
                      verification: Verification | None = None) -> dict[str, Any]:
    """The rubric document with the reference's figures recorded and every tier that declares a margin re-set.

    A tier `{"margin": m, "fraction": f}` gets `min_accuracy` = (reference's test accuracy for the
    check's searches, the lowest of them) - m, rounded to 4 places. With a verification (the rubric has a
    verified_training check), the reference's claimed best val accuracies and the fast trainer's re-training of
    the same configurations are recorded too: how far apart they lie here is what a tolerance must allow. Pure:
    nothing is read or written.
    """
    accuracy = {e.search: e.test_accuracy for e in result.evaluations if e.test_accuracy is not None}
    out = json.loads(json.dumps(doc))
    out["calibration"] = {
        "date": date,
        "grader_version": __version__,
        "profile": result.profile,
        "hardware": dict(measured_on),
        "packages": dict(result.packages),
        "isolation": result.isolation.method if result.isolation else None,
        "reference": {
            "test_accuracy": accuracy,
            "run_seconds": result.timings.run_s,
            "evaluation_seconds": result.timings.evaluation_s,
            "score": {"earned": result.score.earned, "possible": result.score.possible} if result.score else None,
        },
    }
    if verification is not None:
        out["calibration"]["reference"]["verified"] = {
            v.search: {"claimed_val_accuracy": v.claimed_val_accuracy, "retrained_val_accuracy": v.retrained_val_accuracy}
            for v in verification.searches}
    for check in out["checks"]:
        if check["kind"] != "accuracy_threshold":
            continue
        searches = check.get("params", {}).get("searches", ["grid", "random"])
        base = min((accuracy[s] for s in searches if s in accuracy), default=None)
        for tier in check.get("params", {}).get("tiers", []):
            if "margin" in tier and base is not None:
                tier["min_accuracy"] = round(max(0.0, base - float(tier["margin"])), 4)
    return out


def main(*, rubric: Path, profile: str | None = None, gpus: str = "auto", console: Console | None = None
         ) -> dict[str, Any]:
    """Grade the reference through the normal pipeline with `rubric`, then rewrite the rubric calibrated."""
    console = console or Console(stderr=True)
    spec = load_rubric(rubric)
    with tempfile.TemporaryDirectory(prefix="grader-calibrate-") as tmp:
        submission = Path(tmp) / "submissions" / "reference"
        submission.mkdir(parents=True)
        shutil.copyfile(reference_dir() / "tuning.py", submission / "tuning.py")
        out = Path(tmp) / "out"
        grade.main(submissions=[submission], rubric=rubric, out=out, profile=profile, gpus=gpus, force=True,
                   console=console)
        checked = bool(verify.verified_checks(spec))
        if checked:  # the fast trainer re-trains the reference's own claims, as it will each student's
            verify.main(out=out, rubric=spec, retrain=True, log=console.print)
        result = read_result(out / "reference" / "result.json")
        verification = (verify.read_verification(out / "reference" / verify.VERIFICATION_FILE, result.content_hash,
                                                 spec) if checked and result is not None else None)
    if result is None or result.status != "completed":
        raise CalibrationError(f"the reference did not complete on this machine: "
                               f"{result.status + ': ' + result.message if result else 'no result'}")
    failed = [f"{e.search}: {e.error}" for e in result.evaluations if e.test_accuracy is None]
    if failed:
        raise CalibrationError(f"the reference's models did not evaluate: {'; '.join(failed)}")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    calibrated = apply_calibration(spec.raw, result, measured_on=hardware(), date=date, verification=verification)
    problems = rubric_problems(calibrated)
    if problems:
        raise CalibrationError(f"the calibrated rubric would be invalid: {problems[0]}")
    write_text_atomic(rubric, json.dumps(calibrated, indent=2) + "\n")
    console.print(f"calibrated {rubric}: reference test accuracy "
                  + ", ".join(f"{s} {a:.4f}" for s, a in calibrated["calibration"]["reference"]["test_accuracy"].items())
                  + f", run {result.timings.run_s:.1f} s on {calibrated['calibration']['hardware']['cpu']}")
    return calibrated
