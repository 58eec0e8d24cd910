"""A tutorial-style KerasTuner notebook is graded as written: keras.datasets answered, tuner folder and checkpoint found.

The fixture (tests/fixtures/notebooks/tutorial_kerastuner.ipynb) follows the public tutorials:
``keras.datasets.mnist.load_data()``, a model builder, ``kt.Hyperband(directory="my_dir",
project_name="intro_to_kt")`` and ``tuner.get_best_models()``; it writes nothing the contract names.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import ROOT, child_env
from grader.evidence import find_tuner_projects, gather, search_of_project
from grader.result import read_result
from grader.session import Layout
from grader.text import markdown_text
from grader.runner import (
    TF_MISSING,
    _work_tuner_kept,
    collect_datasets,
    imports_tensorflow,
    submission_backend,
    tensorflow_installed,
)

SITE = ROOT / "grader" / "gpu_site"
FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "tutorial_kerastuner.ipynb"
KT_RANDOM = ROOT / "tests" / "fixtures" / "outputs" / "keras_tuner_only" / "tuner" / "random"


def _hook_module():
    spec = importlib.util.spec_from_file_location("grader_fallbacks_under_test", SITE / "grader_fallbacks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_split(folder: Path, name: str, n: int, shape: tuple[int, ...]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.arange(n * int(np.prod(shape)), dtype=np.uint32).astype(np.uint8).reshape((n, *shape))
    np.savez(folder / f"{name}.npz", x_train=images, y_train=(np.arange(n) % 10).astype(np.uint8))
    return folder


# --------------------------------------------------------------------------- the sandbox's keras.datasets hook


def test_load_data_gives_the_train_split_less_a_sixth_held_back_as_its_test_pair(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = _train_split(tmp_path / "data", "mnist", 60, (28, 28))
    monkeypatch.setenv("GRADER_DATA_DIR", str(data))
    monkeypatch.setenv("GRADER_DEVICE_REPORT_DIR", str(tmp_path / "work" / ".grader" / "device"))
    hook = _hook_module()
    (x, y), (x_held, y_held) = hook.load_train_split("mnist")
    assert (x.shape, y.shape, x_held.shape, y_held.shape) == ((50, 28, 28), (50,), (10, 28, 28), (10,))
    with np.load(data / "mnist.npz") as split:  # the "test" pair is the train split's tail, never other images
        assert np.array_equal(x_held, split["x_train"][50:]) and np.array_equal(y_held, split["y_train"][50:])
    record = json.loads(next((tmp_path / "work" / ".grader" / "fallbacks").glob("*.json")).read_text())
    assert record["datasets"] == {"mnist": {"train": 50, "held_back": 10}}


def test_cifar10_labels_come_back_as_a_column_like_keras_gives_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_DATA_DIR", str(_train_split(tmp_path / "data", "cifar10", 12, (32, 32, 3))))
    monkeypatch.setenv("GRADER_DEVICE_REPORT_DIR", str(tmp_path / ".grader" / "device"))
    (x, y), (x_held, y_held) = _hook_module().load_train_split("cifar10")
    assert (x.shape, y.shape, x_held.shape, y_held.shape) == ((10, 32, 32, 3), (10, 1), (2, 32, 32, 3), (2, 1))


def test_a_dataset_the_grader_did_not_hand_out_is_refused_naming_the_one_it_did(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_DATA_DIR", str(_train_split(tmp_path / "data", "mnist", 12, (28, 28))))
    monkeypatch.setenv("GRADER_DATASET", "mnist")
    with pytest.raises(ValueError) as caught:
        _hook_module().load_train_split("cifar10")
    assert str(caught.value) == ("keras.datasets.cifar10.load_data(): the grader hands out no cifar10 here (no network "
                                 "in the sandbox); this assignment's dataset is mnist: load "
                                 "keras.datasets.mnist.load_data() instead")


def test_keras_load_data_in_a_sandboxed_python_is_answered_by_the_hook_without_the_network(tmp_path: Path) -> None:
    data = _train_split(tmp_path / "data", "mnist", 60, (28, 28))
    env = child_env(tmp_path / "home", PYTHONPATH=str(SITE), GRADER_DATA_DIR=str(data),
                    GRADER_DEVICE_REPORT_DIR=str(tmp_path / ".grader" / "device"))
    code = ("import keras\n(x, y), (a, b) = keras.datasets.mnist.load_data()\n"
            "print(x.shape, y.shape, a.shape, b.shape, keras.datasets.mnist.load_data.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "(50, 28, 28) (50,) (10, 28, 28) (10,) grader_fallbacks"
    assert not (tmp_path / "home" / ".keras" / "datasets").exists()  # nothing was downloaded


# --------------------------------------------------------------------------- KerasTuner folders anywhere


def _tutorial_project(work_copy: Path, oracle_class: str | None) -> Path:
    project = work_copy / "my_dir" / "intro_to_kt"
    shutil.copytree(KT_RANDOM, project)
    if oracle_class is not None:
        oracle = json.loads((project / "oracle.json").read_text())
        (project / "oracle.json").write_text(json.dumps({**oracle, "oracle_class": oracle_class}))
    return project


@pytest.mark.parametrize("oracle_class, search", [("HyperbandOracle", "random"), ("RandomSearchOracle", "random"),
                                                  ("GridSearchOracle", "grid"),
                                                  ("BayesianOptimizationOracle", "bayesian")])
def test_a_project_named_like_a_tutorial_is_read_as_the_search_its_oracle_class_says(oracle_class: str,
                                                                                      search: str) -> None:
    assert search_of_project(Path("my_dir/intro_to_kt"), {"oracle_class": oracle_class}) == search


def test_hyperband_is_random_search_even_without_the_recorded_class() -> None:
    assert search_of_project(Path("my_dir/intro_to_kt"), {"hyperband_iterations": 1, "max_epochs": 2}) == "random"
    assert search_of_project(Path("my_dir/intro_to_kt"), {}) is None


def test_a_tuner_folder_in_the_work_dir_is_found_with_its_best_trial(tmp_path: Path) -> None:
    _tutorial_project(tmp_path / "work", "HyperbandOracle")
    (tmp_path / "outputs").mkdir()
    projects = find_tuner_projects(tmp_path / "outputs", tmp_path / "work")
    assert list(projects) == ["random"]
    found = projects["random"]
    assert (found.origin, found.folder, found.oracle) == ("work", "my_dir/intro_to_kt", "HyperbandOracle")
    ev = gather(tmp_path / "outputs", work_projects=tmp_path / "work")
    best = ev.best_of("random")
    assert ev.trials_source == "tuner" and found.best_trial == best.file.rsplit("/", 1)[0]
    assert best.file.startswith("my_dir/intro_to_kt/trial_")
    assert ev.tuner_projects == projects


def test_a_project_in_the_output_dir_wins_over_one_of_the_same_search_elsewhere(tmp_path: Path) -> None:
    _tutorial_project(tmp_path / "work", "RandomSearchOracle")
    shutil.copytree(KT_RANDOM, tmp_path / "outputs" / "tuner" / "random")
    projects = find_tuner_projects(tmp_path / "outputs", tmp_path / "work")
    assert (projects["random"].origin, projects["random"].folder) == ("output", "tuner/random")


def test_only_tuner_json_files_are_copied_from_the_work_dir_never_its_other_folders() -> None:
    assert _work_tuner_kept("my_dir/") and _work_tuner_kept("my_dir/intro_to_kt/trial_0003/")
    assert _work_tuner_kept("my_dir/intro_to_kt/oracle.json")
    assert _work_tuner_kept("my_dir/intro_to_kt/trial_0003/trial.json")
    assert not _work_tuner_kept("my_dir/intro_to_kt/trial_0003/checkpoint.weights.h5")
    assert not _work_tuner_kept("my_dir/intro_to_kt/trial_0003/checkpoint.keras")  # only the best one, on its own
    for folder in ("outputs/", ".grader/", ".home/", "my_dir/.ipynb_checkpoints/", "__pycache__/"):
        assert not _work_tuner_kept(folder), folder


# --------------------------------------------------------------------------- the backend a submission asks for


def _notebook(path: Path, *sources: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def test_a_notebook_importing_tensorflow_is_told_apart_from_one_that_only_mentions_it(tmp_path: Path) -> None:
    assert imports_tensorflow(_notebook(tmp_path / "a.ipynb", "import numpy as np\nimport tensorflow as tf"))
    assert imports_tensorflow(_notebook(tmp_path / "b.ipynb", "from tensorflow import keras"))
    assert not imports_tensorflow(_notebook(tmp_path / "c.ipynb", "# no tensorflow here\nprint('import tensorflow')"))
    assert not imports_tensorflow(FIXTURE)
    (tmp_path / "tune.py").write_text("import keras\nimport tensorflow.keras as tfk\n")
    assert imports_tensorflow(tmp_path / "tune.py")


def test_a_submission_importing_tensorflow_runs_on_tensorflow_or_is_told_how_to_install_it(tmp_path: Path) -> None:
    entry = _notebook(tmp_path / "a.ipynb", "import tensorflow as tf")
    choice = submission_backend(entry, "torch")
    if tensorflow_installed():
        assert (choice.backend, choice.problem) == ("tensorflow", None)
        assert choice.note == ("Ran on the TensorFlow backend instead of torch: your code imports tensorflow "
                               "(KERAS_BACKEND=tensorflow for this submission).")
    else:
        assert (choice.backend, choice.note, choice.problem) == ("torch", None, TF_MISSING)
    assert TF_MISSING == ("the submission imports tensorflow, which is not installed on the grading machine: "
                          "pip install 'cnn-tuning-grader[tf]'")
    assert submission_backend(FIXTURE, "torch").backend == "torch"


# --------------------------------------------------------------------------- the whole notebook, graded as written


@dataclasses.dataclass(frozen=True)
class Graded:
    student: Path
    stderr: str


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    base = tmp_path_factory.mktemp("tutorial")
    (base / "subs").mkdir()
    shutil.copyfile(FIXTURE, base / "subs" / "tutorial.ipynb")
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(base / "subs"), "--rubric", "quick",
                           "--out", str(base / "out"), "--gpus", "none", "--jobs", "1"],
                          cwd=base, env=child_env(base / "home"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Graded(base / "out" / "tutorial", proc.stderr)


TUTORIAL_NOTES = [
    "keras.datasets.mnist.load_data() was answered by the grader (there is no network): 50000 images of its train "
    "split to train on and 10000 more held back from it as the \"test\" pair; the real test split stays with the "
    "grader. The contract: read the train split from GRADER_DATA_DIR (tunekit.data).",
    "The random search's trials were read from the KerasTuner folder my_dir/intro_to_kt (HyperbandOracle, graded "
    "as the random search), found outside your output folder: the contract asks for trials.jsonl in it.",
]


@pytest.mark.slow
def test_the_tutorial_notebook_is_graded_as_written_with_its_hyperband_as_random_search(graded: Graded) -> None:
    res = read_result(graded.student / "result.json")
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    points = {c.id: (c.points, c.status) for c in res.checks}
    assert points["random-coverage"] == (5, "partial")  # 4 distinct Hyperband trials of the 8 asked for
    assert points["accuracy-random"] == (8, "pass")  # its best trial's checkpoint, evaluated by the grader
    assert points["runtime"] == (4, "pass")
    assert (res.score.earned, res.score.possible) == (17, 100)
    grid, random = res.evaluations
    assert (grid.path, grid.test_accuracy, grid.error) == ("models/best_grid.keras", None,
                                                           "models/best_grid.keras was not written")
    assert random.path.startswith("my_dir/intro_to_kt/trial_") and random.path.endswith("/checkpoint.keras")
    assert random.error is None and random.n_test == 10000 and random.test_accuracy >= 0.88


@pytest.mark.slow
def test_the_feedback_says_which_fallbacks_graded_it(graded: Graded) -> None:
    res = read_result(graded.student / "result.json")
    random = res.evaluations[1]
    notes = TUTORIAL_NOTES + [f"The random search's model was evaluated from {random.path}, its best trial's "
                              f"checkpoint: the contract asks you to save it as models/best_random.keras."]
    assert list(read_result(graded.student / "result.json").fallbacks) == notes
    md = (graded.student / "feedback.md").read_text()
    assert ("**How your submission was read: it did not follow the submission contract here, and the grader found "
            "its way anyway.**\n\n" + "".join(f"- {markdown_text(n)}\n" for n in notes)) in md
    assert f"- {markdown_text(f'random: {random.test_accuracy:.2%} on 10000 test images ({random.path})')}" in md
    assert "Trials read from the KerasTuner project folder (there is no usable trials.jsonl)." in md


def test_the_hooks_records_are_read_bounded_and_only_plausible_counts_are_believed(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "student")
    records = layout.notebook_files / "fallbacks"
    records.mkdir(parents=True)
    (records / "1.json").write_text(json.dumps({"datasets": {"mnist": {"train": 50000, "held_back": 10000}}}))
    (records / "2.json").write_text('{"datasets": {"cifar10": {"train": ' + "9" * 5000 + ', "held_back": 1}}}')
    (records / "3.json").write_text(json.dumps({"datasets": {"fashion_mnist": {"train": -5, "held_back": True},
                                                             "svhn\u001b[31m": {"train": 1, "held_back": 1}}}))
    (records / "4.json").write_bytes(b'{"datasets": {"cifar10": {"train": 7, "held_back": 1}}}' + b" " * (70 * 1024))
    (records / "5.json").symlink_to(records / "1.json")
    os.mkfifo(records / "6.json")
    (records / "\udcff.json".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")).write_text(
        json.dumps({"datasets": {"cifar10": {"train": 3, "held_back": 3}}}))
    assert collect_datasets(layout) == {"mnist": (50000, 10000)}


@pytest.mark.slow
@pytest.mark.tf
def test_the_tutorial_written_with_tf_keras_is_graded_as_written_on_the_tensorflow_backend(tmp_path: Path) -> None:
    if not tensorflow_installed():
        pytest.skip("TensorFlow backend not installed (pip install -e .[tf])")
    notebook = nbformat.read(FIXTURE, as_version=4)
    for cell in notebook.cells:  # the course's tutorials import Keras through TensorFlow
        cell.source = cell.source.replace("import keras\n", "import tensorflow as tf\nfrom tensorflow import keras\n")
    assert imports_tensorflow(_write(notebook, tmp_path / "subs" / "tutorial.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(tmp_path / "subs"), "--rubric", "quick",
                           "--out", str(tmp_path / "out"), "--gpus", "none"],
                          cwd=tmp_path, env=child_env(tmp_path / "home"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_result(tmp_path / "out" / "tutorial" / "result.json")
    assert (res.status, res.message) == ("completed", "ran to the end"), res.message
    assert res.device is not None and "tensorflow" in res.device.frameworks
    assert res.fallbacks[0] == ("Ran on the TensorFlow backend instead of torch: your code imports tensorflow "
                                "(KERAS_BACKEND=tensorflow for this submission).")
    assert list(res.fallbacks[1:3]) == TUTORIAL_NOTES
    random = res.evaluations[1]
    assert random.path.endswith("/checkpoint.keras") and random.error is None and random.test_accuracy >= 0.88
    assert res.score.earned >= 17


def _write(notebook: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, path)
    return path
