"""The grader's one error base: what a user can fix, printed by the CLI as one line with exit code 2."""

from __future__ import annotations


class GraderError(Exception):
    """A problem the user can fix (a bad rubric, a missing folder, no sandbox where one is required).

    The CLI catches it once and prints ``grader: error: <message>``; anything else that
    escapes a verb is a bug and keeps its traceback.
    """
