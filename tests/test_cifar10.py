"""CIFAR-10 end to end: the rubric's dataset reaches the submission (GRADER_DATASET, the notebook's DATASET), the
reference trains on 32x32x3 images, and the shipped CIFAR-10 rubrics grade it.

No real CIFAR-10 is reachable here, so the slow test writes a small one in the real python-batch format
(data_batch_1..5, test_batch, batches.meta: pickled dicts of b"data" uint8 (N, 3072) rows, channel-major, and
b"labels"), learnable by colour, into a temp Keras cache: the place tunekit.data searches where real CIFAR-10 files
would be.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import ROOT, child_env
from grader.result import Slot, read_result
from grader.rubric import SHIPPED, load_rubric, resolve_rubric
from grader.runner import NOTEBOOK_COPY
from grader.sandbox import Limits
from grader.session import Layout, SessionSettings, notebook_params, plan_submission
from tunekit import data
from tunekit.config import parse_args

TRAIN_PER_BATCH = 200  # five batches: a 1,000-image train split, which the quick profile shares 750/250
TEST_SIZE = 200


# --------------------------------------------------------------------------- a small CIFAR-10 in the real format


def cifar_batch(rng: np.random.Generator, palette: np.ndarray, size: int, label: str) -> bytes:
    """One python batch: every class its own colour plus noise, rows channel-major (R plane, G plane, B plane)."""
    labels = np.arange(size) % 10
    rng.shuffle(labels)
    planes = palette[labels][:, :, None, None] + rng.normal(0.0, 30.0, size=(size, 3, 32, 32))
    rows = np.clip(planes, 0, 255).astype(np.uint8).reshape(size, 3072)
    return pickle.dumps({b"batch_label": label.encode(), b"labels": [int(v) for v in labels], b"data": rows,
                         b"filenames": [f"{label}-{i}.png".encode() for i in range(size)]}, protocol=2)


def write_small_cifar10(directory: Path, *, per_batch: int = TRAIN_PER_BATCH, test_size: int = TEST_SIZE) -> Path:
    """cifar-10-batches-py/ as the real download unpacks it, with per_batch images in each of the five train batches."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(10)
    palette = rng.integers(0, 256, size=(10, 3))
    for i in range(1, 6):
        (directory / f"data_batch_{i}").write_bytes(cifar_batch(rng, palette, per_batch, f"training batch {i} of 5"))
    (directory / "test_batch").write_bytes(cifar_batch(rng, palette, test_size, "testing batch 1 of 1"))
    meta = {b"label_names": [name.encode() for name in data.dataset_info("cifar10").class_names],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return directory


def test_the_small_cifar10_reads_as_32x32x3_images_of_ten_classes(tmp_path: Path) -> None:
    write_small_cifar10(tmp_path / "cifar-10-batches-py")
    x_train, y_train = data.load_split("cifar10", "train", data_dir=tmp_path)
    x_test, y_test = data.load_split("cifar10", "test", data_dir=tmp_path)
    assert (x_train.shape, x_test.shape) == ((5 * TRAIN_PER_BATCH, 32, 32, 3), (TEST_SIZE, 32, 32, 3))
    assert np.bincount(y_train).tolist() == [5 * TRAIN_PER_BATCH // 10] * 10
    assert np.bincount(y_test).tolist() == [TEST_SIZE // 10] * 10


def test_a_train_split_smaller_than_the_quick_profile_is_shared_in_its_proportion() -> None:
    assert data.split_sizes(1000, train_size=3000, val_size=1000, val_fraction=0.1, shrink_to_fit=True) == (750, 250)
    assert data.split_sizes(60000, train_size=3000, val_size=1000, val_fraction=0.1, shrink_to_fit=True) == (3000, 1000)
    with pytest.raises(ValueError) as err:
        data.split_sizes(1000, train_size=3000, val_size=1000, val_fraction=0.1)
    assert str(err.value) == "train_size 3000 + val_size 1000 do not fit in the 1000 images of the train split"


# --------------------------------------------------------------------------- the dataset reaches the submission


def cifar_settings(tmp_path: Path) -> SessionSettings:
    return SessionSettings(profile="quick", dataset="cifar10", time_limit_s=300.0, seed=0, backend="torch",
                           isolation="rlimits", limits=Limits(), cell_timeout_s=None, eval_time_limit_s=120.0,
                           data_dir=tmp_path / ".data" / "train", threads=1)


def test_a_script_is_told_the_rubrics_dataset_in_GRADER_DATASET(tmp_path: Path) -> None:
    spec = plan_submission(Layout(tmp_path / "ann"), "tuning.py", Slot("cpu", 0), cifar_settings(tmp_path))
    assert spec.env["GRADER_DATASET"] == "cifar10"
    assert spec.env["GRADER_DATA_DIR"] == str(tmp_path / ".data" / "train")


def test_a_notebook_gets_DATASET_among_its_injected_parameters(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ann")
    settings = cifar_settings(tmp_path)
    assert notebook_params(layout, settings)["DATASET"] == "cifar10"
    spec = plan_submission(layout, "assignment.ipynb", Slot("cpu", 0), settings)
    assert ("--param", 'DATASET="cifar10"') in zip(spec.command, spec.command[1:])
    assert spec.env["GRADER_DATASET"] == "cifar10"  # what the notebook's own imports read, too


def test_settings_made_without_a_dataset_are_for_mnist(tmp_path: Path) -> None:
    settings = cifar_settings(tmp_path)
    given = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "dataset"}
    assert SessionSettings(**given).dataset == "mnist"


def test_a_run_takes_its_dataset_from_GRADER_DATASET_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADER_DATASET", raising=False)
    assert parse_args([]).dataset == "mnist"
    monkeypatch.setenv("GRADER_DATASET", "cifar10")
    assert parse_args([]).dataset == "cifar10"
    assert parse_args(["--dataset", "fashion_mnist"]).dataset == "fashion_mnist"


def test_an_unknown_GRADER_DATASET_is_refused_naming_the_known_ones(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRADER_DATASET", "svhn")
    with pytest.raises(SystemExit) as exit_:
        parse_args([])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: GRADER_DATASET must be one of mnist, fashion_mnist, cifar10, not 'svhn'")


# --------------------------------------------------------------------------- the shipped CIFAR-10 rubrics


def without_dataset_and_tiers(doc: dict) -> dict:
    """A rubric document less what a CIFAR-10 rubric changes of its MNIST twin: description, dataset, accuracy tiers,
    the models' input shape."""
    doc = json.loads(json.dumps(doc))
    del doc["description"], doc["dataset"]
    for check in doc["checks"]:
        check["params"].pop("tiers", None)
        check["params"].pop("input_shape", None)
    return doc


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_the_cifar10_rubrics_are_their_mnist_twins_with_cifar10_tiers(profile: str) -> None:
    path = resolve_rubric(f"cifar10_{profile}")
    assert path == SHIPPED / f"cifar10_{profile}.json"
    rubric, twin = load_rubric(path), load_rubric(SHIPPED / f"{profile}.json")
    assert (rubric.dataset, rubric.profile, rubric.max_points) == ("cifar10", profile, 100)
    assert without_dataset_and_tiers(rubric.raw) == without_dataset_and_tiers(twin.raw)
    assert "not calibrated" in rubric.raw["description"] and "grader calibrate" in rubric.raw["description"]
    for check in rubric.checks:
        for tier in check.params.get("tiers", ()):
            assert 0.1 < tier["min_accuracy"] < 0.7 and "margin" in tier  # above chance, below MNIST's 0.97+


def test_grader_validate_rubric_accepts_the_cifar10_rubrics_by_name() -> None:
    for name in ("cifar10_quick", "cifar10_full"):
        proc = subprocess.run([sys.executable, "-m", "grader.cli", "validate-rubric", name], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout.strip()) == (0, f"OK: {SHIPPED / name}.json is a valid rubric v1")


# --------------------------------------------------------------------------- grading a CIFAR-10 submission


@dataclasses.dataclass(frozen=True)
class Graded:
    """One `grader grade --rubric cifar10_quick` run over the reference as a script and as a notebook, side by side."""

    out: Path
    cache: Path  # the Keras cache's cifar-10-batches-py/, where the grader found the held-out split
    stderr: str


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    base = tmp_path_factory.mktemp("cifar10")
    home = base / "home"
    cache = write_small_cifar10(home / ".keras" / "datasets" / "cifar-10-batches-py")
    subs, out = base / "submissions", base / "out"
    for student in ("script", "notebook"):
        (subs / student).mkdir(parents=True)
        shutil.copyfile(ROOT / "reference" / "tuning.py", subs / student / "tuning.py")
    shutil.copyfile(ROOT / "reference" / "assignment.ipynb", subs / "notebook" / "assignment.ipynb")
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", "cifar10_quick",
                           "--out", str(out), "--gpus", "none", "--jobs", "2"],
                          cwd=base, env=child_env(home), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Graded(out, cache, proc.stderr)


@pytest.mark.slow
def test_the_grader_takes_cifar10_from_the_keras_cache_and_hands_out_its_train_split(graded: Graded) -> None:
    assert (f"held-out data: cifar10 test split from CIFAR-10 python batches in {graded.cache} (Keras cache)"
            in graded.stderr)
    with np.load(graded.out / ".data" / "train" / "cifar10.npz") as train:
        assert sorted(train.files) == ["x_train", "y_train"] and train["x_train"].shape == (1000, 32, 32, 3)
    assert np.load(graded.out / ".data" / "test" / "cifar10-images.npy").shape == (TEST_SIZE, 32, 32, 3)


@pytest.mark.slow
@pytest.mark.parametrize("student", ["script", "notebook"])
def test_the_reference_is_graded_on_cifar10_end_to_end(graded: Graded, student: str) -> None:
    res = read_result(graded.out / student / "result.json")
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    # the submission was told cifar10 (it names no --dataset) and says so in what it wrote
    spaces = json.loads((graded.out / student / "collected" / "outputs" / "search_spaces.json").read_text())
    assert spaces["dataset"] == "cifar10"
    # its models were evaluated on the 200 held-out 32x32x3 images (an MNIST-shaped model would not predict on them)
    assert {e.search for e in res.evaluations} == {"grid", "random"}
    for ev in res.evaluations:
        assert (ev.error, ev.n_test) == (None, TEST_SIZE) and ev.test_accuracy >= 0.9
    failed = [f"{c.id}: {c.status} {c.message}" for c in res.checks if c.status != "pass"]
    assert failed == [] and (res.score.earned, res.score.possible) == (100, 100)


@pytest.mark.slow
def test_the_script_saw_GRADER_DATASET_and_trained_on_32x32x3_images(graded: Graded) -> None:
    log = (graded.out / "script" / "logs" / "stdout.log").read_text()
    train = graded.out / ".data" / "train" / "cifar10.npz"
    assert (f"data: 750 train / 250 validation cifar10 images of shape 32x32x3 from cifar10 train split from "
            f"{train} (data_dir)") in log


@pytest.mark.slow
def test_the_notebook_got_DATASET_injected_and_built_its_model_for_32x32x3(graded: Graded) -> None:
    nb = nbformat.read(graded.out / "notebook" / NOTEBOOK_COPY, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "DATASET = 'cifar10'" in injected.source.splitlines()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "data: 750 train / 250 validation cifar10 images of shape 32x32x3" in printed


@pytest.mark.slow
@pytest.mark.tf
def test_the_reference_is_graded_on_cifar10_on_the_tensorflow_backend_too(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow backend not installed (pip install -e .[tf])")
    home = tmp_path / "home"
    write_small_cifar10(home / ".keras" / "datasets" / "cifar-10-batches-py")
    (tmp_path / "subs" / "script").mkdir(parents=True)
    shutil.copyfile(ROOT / "reference" / "tuning.py", tmp_path / "subs" / "script" / "tuning.py")
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(tmp_path / "subs"), "--rubric",
                           "cifar10_quick", "--out", str(tmp_path / "out"), "--gpus", "none", "--backend", "tensorflow"],
                          cwd=tmp_path, env=child_env(home, "tensorflow"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_result(tmp_path / "out" / "script" / "result.json")
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    assert res.device is not None and "tensorflow" in res.device.frameworks
    assert all((e.error, e.n_test) == (None, TEST_SIZE) for e in res.evaluations)
    assert (res.score.earned, res.score.possible) == (100, 100), [c.message for c in res.checks if c.status != "pass"]
