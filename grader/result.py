"""The record of one graded submission (result.json, schema v1), and whether a submission needs grading again."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grader.jsonio import schema_errors, write_json_atomic

RESULT_SCHEMA_VERSION = 1
SCHEMA_NAME = "result"
RESULT_FILE = "result.json"

Status = Literal["completed", "timed_out", "crashed", "invalid_submission", "sandbox_error"]
STATUSES: tuple[str, ...] = ("completed", "timed_out", "crashed", "invalid_submission", "sandbox_error")
CHECK_STATUSES: tuple[str, ...] = ("pass", "partial", "fail", "error", "skipped")
VISIBILITIES: tuple[str, ...] = ("visible", "hidden", "after_due_date")
ISOLATION_METHODS: tuple[str, ...] = ("bwrap", "rlimits", "rlimits+netns", "none")


@dataclass(frozen=True)
class Timings:
    """Where the time went: waiting for a slot, running the submission, evaluating its models (seconds).

    ``started_at`` and ``finished_at`` are ISO 8601 timestamps with a UTC offset, e.g. ``2026-11-26T19:40:01Z``.
    """

    queued_s: float
    run_s: float
    evaluation_s: float
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class Slot:
    """The slot the submission ran on: a CPU slot, or a GPU slot with the GPU's index; on a Ray cluster, which node.

    On this machine ``index`` is the slot's number; on a Ray cluster it is the job's position in the batch.
    """

    kind: Literal["cpu", "gpu"]
    index: int
    gpu: str | None = None
    node: str | None = None  # the Ray node's id (--executor ray); None on this machine


@dataclass(frozen=True)
class Device:
    """What the job reported it saw (grader/gpu_site/sitecustomize.py, at exit): its words, not the grader's.

    ``kind`` is "gpu" when its framework found a CUDA device, else "cpu"; ``frameworks`` maps torch,
    tensorflow or jax to the version it imported; ``cuda_used`` says whether it put memory on the GPU
    (trained there); ``note`` is a problem it reported (e.g. a memory cap that could not be applied).
    """

    kind: Literal["cpu", "gpu"]
    name: str | None = None
    memory_mib: int | None = None
    frameworks: dict[str, str] = field(default_factory=dict)
    cuda_used: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Isolation:
    """How the submission was sandboxed, and in what detail (e.g. which rlimits)."""

    method: Literal["bwrap", "rlimits", "rlimits+netns", "none"]
    details: str


@dataclass(frozen=True)
class Artifact:
    """One entry the submission left in its output dir: path relative to it, size and kind (model, plot, ...).

    ``refused`` says why the grader did not copy it out of the sandbox's tree (a link, a FIFO, too large, a name
    that is not printable UTF-8); ``path`` is then an escaped display form and ``bytes`` 0.
    """

    path: str
    bytes: int
    kind: str
    refused: str | None = None


@dataclass(frozen=True)
class Architecture:
    """An exported model's architecture as its evaluator reported it (grader.evalchild), bounded by grader.protocol.

    ``input_shape`` is the model's one input without the batch axis (None for an axis of any size), or None when
    the model has no single input; ``layers`` the class names of its layers in order, a nested model's layers in
    its place, at most the first 200; ``layer_count`` how many layers there are in all; ``conv2d`` how many are
    Conv2D; ``params`` the parameter count. The class names are the submission's: escape them before showing them.
    """

    input_shape: tuple[int | None, ...] | None
    layers: tuple[str, ...]
    layer_count: int
    conv2d: int
    params: int


@dataclass(frozen=True)
class ModelEvaluation:
    """The grader's own evaluation of one exported best model on the held-out test split, and its architecture
    (None when the model did not load, or for results written before it was reported)."""

    search: str
    path: str
    test_accuracy: float | None
    n_test: int
    error: str | None
    seconds: float
    architecture: Architecture | None = None


@dataclass(frozen=True)
class Override:
    """A reviewer's points for one check (grader.review): the points, their comment and name, when, and the grader's
    own status before them (restored with the automatic points when the override is removed).

    ``at`` is an ISO 8601 timestamp with a UTC offset, the moment these points, comment or reviewer were first applied.
    """

    points: float
    comment: str
    reviewer: str
    at: str
    automatic_status: Literal["pass", "partial", "fail", "error", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One rubric check's verdict, with the message a student can act on.

    ``suspect`` flags something a person should look at; ``review`` says the rubric asks a person to read this check
    (``manual_review``). Both put the check in ``grader review``'s queue. ``points`` are always the final points: with
    an ``override`` (a reviewer's, grader.review) they are the reviewer's, ``automatic_points`` the grader's own and
    ``status`` follows the final points; without one ``automatic_points`` is None.
    """

    id: str
    title: str
    kind: str
    points: float
    max_points: float
    status: Literal["pass", "partial", "fail", "error", "skipped"]
    visibility: Literal["visible", "hidden", "after_due_date"]
    message: str
    suspect: bool = False
    review: bool = False
    automatic_points: float | None = None
    override: Override | None = None


