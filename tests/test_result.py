"""Tests for grader.result: the result.json record, its schema, atomic writes and resume decisions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from grader.jsonio import schema_errors
from grader.result import (
    RESULT_SCHEMA_VERSION,
    STATUSES,
    Artifact,
    CheckResult,
    Device,
    Isolation,
    ModelEvaluation,
    Result,
    Score,
    Slot,
    Timings,
    from_json,
    needs_grading,
    read_result,
    to_json,
    write_result,
)

HASH_A = "sha256:" + "a" * 64
HASH_B = "sha256:" + "b" * 64


def completed_result(**changes: object) -> Result:
    """A fully populated result of a submission that ran to the end on a GPU slot."""
    result = Result(
        schema_version=RESULT_SCHEMA_VERSION,
        student_id="007",
        content_hash=HASH_A,
        rubric_hash="sha256:" + "c" * 64,
        grader_version="0.1.0",
        profile="full",
        status="completed",
        message="finished in 412.3 s",
        exit_code=0,
        signal=None,
        entry_point="tuning.py",
        timings=Timings(
            queued_s=1.5, run_s=412.25, evaluation_s=8.0,
            started_at="2026-11-26T19:40:01Z", finished_at="2026-11-26T19:47:03.25+00:00",
        ),
        slot=Slot(kind="gpu", index=0, gpu="NVIDIA H100 80GB HBM3"),
        isolation=Isolation(method="bwrap", details="no network, read-only system, memory 16 GiB"),
        packages={"keras": "3.6.0", "keras-tuner": "1.4.8"},
        artifacts=(Artifact(path="models/best_grid.keras", bytes=123456, kind="model"),),
        evaluations=(
            ModelEvaluation(search="grid", path="models/best_grid.keras", test_accuracy=0.9812,
                            n_test=10000, error=None, seconds=3.5),
            ModelEvaluation(search="random", path="models/best_random.keras", test_accuracy=None,
                            n_test=0, error="model file is missing", seconds=0.0),
        ),
        logs={"stdout": "logs/stdout.txt", "stderr": "logs/stderr.txt"},
        checks=(
            CheckResult(id="grid_coverage", title="Every grid combination trained", kind="grid_coverage",
                        points=10.0, max_points=10.0, status="pass", visibility="visible", message="16 of 16 trained"),
            CheckResult(id="best_accuracy", title="Best model accuracy", kind="best_accuracy", points=2.5,
                        max_points=5.0, status="partial", visibility="hidden",
                        message="claimed 0.99, measured 0.98", suspect=True),
        ),
        score=Score(earned=12.5, possible=15.0),
    )
    return dataclasses.replace(result, **changes)


def test_round_trip_through_json_keeps_every_field() -> None:
    result = completed_result()
    assert from_json(json.loads(json.dumps(to_json(result)))) == result


def test_to_json_matches_the_result_schema() -> None:
    assert schema_errors(to_json(completed_result()), "result") == []


def test_a_refused_submission_has_no_hash_slot_or_score() -> None:
    result = completed_result(
        content_hash=None, status="invalid_submission", message="zip expands beyond 200 MiB (zip bomb?)",
        exit_code=None, entry_point=None, slot=None, isolation=None, packages={}, artifacts=(),
        evaluations=(), logs={}, checks=(), score=None,
    )
    assert schema_errors(to_json(result), "result") == []
    assert from_json(to_json(result)) == result


def test_schema_lists_every_status() -> None:
    for status in STATUSES:
        assert schema_errors(to_json(completed_result(status=status)), "result") == []
    assert schema_errors(to_json(completed_result(status="exploded")), "result") == [
        "$.status: 'exploded' is not one of ['completed', 'timed_out', 'crashed', 'invalid_submission', 'sandbox_error']"
    ]


def test_write_then_read_gives_the_same_result_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "007" / "result.json"
    write_result(path, completed_result(status="crashed", message="first try"))
    write_result(path, completed_result())
    assert read_result(path) == completed_result()
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_write_refuses_a_result_that_breaks_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    with pytest.raises(ValueError) as info:
        write_result(path, completed_result(content_hash="md5:abc"))
    assert str(info.value) == (
        "result for '007' does not match the result schema: "
        "$.content_hash: 'md5:abc' does not match '^sha256:[0-9a-f]{64}$'"
    )
    assert not path.exists()


def test_read_missing_result_is_none(tmp_path: Path) -> None:
    assert read_result(tmp_path / "nobody" / "result.json") is None


def test_read_truncated_result_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"schema_version": 1, "student_id": "007"')
    with pytest.raises(ValueError) as info:
        read_result(path)
    assert str(info.value) == f"result file '{path}' is not valid JSON (Expecting ',' delimiter at line 1)"


def test_read_result_that_breaks_the_schema_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    data = to_json(completed_result())
    del data["timings"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        read_result(path)
    assert str(info.value) == f"result file '{path}' is not a valid result: $: 'timings' is a required property"


def test_read_result_of_another_schema_version_says_so(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps({**to_json(completed_result()), "schema_version": 2}))
    with pytest.raises(ValueError) as info:
        read_result(path)
    assert str(info.value) == f"result file '{path}' has schema version 2; this grader reads version 1"


# ---------------------------------------------------------------- resume decisions

CURRENT = {"content_hash": HASH_A, "rubric_hash": "sha256:" + "c" * 64, "grader_version": "0.1.0"}


@pytest.mark.parametrize(
    ("existing", "changes", "force", "expected"),
    [
        (None, {}, False, (True, "new")),
        (None, {}, True, (True, "new")),
        (completed_result(), {}, True, (True, "forced")),
        (completed_result(), {"content_hash": HASH_B}, False, (True, "content changed")),
        (completed_result(content_hash=None), {}, False, (True, "content changed")),
        (completed_result(), {"rubric_hash": "sha256:" + "d" * 64}, False, (True, "rubric changed")),
        (completed_result(), {"grader_version": "0.2.0"}, False, (True, "grader version changed")),
        (completed_result(status="sandbox_error"), {}, False, (True, "previous run hit a sandbox error")),
        (completed_result(), {}, False, (False, "unchanged")),
        (completed_result(status="timed_out"), {}, False, (False, "unchanged")),
        (completed_result(status="crashed"), {}, False, (False, "unchanged")),
        (completed_result(status="invalid_submission"), {}, False, (False, "unchanged")),
    ],
    ids=[
        "new", "new-and-forced", "forced", "content", "content-unreadable-before", "rubric", "grader",
        "sandbox-error", "unchanged", "timed-out-stands", "crash-stands", "invalid-stands",
    ],
)
def test_needs_grading(existing: Result | None, changes: dict[str, str], force: bool, expected: tuple[bool, str]) -> None:
    assert needs_grading(existing, **{**CURRENT, **changes}, force=force) == expected


def test_the_device_the_job_saw_round_trips_and_matches_the_schema() -> None:
    seen = Device(kind="gpu", name="NVIDIA H200", memory_mib=143771, frameworks={"torch": "2.13.0"}, cuda_used=True)
    result = completed_result(device=seen)
    assert schema_errors(to_json(result), "result") == []
    assert from_json(json.loads(json.dumps(to_json(result)))).device == seen


def test_a_result_written_before_the_device_was_recorded_is_still_read(tmp_path: Path) -> None:
    data = to_json(completed_result())
    del data["device"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    assert read_result(path) == completed_result()
