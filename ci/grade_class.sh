#!/usr/bin/env bash
# The instructor's batch: grade a folder of cloned student repositories on this machine's GPUs
# with the full rubric, then export the gradebook and Gradescope results.
#
#   gh classroom clone student-repos -a <assignment-id>   # one folder per student: <assignment>-<github-user>
#   ci/grade_class.sh <assignment>-submissions [OUT]
#
# Environment: GRADER (default .venv/bin/grader), RUBRIC (full: the shipped full rubric, or a file), GPUS (auto), PER_GPU (2).
set -euo pipefail
submissions=${1:?usage: ci/grade_class.sh SUBMISSIONS_DIR [OUT_DIR]}
out=${2:-grading-out}
grader=${GRADER:-.venv/bin/grader}
rubric=${RUBRIC:-full}

"$grader" validate-rubric "$rubric"
"$grader" grade "$submissions" --rubric "$rubric" --out "$out" \
  --gpus "${GPUS:-auto}" --per-gpu "${PER_GPU:-2}" --require-sandbox
"$grader" export "$out" --format gradescope
echo "gradebook: $out/grades.csv and $out/grades.parquet; feedback: $out/<student>/feedback.html"