@dataclass(frozen=True)
class Score:
    """Points earned out of points possible."""

    earned: float
    possible: float


@dataclass(frozen=True)
class Result:
    """Everything the grader recorded about one submission.

    ``content_hash`` is None when the submission could not be read at all (e.g. a
    refused zip); ``logs`` maps a log's name to its file, relative to the result's folder.
    """

    schema_version: int
    student_id: str
    content_hash: str | None
    rubric_hash: str
    grader_version: str
    profile: str
    status: Status
    message: str
    exit_code: int | None
    signal: int | None
    entry_point: str | None
    timings: Timings
    slot: Slot | None
    isolation: Isolation | None
    packages: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    evaluations: tuple[ModelEvaluation, ...] = ()
    logs: dict[str, str] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()
    score: Score | None = None
    device: Device | None = None  # absent from results written before it existed
    fallbacks: tuple[str, ...] = ()  # the contract's fallbacks that graded this run, one line each (grader.runner)


# ---------------------------------------------------------------- JSON


def to_json(result: Result) -> dict[str, Any]:
    """result as JSON-native data (dicts, lists, str, numbers, bools, None) in schema v1's shape."""
    t = result.timings
    return {
        "schema_version": result.schema_version,
        "student_id": result.student_id,
        "content_hash": result.content_hash,
        "rubric_hash": result.rubric_hash,
        "grader_version": result.grader_version,
        "profile": result.profile,
        "status": result.status,
        "message": result.message,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "entry_point": result.entry_point,
        "timings": {
            "queued_s": t.queued_s,
            "run_s": t.run_s,
            "evaluation_s": t.evaluation_s,
            "started_at": t.started_at,
            "finished_at": t.finished_at,
        },
        "slot": None if result.slot is None else {
            "kind": result.slot.kind, "index": result.slot.index, "gpu": result.slot.gpu,
            **({"node": result.slot.node} if result.slot.node is not None else {}),
        },
        "isolation": None if result.isolation is None else {
            "method": result.isolation.method, "details": result.isolation.details,
        },
        "packages": dict(result.packages),
        "artifacts": [{"path": a.path, "bytes": a.bytes, "kind": a.kind, "refused": a.refused} for a in result.artifacts],
        "evaluations": [
            {
                "search": e.search,
                "path": e.path,
                "test_accuracy": e.test_accuracy,
                "n_test": e.n_test,
                "error": e.error,
                "seconds": e.seconds,
                **({} if e.architecture is None else {"architecture": architecture_json(e.architecture)}),
            }
            for e in result.evaluations
        ],
        "logs": dict(result.logs),
        "checks": [
            {
                "id": c.id,
                "title": c.title,
                "kind": c.kind,
                "points": c.points,
                "max_points": c.max_points,
                "status": c.status,
                "visibility": c.visibility,
                "message": c.message,
                "suspect": c.suspect,
                **({"review": True} if c.review else {}),
                **({} if c.override is None else {
                    "automatic_points": c.automatic_points,
                    "override": {"points": c.override.points, "comment": c.override.comment,
                                 "reviewer": c.override.reviewer, "at": c.override.at,
                                 "automatic_status": c.override.automatic_status},
                }),
            }
            for c in result.checks
        ],
        "score": None if result.score is None else {"earned": result.score.earned, "possible": result.score.possible},
        "device": None if result.device is None else {
            "kind": result.device.kind,
            "name": result.device.name,
            "memory_mib": result.device.memory_mib,
            "frameworks": dict(result.device.frameworks),
            "cuda_used": result.device.cuda_used,
            "note": result.device.note,
        },
        **({"fallbacks": list(result.fallbacks)} if result.fallbacks else {}),
    }


