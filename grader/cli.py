"""The `grader` command line: a thin parser over each verb's keyword-only main(), and the one error boundary."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Sequence

from grader import __version__

# Exit codes, the same for every verb (docs/grading.md):
EXIT_OK = 0
EXIT_FAILED = 1  # the verb ran and says no: a check failed, a template is stale, a self-check did not pass
EXIT_USAGE = 2  # a problem the user can fix (GraderError): bad rubric, missing folder, no sandbox
EXIT_SANDBOX_ERRORS = 3  # `grade`: every submission has a result, but some ended in sandbox_error (re-run retries them)
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM: results written so far are kept


RUBRIC_HELP = "a shipped rubric's name (quick, full, cifar10_quick, cifar10_full) or a rubric file"
REPO_RUBRIC = Path("rubrics") / "quick.json"  # the student's copy in a starter repo
REPO_RUBRIC_HELP = f"a rubric file or a shipped rubric's name; default: the repository's {REPO_RUBRIC}, else quick"


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Grade the CNN hyperparameter-tuning assignment.")
    parser.add_argument("--version", action="version", version=f"grader {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    grade = verbs.add_parser("grade", help="run, evaluate and record every submission of a batch")
    grade.add_argument("submissions", nargs="+", type=Path,
                       help="a folder of submissions (one per child: folder, .zip, .ipynb or .py) or one submission")
    grade.add_argument("--rubric", default="quick", help=RUBRIC_HELP)
    grade.add_argument("--out", type=Path, default=Path("grading-out"))
    grade.add_argument("--profile", choices=("quick", "full"), help="overrides the rubric's profile")
    grade.add_argument("--time-limit", type=float, metavar="SECONDS", help="overrides the rubric's time limit")
    grade.add_argument("--gpus", default="auto", help="auto (nvidia-smi), none, or GPU indices such as 0,1")
    grade.add_argument("--per-gpu", type=int, default=1, metavar="K", help="jobs sharing each GPU")
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="CPU slots when there is no GPU")
    grade.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: this machine's slots; ray: a Ray cluster places each job (README: a class across machines)")
    grade.add_argument("--ray-address", default="auto", metavar="ADDR",
                       help="with --executor ray: the cluster to join (auto: the one started on this machine)")
    grade.add_argument("--cpus-per-job", type=int, default=1, metavar="N",
                       help="with --executor ray: the CPUs (and math threads) each job asks the cluster for")
    grade.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    grade.add_argument("--require-sandbox", action="store_true", help="refuse to grade without bubblewrap")
    grade.add_argument("--backend", choices=("torch", "tensorflow"), default="torch", help="KERAS_BACKEND for runs")

    calibrate = verbs.add_parser("calibrate", help="grade the reference here and write its figures and tiers into the rubric")
    calibrate.add_argument("--rubric", default="quick", help=RUBRIC_HELP + "; calibrating rewrites that file")
    calibrate.add_argument("--profile", choices=("quick", "full"), help="overrides the rubric's profile")
    calibrate.add_argument("--gpus", default="auto", help="auto (nvidia-smi), none, or GPU indices such as 0,1")

    template = verbs.add_parser("make-template", help="generate the student starter repo from the reference")
    template.add_argument("reference", type=Path, nargs="?", default=Path("reference"))
    template.add_argument("dest", type=Path, nargs="?", default=Path("student_template"))
    template.add_argument("--rubric", default="quick",
                          help="the rubric students get a copy of (hidden checks removed): a shipped name or a file")
    template.add_argument("--grader-requirement", metavar="REQ",
                          help="the requirements.txt line that installs the grader (a URL such as "
                               "'cnn-tuning-grader @ git+https://...'); default: a wheel built here, shipped in wheels/")
    template.add_argument("--check", action="store_true", help="only report files that are out of date (exit 1)")

    check = verbs.add_parser("check", help="self-check: grade your repository with the quick rubric's visible checks")
    check.add_argument("path", type=Path, nargs="?", default=Path("."))
    check.add_argument("--rubric", help=REPO_RUBRIC_HELP)
    check.add_argument("--time-limit", type=float, metavar="SECONDS")

    classroom = verbs.add_parser("classroom", help="grade this repository for GitHub Classroom (step outputs "
                                                   "result, earned and missed, and the step summary)")
    classroom.add_argument("path", type=Path, nargs="?", default=Path("."))
    classroom.add_argument("--rubric", help=REPO_RUBRIC_HELP)
    classroom.add_argument("--time-limit", type=float, metavar="SECONDS")

    c50 = verbs.add_parser("classroom50", help="grade this checkout for Classroom 50 (writes result.json, release-body.md)")
    c50.add_argument("path", type=Path, nargs="?", default=Path("."))
    c50.add_argument("--rubric", help=REPO_RUBRIC_HELP)
    c50.add_argument("--time-limit", type=float, metavar="SECONDS")
    c50.add_argument("--out", type=Path, help="where result.json goes (default: the current folder, as the runner reads it)")

    bundle = verbs.add_parser("classroom50-autograder",
                              help="write a Classroom 50 autograder bundle (autograder.py, rubric, grader wheel) into DEST")
    bundle.add_argument("dest", type=Path, help="the classroom's autograders/<assignment>/ folder")
    bundle.add_argument("--rubric", default="quick", help=RUBRIC_HELP)
    bundle.add_argument("--grader-requirement", metavar="REQ", help="install the grader from REQ instead of a wheel")

    gs_zip = verbs.add_parser("gradescope-autograder", help="write the autograder zip to upload to Gradescope")
    gs_zip.add_argument("--rubric", default="quick", help=RUBRIC_HELP)
    gs_zip.add_argument("--out", type=Path, default=Path("autograder.zip"))
    gs_zip.add_argument("--grader-requirement", metavar="REQ",
                        help="the requirement setup.sh installs the grader from (default: its wheel, in the zip)")

    gs_run = verbs.add_parser("gradescope-run", help="inside Gradescope: grade ROOT/submission, write results.json")
    gs_run.add_argument("--root", type=Path, default=Path("/autograder"))
    gs_run.add_argument("--rubric", type=Path, help="default: ROOT/source/rubric.json")
    gs_run.add_argument("--time-limit", type=float, metavar="SECONDS")

    doctor = verbs.add_parser("doctor", help="say what this machine offers (sandbox, cgroups, GPUs, data, backends) "
                                             "and what grader grade will do here")
    doctor.add_argument("--json", action="store_true", help="the versioned JSON document (doctor_version 1) instead")
    doctor.add_argument("--gpus", default="auto", help="as grader grade's --gpus: preview its slots")
    doctor.add_argument("--per-gpu", type=int, default=1, metavar="K")
    doctor.add_argument("--jobs", type=int, default=1, metavar="N")

    exp = verbs.add_parser("export", help="write Gradescope or GitHub Classroom results from OUT's result files")
    exp.add_argument("out", type=Path)
    exp.add_argument("--format", choices=("gradescope", "classroom"), required=True)
    exp.add_argument("--dest", type=Path, help="write here instead of OUT/<student>/<format>/")
    exp.add_argument("--student", help="export one student only (DEST/results.json)")
    exp.add_argument("--due", type=_datetime, help="ISO date; after_due_date checks reach Classroom after it")

    review = verbs.add_parser("review", help="write OUT/review.csv: the checks marked for manual review or suspect, "
                                             "with empty override columns (re-running keeps what was typed)")
    review.add_argument("out", type=Path)
    review.add_argument("--rubric", default="quick",
                        help=RUBRIC_HELP + " (the one graded with: it says which answer each answer check reads)")

    verify = verbs.add_parser("verify", help="re-train each submission's claimed best configurations (each distinct "
                                             "one once, cached in OUT/.verify) and judge the verified_training checks")
    verify.add_argument("out", type=Path)
    verify.add_argument("--rubric", default="quick", help=RUBRIC_HELP + " (the one graded with)")
    verify.add_argument("--retrain", action="store_true",
                        help="train the configurations the cache does not hold (without it: judge from the cache)")
    verify.add_argument("--gpus", default="auto", help="auto (a visible GPU), none, or GPU indices such as 0,1")
    verify.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="training processes on CPU (default: one per core)")

    report = verbs.add_parser("report", help="write OUT/report/index.html: the class report (distributions, pass "
                                             "rates, suspects, similar pairs, the review queue) and its PNGs")
    report.add_argument("out", type=Path)
    report.add_argument("--rubric", help=RUBRIC_HELP + " (the one graded with: the checks' order and titles); "
                                         "default: the results' own order")
    report.add_argument("--dest", type=Path, help="write the page and its PNGs here instead of OUT/report/")

    check_out = verbs.add_parser("validate-output", help="check an output dir against submission contract v1")
    check_out.add_argument("path", type=Path)
    check_out.add_argument("--searches", default="grid,random",
                           help="comma-separated searches whose best model must be exported, of grid, random, "
                                "bayesian and manual (default: grid,random)")

    check_rubric = verbs.add_parser("validate-rubric", help="check a rubric file against rubric v1")
    check_rubric.add_argument("path", help="a rubric file or a shipped rubric's name")
    return parser


def run(args: argparse.Namespace) -> int:
    from grader.rubric import resolve_rubric
    from grader.text import terminal_text

    if args.verb == "grade":
        from grader import grade

        executor = None
        if args.executor == "ray":
            from grader.ray_executor import RayExecutor
            executor = RayExecutor(args.ray_address, args.gpus, args.per_gpu, args.cpus_per_job)
        summary = grade.main(submissions=args.submissions, rubric=resolve_rubric(args.rubric), out=args.out,
                             profile=args.profile, time_limit=args.time_limit, gpus=args.gpus, per_gpu=args.per_gpu,
                             jobs=args.jobs, force=args.force, require_sandbox=args.require_sandbox, backend=args.backend,
                             executor=executor)
        return EXIT_SANDBOX_ERRORS if summary.sandbox_errors else EXIT_OK
    if args.verb == "calibrate":
        from grader import calibrate

        calibrate.main(rubric=resolve_rubric(args.rubric), profile=args.profile, gpus=args.gpus)
        return 0
    if args.verb in ("check", "classroom"):
        from grader import selfcheck

        verb = selfcheck.check_main if args.verb == "check" else selfcheck.classroom_main
        return verb(path=args.path, rubric=_repo_rubric(args.path, args.rubric), time_limit=args.time_limit)
    if args.verb == "classroom50":
        from grader import classroom50

        return classroom50.main(path=args.path, rubric=_repo_rubric(args.path, args.rubric), time_limit=args.time_limit,
                                out_dir=args.out)
    if args.verb == "classroom50-autograder":
        from grader import classroom50

        for path in classroom50.write_autograder(args.dest, resolve_rubric(args.rubric),
                                                 grader_requirement=args.grader_requirement):
            print(path)
        return EXIT_OK
    if args.verb == "gradescope-autograder":
        from grader import gradescope

        print(gradescope.build_main(rubric=resolve_rubric(args.rubric), out=args.out,
                                    grader_requirement=args.grader_requirement))
        return EXIT_OK
    if args.verb == "gradescope-run":
        from grader import gradescope_run

        # the rubric is not resolved here: a missing one must still end in a results.json
        return gradescope_run.run_main(root=args.root, rubric=args.rubric, time_limit=args.time_limit)
    if args.verb == "doctor":
        from grader import doctor

        return doctor.main(json_output=args.json, gpus=args.gpus, per_gpu=args.per_gpu, jobs=args.jobs)
    if args.verb == "export":
        from grader import export

        for path in export.main(out=args.out, format=args.format, dest=args.dest, student=args.student, due=args.due):
            print(path, file=sys.stderr)  # stdout may carry the classroom `result=...` line
        return 0
    if args.verb == "review":
        from grader import review
        from grader.rubric import load_rubric

        queue = review.main(out=args.out, rubric=load_rubric(resolve_rubric(args.rubric)))
        print(queue.path)
        print(f"{queue.rows} row(s): {queue.new} new, {queue.no_longer_flagged} no longer flagged (kept for what "
              f"was typed in them)", file=sys.stderr)
        for problem in queue.skipped:
            print(terminal_text(problem), file=sys.stderr)
        return EXIT_OK
    if args.verb == "verify":
        from grader import verify
        from grader.rubric import load_rubric

        if args.gpus not in ("auto", "none"):
            os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus  # the training workers inherit it
        done = verify.main(out=args.out, rubric=load_rubric(resolve_rubric(args.rubric)), retrain=args.retrain,
                           jobs=args.jobs, device={"auto": None, "none": "cpu"}.get(args.gpus, "cuda"),
                           log=lambda line: print(line, file=sys.stderr))
        print(f"{done.claims} claim(s), {done.configurations} distinct configuration(s): {done.cached} cached, "
              f"{done.trained} re-trained now, {done.pending} not re-trained yet"
              + (" (run with --retrain)" if done.pending and not args.retrain else "")
              + f"; {len(done.changed)} result(s) changed")
        for problem in done.problems:
            print(terminal_text(problem), file=sys.stderr)
        return EXIT_OK
    if args.verb == "report":
        from grader import report
        from grader.rubric import load_rubric

        written = report.main(out=args.out, dest=args.dest,
                              rubric=load_rubric(resolve_rubric(args.rubric)) if args.rubric else None)
        print(written.path)
        print(f"{written.students} student(s), {written.pairs} similar pair(s), {len(written.images)} plot(s)",
              file=sys.stderr)
        for problem in written.skipped:
            print(terminal_text(problem), file=sys.stderr)
        return EXIT_OK
    if args.verb == "make-template":
        from grader import template

        problems = template.main(reference=args.reference, dest=args.dest, rubric=resolve_rubric(args.rubric),
                                 check=args.check, grader_requirement=args.grader_requirement)
        for problem in problems:
            print(problem)
        if args.check:
            print(f"{args.dest} is out of date: run `grader make-template`" if problems else f"{args.dest} is in sync")
        else:
            print(f"wrote {args.dest} from {args.reference}")
        return 1 if problems else 0
    if args.verb == "validate-output":
        from grader import validate

        return validate.main([str(args.path), "--searches", args.searches])
    if args.verb == "validate-rubric":
        from grader.rubric import RubricError, load_rubric

        try:
            path = resolve_rubric(args.path)
            load_rubric(path)
        except RubricError as exc:
            for problem in exc.problems:
                print(f"{exc.path}: {problem}")
            return EXIT_USAGE
        print(f"OK: {path} is a valid rubric v1")
        return 0
    raise AssertionError(args.verb)


def _repo_rubric(repo: Path, rubric: str | None) -> Path:
    """The rubric a student's repository is checked with: the one named, else its own copy, else the shipped quick."""
    from grader.rubric import resolve_rubric

    if rubric is None and (repo / REPO_RUBRIC).is_file():
        return repo / REPO_RUBRIC
    return resolve_rubric(rubric or "quick")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn the errors a user can fix into one line and exit code 2 (the one error boundary)."""
    from grader.errors import GraderError
    from grader.text import terminal_text
    from tunekit.data import CorruptDatasetError, DatasetNotFoundError

    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return run(args)
    except (GraderError, DatasetNotFoundError, CorruptDatasetError, FileNotFoundError) as exc:
        print(f"grader: error: {terminal_text(str(exc), 2000)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grader: interrupted; results written so far are kept, re-run to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a verb the way Ctrl-C does: sandboxes killed, results written so far kept."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
