"""Lets a tutorial-style notebook run in the sandbox as written: Keras' dataset loaders and KerasTuner, each patched lazily.

grader/gpu_site/sitecustomize.py calls ``install()`` in every sandboxed Python process. It imports
no framework: a meta path finder waits for the job itself to import one of the modules below and
patches it right after it has run, before anything can bind its names.

- ``keras.datasets.{mnist,fashion_mnist,cifar10}.load_data()`` (Keras 3, ``tf.keras`` and the
  ``tf_keras`` package alike, all of which re-export ``<keras>.src.datasets.<name>.load_data``)
  never reach the network: they read the grader's train split, ``$GRADER_DATA_DIR/<name>.npz``
  (x_train, y_train, as tunekit.data.write_train_split writes it), and return its first
  ``n - n // HELD_BACK`` images as the train pair and its last ``n // HELD_BACK`` as the "test"
  pair. The real test split is never in the sandbox, so it is never what a notebook evaluates on.
  Shapes and dtypes are Keras' own: (N, 28, 28) uint8 images, (N,) labels; CIFAR-10 (N, 32, 32, 3)
  images and (N, 1) labels. A dataset the grader did not hand out raises ValueError naming the one it did.
- KerasTuner's oracle state (oracle.json) gains ``"oracle_class"`` (``HyperbandOracle``,
  ``RandomSearchOracle``...), so grader.evidence can tell which search a project named
  ``intro_to_kt`` ran; and each time KerasTuner saves a trial's best epoch (weights only,
  ``checkpoint.weights.h5``, which cannot be loaded without the student's model code), the whole
  model is saved beside it as ``checkpoint.keras``, which the grader can evaluate when there is
  no ``models/best_<search>.keras``.

Each interception is recorded in ``<work>/.grader/fallbacks/<pid>.json`` (the folder beside the
device reports, ``$GRADER_DEVICE_REPORT_DIR/../fallbacks``), so the feedback can say what was used.
Nothing here may fail the student's program except a load_data() call that cannot be answered:
every other step is guarded.
"""

import json
import os
import sys

HELD_BACK = 6  # one image in six of the train split is held back as load_data()'s "test" pair (MNIST's 60k:10k)
MAX_NPZ_BYTES = 1 << 30  # the grader's train split, at most
MAX_CHECKPOINT_PARAMS = 64 * 2**20  # a model larger than this is not saved twice
RECORD_SUBDIR = "fallbacks"
DATASETS = ("mnist", "fashion_mnist", "cifar10")
KERAS_PACKAGES = ("keras", "tf_keras")
ORACLE_MODULE = "keras_tuner.src.engine.oracle"
TUNER_UTILS_MODULE = "keras_tuner.src.engine.tuner_utils"

_record = {"version": 1, "pid": os.getpid(), "datasets": {}, "checkpoints": 0, "problems": []}


def _watched():
    """Module name -> the patch applied right after that module has run."""
    out = {}
    for package in KERAS_PACKAGES:
        for name in DATASETS:
            out[f"{package}.src.datasets.{name}"] = _dataset_patch(name)
    out[ORACLE_MODULE] = _patch_oracle
    out[TUNER_UTILS_MODULE] = _patch_save_best_epoch
    return out


# ---------------------------------------------------------------- the record


def record_dir():
    """<work>/.grader/fallbacks, beside the device reports; None outside the grader's sandbox."""
    reports = os.environ.get("GRADER_DEVICE_REPORT_DIR")
    return os.path.join(os.path.dirname(reports.rstrip("/")), RECORD_SUBDIR) if reports else None


def _write_record():
    folder = record_dir()
    if folder is None:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(_record, fh)
        os.replace(path + ".tmp", path)
    except Exception:  # noqa: BLE001 - a record that cannot be written is only a missing feedback line
        pass


def _problem(text):
    if len(_record["problems"]) < 5:
        _record["problems"].append(str(text)[:300])
        _write_record()


# ---------------------------------------------------------------- keras.datasets


def load_train_split(name):
    """((x_train, y_train), (x_held, y_held)) from $GRADER_DATA_DIR/<name>.npz, in Keras' shapes."""
    import numpy as np

    data_dir = os.environ.get("GRADER_DATA_DIR", "")
    handed_out = os.environ.get("GRADER_DATASET", "mnist")
    path = os.path.join(data_dir, f"{name}.npz")
    if not os.path.isfile(path):
        raise ValueError(f"keras.datasets.{name}.load_data(): the grader hands out no {name} here (no network in "
                         f"the sandbox); this assignment's dataset is {handed_out}: load "
                         f"keras.datasets.{handed_out}.load_data() instead")
    if os.path.getsize(path) > MAX_NPZ_BYTES:
        raise ValueError(f"keras.datasets.{name}.load_data(): the grader's {name}.npz is too large to read")
    with np.load(path, allow_pickle=False) as archive:
        images, labels = archive["x_train"], archive["y_train"]
    n = len(labels)
    held = n // HELD_BACK
    if held < 1 or len(images) != n:
        raise ValueError(f"keras.datasets.{name}.load_data(): the grader's train split holds too few images ({n})")
    labels = labels.reshape(-1, 1) if name == "cifar10" else labels.reshape(-1)
    cut = n - held
    _record["datasets"][name] = {"train": int(cut), "held_back": int(held)}
    _write_record()
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def _dataset_patch(name):
    def patch(module):
        original = getattr(module, "load_data", None)

        def load_data(*args, **kwargs):
            """The grader's train split, with a held-back part as the "test" pair (grader/gpu_site/grader_fallbacks.py)."""
            return load_train_split(name)

        load_data.__wrapped__ = original
        module.load_data = load_data

    return patch


# ---------------------------------------------------------------- KerasTuner


def _patch_oracle(module):
    cls = module.Oracle
    original = cls.get_state

    def get_state(self):
        state = original(self)
        try:
            state["oracle_class"] = type(self).__name__
        except Exception:  # noqa: BLE001
            pass
        return state

    cls.get_state = get_state


def _patch_save_best_epoch(module):
    cls = module.SaveBestEpoch
    original = cls._save_model

    def _save_model(self):
        original(self)
        try:
            if self.model.count_params() <= MAX_CHECKPOINT_PARAMS:
                self.model.save(os.path.join(os.path.dirname(self.filepath), "checkpoint.keras"))
                _record["checkpoints"] += 1
                _write_record()
        except Exception as exc:  # noqa: BLE001 - the search goes on; the grader then evaluates no checkpoint
            _problem(f"checkpoint.keras not saved: {type(exc).__name__}: {exc}")

    cls._save_model = _save_model


# ---------------------------------------------------------------- the import hook


def install():
    """Watch the modules above, inside the grader's sandbox only (GRADER_DATA_DIR and the device report dir set)."""
    if not os.environ.get("GRADER_DATA_DIR") or record_dir() is None:
        return
    from grader_patch import PatchOnImport

    if not any(isinstance(f, PatchOnImport) and f.on_error is _not_patched for f in sys.meta_path):
        sys.meta_path.insert(0, PatchOnImport(_watched(), _not_patched))


def _not_patched(name, exc):
    _problem(f"{name} not patched: {type(exc).__name__}: {exc}")
