"""The `grader` command line: a thin parser over each verb's keyword-only main(), and the one error boundary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from grader import __version__

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Grade the CNN hyperparameter-tuning assignment.")
    parser.add_argument("--version", action="version", version=f"grader {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    grade = verbs.add_parser("grade", help="run, evaluate and record every submission of a batch")
    grade.add_argument("submissions", nargs="+", type=Path,
                       help="a folder of submissions (one per child: folder, .zip, .ipynb or .py) or one submission")
    grade.add_argument("--rubric", type=Path, default=Path("rubrics/quick.json"))
    grade.add_argument("--out", type=Path, default=Path("grading-out"))
    grade.add_argument("--profile", choices=("quick", "full"), help="overrides the rubric's profile")
    grade.add_argument("--time-limit", type=float, metavar="SECONDS", help="overrides the rubric's time limit")
    grade.add_argument("--gpus", default="auto", help="auto (nvidia-smi), none, or GPU indices such as 0,1")
    grade.add_argument("--per-gpu", type=int, default=1, metavar="K", help="jobs sharing each GPU")
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="CPU slots when there is no GPU")
    grade.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    grade.add_argument("--require-sandbox", action="store_true", help="refuse to grade without bubblewrap")
    grade.add_argument("--backend", choices=("torch", "tensorflow"), default="torch", help="KERAS_BACKEND for runs")

    check_out = verbs.add_parser("validate-output", help="check an output dir against submission contract v1")
    check_out.add_argument("path", type=Path)

    check_rubric = verbs.add_parser("validate-rubric", help="check a rubric file against rubric v1")
    check_rubric.add_argument("path", type=Path)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.verb == "grade":
        from grader import grade

        summary = grade.main(submissions=args.submissions, rubric=args.rubric, out=args.out, profile=args.profile,
                             time_limit=args.time_limit, gpus=args.gpus, per_gpu=args.per_gpu, jobs=args.jobs,
                             force=args.force, require_sandbox=args.require_sandbox, backend=args.backend)
        return 0 if summary is not None else 1
    if args.verb == "validate-output":
        from grader import validate

        return validate.main([str(args.path)])
    if args.verb == "validate-rubric":
        from grader.rubric import RubricError, load_rubric

        try:
            load_rubric(args.path)
        except RubricError as exc:
            for problem in exc.problems:
                print(f"{args.path}: {problem}")
            return EXIT_USAGE
        print(f"OK: {args.path} is a valid rubric v1")
        return 0
    raise AssertionError(args.verb)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn the errors a user can fix into one line and exit code 2."""
    from grader.rubric import RubricError
    from grader.sandbox import SandboxUnavailableError
    from grader.scheduler import SlotError
    from grader.staging import DuplicateStudentError
    from tunekit.data import CorruptDatasetError, DatasetNotFoundError

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (RubricError, SandboxUnavailableError, SlotError, DuplicateStudentError, DatasetNotFoundError,
            CorruptDatasetError, FileNotFoundError) as exc:
        print(f"grader: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grader: interrupted; results written so far are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
