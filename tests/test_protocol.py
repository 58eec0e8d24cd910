"""The child reports read back as untrusted input: exact types, caps, one-line errors; what the children write reads back."""

from __future__ import annotations

import pytest

from grader.protocol import MAX_ERRORS, MAX_TEXT, CellError, EvalReport, RunSummary

GOOD = {
    "version": 1, "status": "cell_errors", "cells_total": 5, "cells_executed": 5,
    "errors": [{"cell_index": 2, "ename": "ValueError", "evalue": "the grid is empty"}],
    "timed_out_cell": None, "kernel_died_cell": None, "parameters_cell_found": True,
}


def test_a_summary_reads_back_what_the_runner_wrote() -> None:
    summary = RunSummary.from_json(GOOD)
    assert summary.errors == (CellError(2, "ValueError", "the grid is empty"),)
    assert RunSummary.from_json(summary.to_json()) == summary


@pytest.mark.parametrize(("change", "message"), [
    ({"version": 2}, "nbrun summary version 2 is not 1"),
    ({"status": "graded_100"}, "nbrun summary status 'graded_100' is not one of completed, cell_errors, "
                               "kernel_died, cell_timeout"),
    ({"cells_total": True}, "cells_total must be a whole number from 0 to 1000000"),
    ({"cells_executed": 10**7}, "cells_executed must be a whole number from 0 to 1000000"),
    ({"kernel_died_cell": -1}, "kernel_died_cell must be a whole number from 0 to 1000000"),
    ({"errors": {"0": 1}}, f"nbrun summary errors must be a list of at most {MAX_ERRORS} cell errors"),
    ({"errors": [{"cell_index": 0, "ename": "E"}]}, "nbrun summary errors[0] lacks evalue"),
    ({"errors": [{"cell_index": 0, "ename": 1, "evalue": ""}]}, "errors[0].ename must be a string"),
    ({"parameters_cell_found": "yes"}, "nbrun summary parameters_cell_found must be true or false"),
    ({"score": 100}, "nbrun summary has an unknown field 'score'"),
])
def test_a_forged_or_broken_summary_is_refused_with_one_line(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        RunSummary.from_json({**GOOD, **change})
    assert str(excinfo.value) == message


def test_a_summary_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="^nbrun summary is not a JSON object$"):
        RunSummary.from_json([GOOD])


def test_a_summary_cannot_grow_the_graders_memory_through_its_texts_or_errors() -> None:
    long = {**GOOD, "errors": [{"cell_index": 0, "ename": "E" * 10**6, "evalue": "v"}]}
    assert len(RunSummary.from_json(long).errors[0].ename) == MAX_TEXT
    with pytest.raises(ValueError, match="at most 1000 cell errors"):
        RunSummary.from_json({**GOOD, "errors": [GOOD["errors"][0]] * (MAX_ERRORS + 1)})


def test_an_evaluation_report_reads_back_and_refuses_anything_else() -> None:
    assert EvalReport.from_json(EvalReport("the model does not load").to_json()) == EvalReport("the model does not load")
    assert EvalReport.from_json({"version": 1, "error": None}).error is None
    for doc, message in (({"version": 1, "error": 3}, "error must be a string"),
                         ({"version": 1}, "evaluation report lacks error"),
                         ({"version": 1, "error": None, "accuracy": 1.0}, "evaluation report has an unknown field 'accuracy'"),
                         ({"version": 0, "error": None}, "evaluation report version 0 is not 1")):
        with pytest.raises(ValueError) as excinfo:
            EvalReport.from_json(doc)
        assert str(excinfo.value) == message