def from_json(data: Any) -> Result:
    """The Result that data describes; ValueError naming the first schema violation if it is not a v1 result."""
    errors = schema_errors(data, SCHEMA_NAME)
    if errors:
        raise ValueError(f"not a valid result: {errors[0]}")
    t = data["timings"]
    slot = data["slot"]
    isolation = data["isolation"]
    score = data["score"]
    device = data.get("device")
    return Result(
        schema_version=data["schema_version"],
        student_id=data["student_id"],
        content_hash=data["content_hash"],
        rubric_hash=data["rubric_hash"],
        grader_version=data["grader_version"],
        profile=data["profile"],
        status=data["status"],
        message=data["message"],
        exit_code=data["exit_code"],
        signal=data["signal"],
        entry_point=data["entry_point"],
        timings=Timings(
            queued_s=float(t["queued_s"]),
            run_s=float(t["run_s"]),
            evaluation_s=float(t["evaluation_s"]),
            started_at=t["started_at"],
            finished_at=t["finished_at"],
        ),
        slot=None if slot is None else Slot(kind=slot["kind"], index=slot["index"], gpu=slot["gpu"],
                                                node=slot.get("node")),
        isolation=None if isolation is None else Isolation(method=isolation["method"], details=isolation["details"]),
        packages=dict(data["packages"]),
        artifacts=tuple(Artifact(path=a["path"], bytes=a["bytes"], kind=a["kind"], refused=a.get("refused"))
                        for a in data["artifacts"]),
        evaluations=tuple(
            ModelEvaluation(
                search=e["search"],
                path=e["path"],
                test_accuracy=None if e["test_accuracy"] is None else float(e["test_accuracy"]),
                n_test=e["n_test"],
                error=e["error"],
                seconds=float(e["seconds"]),
                architecture=_architecture(e.get("architecture")),
            )
            for e in data["evaluations"]
        ),
        logs=dict(data["logs"]),
        checks=tuple(
            CheckResult(
                id=c["id"],
                title=c["title"],
                kind=c["kind"],
                points=float(c["points"]),
                max_points=float(c["max_points"]),
                status=c["status"],
                visibility=c["visibility"],
                message=c["message"],
                suspect=c.get("suspect", False),
                review=c.get("review", False),
                automatic_points=None if c.get("automatic_points") is None else float(c["automatic_points"]),
                override=_override(c.get("override")),
            )
            for c in data["checks"]
        ),
        score=None if score is None else Score(earned=float(score["earned"]), possible=float(score["possible"])),
        device=None if device is None else Device(kind=device["kind"], name=device["name"],
                                                  memory_mib=device["memory_mib"], frameworks=dict(device["frameworks"]),
                                                  cuda_used=device["cuda_used"], note=device["note"]),
        fallbacks=tuple(data.get("fallbacks", ())),
    )


def architecture_json(arch: Architecture) -> dict[str, Any]:
    """An Architecture as JSON (result.json's evaluations[].architecture, and the evaluator's report)."""
    return {"input_shape": None if arch.input_shape is None else list(arch.input_shape), "layers": list(arch.layers),
            "layer_count": arch.layer_count, "conv2d": arch.conv2d, "params": arch.params}


def _architecture(data: Any) -> Architecture | None:
    if data is None:
        return None
    shape = data["input_shape"]
    return Architecture(input_shape=None if shape is None else tuple(shape), layers=tuple(data["layers"]),
                        layer_count=data["layer_count"], conv2d=data["conv2d"], params=data["params"])


def _override(data: Any) -> Override | None:
    if data is None:
        return None
    return Override(points=float(data["points"]), comment=data["comment"], reviewer=data["reviewer"], at=data["at"],
                    automatic_status=data["automatic_status"])


def write_result(path: str | os.PathLike[str], result: Result) -> None:
    """Validate result against schema v1, then write it to path atomically (temp file, then rename)."""
    errors = schema_errors(to_json(result), SCHEMA_NAME)
    if errors:
        raise ValueError(f"result for '{result.student_id}' does not match the result schema: {errors[0]}")
    write_json_atomic(path, to_json(result))


def read_result(path: str | os.PathLike[str]) -> Result | None:
    """The result stored at path; None when there is none; ValueError (one line naming the file) when it is unreadable."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"result file '{file}' is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"result file '{file}' is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != RESULT_SCHEMA_VERSION:
        raise ValueError(
            f"result file '{file}' has schema version {version}; this grader reads version {RESULT_SCHEMA_VERSION}"
        )
    try:
        return from_json(data)
    except ValueError as exc:
        raise ValueError(f"result file '{file}' is {exc}") from None


def read_results(root: str | os.PathLike[str]) -> tuple[list[tuple[str, Result]], list[str]]:
    """Every root/<folder>/result.json as (folder name, result), sorted by folder, and the one-line error of each
    result file that could not be read. Hidden folders (the grader's own data) and folders without a result are skipped.
    """
    results: list[tuple[str, Result]] = []
    problems: list[str] = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            result = read_result(folder / RESULT_FILE)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if result is not None:
            results.append((folder.name, result))
    return results, problems


# ---------------------------------------------------------------- resume


def needs_grading(
    existing: Result | None,
    *,
    content_hash: str,
    rubric_hash: str,
    grader_version: str,
    force: bool,
) -> tuple[bool, str]:
    """Whether a submission must be graded (again), and why: the decision a resumed batch makes per student.

    A previous run's completed, timed-out, crashed or invalid verdict stands while
    nothing changed; a sandbox error is the grader's fault and is always retried.
    """
    if existing is None:
        return True, "new"
    if force:
        return True, "forced"
    if existing.content_hash != content_hash:
        return True, "content changed"
    if existing.rubric_hash != rubric_hash:
        return True, "rubric changed"
    if existing.grader_version != grader_version:
        return True, "grader version changed"
    if existing.status == "sandbox_error":
        return True, "previous run hit a sandbox error"
    return False, "unchanged"
