"""Tests for grader.harvest: the copy never follows a link, never opens anything but a regular file, stops at its limits."""

from __future__ import annotations

import os
import stat
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from grader.harvest import (
    HarvestedFile,
    HarvestLimits,
    Refusal,
    display_name,
    harvest,
    remove_tree,
)


def tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def timed_harvest(src: Path, dest: Path, seconds: float = 10.0, **kwargs):  # type: ignore[no-untyped-def]
    """harvest in a thread, failing the test (instead of hanging it) when it does not return in time."""
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=harvest(src, dest, **kwargs)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"harvest did not return within {seconds} s"
    return box["result"]


@pytest.fixture
def student(tmp_path: Path) -> Path:
    return tree(tmp_path / "alice" / "outputs", {
        "trials.jsonl": '{"a": 1}\n', "answers.yaml": "contract_version: 1\n",
        "plots/grid.png": b"\x89PNG\r\n\x1a\n", "models/best_grid.keras": b"PK\x05\x06" + b"\x00" * 18})


# ---------------------------------------------------------------------------------------------
# An ordinary tree


def test_regular_files_are_copied_with_grader_modes_and_listed_sorted(student: Path, tmp_path: Path) -> None:
    os.chmod(student / "trials.jsonl", 0o666)
    os.chmod(student / "plots", 0o777)
    result = harvest(student, tmp_path / "copy")
    assert result.problem is None and result.refused == ()
    assert result.files == (
        HarvestedFile("answers.yaml", 20), HarvestedFile("models/best_grid.keras", 22),
        HarvestedFile("plots/grid.png", 8), HarvestedFile("trials.jsonl", 9))
    assert result.root == tmp_path / "copy"
    assert (result.root / "trials.jsonl").read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(os.stat(result.root / "trials.jsonl").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(result.root / "plots").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(result.root).st_mode) == 0o700
    assert result.total_bytes == 59


def test_keep_skips_keras_tuner_checkpoints_without_a_refusal(tmp_path: Path) -> None:
    src = tree(tmp_path / "out", {
        "tuner/grid/oracle.json": "{}", "tuner/grid/trial_00/trial.json": "{}",
        "tuner/grid/trial_00/checkpoint.weights.h5": b"\x00" * 100, "tuner/grid/trial_00/build_config.json": "{}",
        "tuner/grid/trial_01/checkpoint/variables.data": b"\x00" * 100, "trials.jsonl": "{}\n"})

    def keep(rel: str) -> bool:
        if not rel.startswith("tuner/") or rel.endswith("/"):
            return not fnmatchcase(rel, "tuner/*/trial_*/checkpoint*/")
        return rel.endswith(("/trial.json", "/oracle.json"))

    result = harvest(src, tmp_path / "copy", keep=keep)
    assert [f.rel for f in result.files] == ["trials.jsonl", "tuner/grid/oracle.json", "tuner/grid/trial_00/trial.json"]
    assert result.refused == ()
    assert not (tmp_path / "copy" / "tuner" / "grid" / "trial_01" / "checkpoint").exists()


def test_dest_must_be_new_or_empty(student: Path, tmp_path: Path) -> None:
    (tmp_path / "copy").mkdir()
    assert harvest(student, tmp_path / "copy").problem is None
    with pytest.raises(FileExistsError):
        harvest(student, tmp_path / "copy")


# ---------------------------------------------------------------------------------------------
# Links are never followed


def test_a_symlink_at_src_copies_nothing(student: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(student)
    result = harvest(tmp_path / "link", tmp_path / "copy")
    assert (result.problem, result.files, result.refused) == ("is a symbolic link", (), ())
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("target", ["/etc", "/root"])
def test_an_output_dir_linked_to_a_system_folder_copies_nothing(tmp_path: Path, target: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "outputs").symlink_to(target)
    result = harvest(work / "outputs", tmp_path / "copy", within=work)
    assert (result.problem, result.files) == ("is a symbolic link", ())


def test_a_symlink_in_the_middle_of_src_is_refused_when_within_is_given(student: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "run").symlink_to(student.parent)
    assert harvest(work / "run" / "outputs", tmp_path / "copy", within=work).problem == "is a symbolic link"


def test_missing_src_and_a_file_at_src_say_so(tmp_path: Path) -> None:
    assert harvest(tmp_path / "nope", tmp_path / "a").problem == "does not exist"
    (tmp_path / "file").write_text("x")
    assert harvest(tmp_path / "file", tmp_path / "b").problem == "is not a folder"


def test_a_symlinked_folder_pointing_at_another_student_is_refused_and_not_copied(student: Path, tmp_path: Path) -> None:
    bob = tree(tmp_path / "bob" / "outputs", {"trials.jsonl": "bob's secret trials\n", "answers.yaml": "bob\n"})
    (student / "tuner").symlink_to(bob)
    (student / "answers_link.yaml").symlink_to(bob / "answers.yaml")
    result = harvest(student, tmp_path / "copy")
    assert Refusal("tuner", "is a symbolic link") in result.refused
    assert Refusal("answers_link.yaml", "is a symbolic link") in result.refused
    copied = [p.read_bytes() for p in (tmp_path / "copy").rglob("*") if p.is_file()]
    assert not any(b"bob" in data for data in copied)
    assert not (tmp_path / "copy" / "tuner").exists()


def test_a_symlink_to_dev_zero_is_refused_unread(student: Path, tmp_path: Path) -> None:
    (student / "trials.jsonl").unlink()
    (student / "trials.jsonl").symlink_to("/dev/zero")
    result = timed_harvest(student, tmp_path / "copy")
    assert Refusal("trials.jsonl", "is a symbolic link") in result.refused
    assert "trials.jsonl" not in [f.rel for f in result.files]


def test_a_hard_link_is_refused(student: Path, tmp_path: Path) -> None:
    os.link(student / "answers.yaml", student / "answers_again.yaml")
    result = harvest(student, tmp_path / "copy")
    assert Refusal("answers.yaml", "has more than one hard link") in result.refused
    assert Refusal("answers_again.yaml", "has more than one hard link") in result.refused


# ---------------------------------------------------------------------------------------------
# Nothing but regular files is opened


def test_a_fifo_is_refused_without_blocking(student: Path, tmp_path: Path) -> None:
    os.mkfifo(student / "trials.jsonl.fifo")
    os.mkfifo(student / "plots" / "hang.png")
    start = time.monotonic()
    result = timed_harvest(student, tmp_path / "copy", seconds=5)
    assert time.monotonic() - start < 5
    assert Refusal("trials.jsonl.fifo", "is a FIFO") in result.refused
    assert Refusal("plots/hang.png", "is a FIFO") in result.refused
    assert len(result.files) == 4


def test_a_socket_is_refused(student: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    path = student / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        monkeypatch.chdir(student)  # a socket path must be short: bind by relative name
        sock.bind("s.sock")
        result = harvest(student, tmp_path / "copy")
    assert path.exists()
    assert Refusal("s.sock", "is a socket") in result.refused


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_is_refused(student: Path, tmp_path: Path) -> None:
    os.mknod(student / "zero", 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    result = timed_harvest(student, tmp_path / "copy")
    assert Refusal("zero", "is a character device") in result.refused


# ---------------------------------------------------------------------------------------------
# Names


def test_a_name_that_is_not_utf8_is_refused_with_an_escaped_display(student: Path, tmp_path: Path) -> None:
    fd = os.open(os.fsencode(student) + b"/trials\xff.jsonl", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    result = harvest(student, tmp_path / "copy")
    assert Refusal("trials\\xff.jsonl", "has a name that is not valid UTF-8") in result.refused
    assert len(result.files) == 4


def test_a_latin1_folder_name_is_refused_and_not_walked(student: Path, tmp_path: Path) -> None:
    folder = os.fsencode(student) + b"/r\xe9sultats"
    os.mkdir(folder)
    with open(folder + b"/x.txt", "wb") as fh:
        fh.write(b"x")
    result = harvest(student, tmp_path / "copy")
    assert Refusal("r\\xe9sultats", "has a name that is not valid UTF-8") in result.refused
    assert [f.rel for f in result.files if "x.txt" in f.rel] == []


@pytest.mark.parametrize(("name", "display"), [
    ("\x1b[31mred.png", "\\x1b[31mred.png"),
    ("line\nbreak.txt", "line\\x0abreak.txt"),
    ("del\x7f.txt", "del\\x7f.txt"),
    ("c1\u0085.txt", "c1\\x85.txt"),
    ("evil\u202egnp.py", "evil\\u202egnp.py"),
    ("two\u2028lines.txt", "two\\u2028lines.txt"),
    ("zero\u200bwidth.txt", "zero\\u200bwidth.txt"),
])
def test_control_characters_in_a_name_are_refused_and_escaped(student: Path, tmp_path: Path, name: str,
                                                              display: str) -> None:
    (student / "plots" / name).write_bytes(b"x")
    result = harvest(student, tmp_path / "copy")
    assert Refusal(f"plots/{display}", "has a name with control or invisible characters") in result.refused
    assert len(result.files) == 4


def test_a_name_longer_than_the_limit_is_refused(student: Path, tmp_path: Path) -> None:
    (student / ("a" * 40)).write_bytes(b"x")
    result = harvest(student, tmp_path / "copy", limits=HarvestLimits(max_name_bytes=32))
    assert Refusal("a" * 40, "has a name longer than 32 bytes") in result.refused


def test_unicode_names_that_are_printable_are_copied(student: Path, tmp_path: Path) -> None:
    (student / "plots" / "résumé – ünïcode.png").write_bytes(b"x")
    result = harvest(student, tmp_path / "copy")
    assert "plots/résumé – ünïcode.png" in [f.rel for f in result.files]


def test_display_name_escapes_like_ascii_but_keeps_printable_text() -> None:
    assert display_name(b"a\\b\xff\x1b\xe2\x80\xae\xc3\xa9") == "a\\\\b\\xff\\x1b\\u202e\u00e9"


# ---------------------------------------------------------------------------------------------
# Limits


def test_a_1500_deep_tree_stops_at_max_depth_with_one_refusal_and_remove_tree_deletes_it(tmp_path: Path) -> None:
    src = tmp_path / "deep"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):  # relative to the previous folder: no path grows past PATH_MAX
        os.mkdir("d", dir_fd=fd)
        with open(os.open("f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fh:
            fh.write("x")
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    result = harvest(src, tmp_path / "copy")
    assert result.refused == (
        Refusal("/".join(["d"] * 33), "is more than 32 folders deep: no folder that deep was looked at"),)
    assert len(result.files) == 33  # f.txt at depth 0..32
    remove_tree(src)
    assert not src.exists()
    remove_tree(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_6000_files_stop_at_max_files_with_one_refusal_quickly(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(6000):
        (src / f"f{i:05d}.txt").write_bytes(b"x")
    start = time.monotonic()
    result = harvest(src, tmp_path / "copy")
    elapsed = time.monotonic() - start
    assert len(result.files) == 5000
    assert result.refused == (Refusal("f05000.txt", "is past the first 5000 files and folders: "
                                                    "it and the rest were not looked at"),)
    assert elapsed < 3.0, elapsed


def test_a_file_over_max_file_bytes_is_refused_not_truncated(student: Path, tmp_path: Path) -> None:
    (student / "big.bin").write_bytes(b"x" * 2000)
    result = harvest(student, tmp_path / "copy", limits=HarvestLimits(max_file_bytes=1024))
    assert Refusal("big.bin", "is larger than 1 KiB") in result.refused
    assert not (tmp_path / "copy" / "big.bin").exists()
    assert len(result.files) == 4


def test_the_total_cap_stops_copying_with_one_refusal(tmp_path: Path) -> None:
    src = tree(tmp_path / "out", {f"f{i}.bin": b"x" * 400 for i in range(5)})
    result = harvest(src, tmp_path / "copy", limits=HarvestLimits(max_total_bytes=1000))
    assert [f.rel for f in result.files] == ["f0.bin", "f1.bin"]
    assert result.refused == (Refusal("f2.bin", "would take the files copied past 1000 bytes: "
                                                "it and the rest were not copied"),)


def test_an_unreadable_folder_of_the_tree_is_a_refusal_not_an_exception(student: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_scandir = os.scandir

    def failing(fd):  # type: ignore[no-untyped-def]
        if isinstance(fd, int) and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "plots":
            raise PermissionError(13, "Permission denied")
        return real_scandir(fd)

    monkeypatch.setattr(os, "scandir", failing)
    result = harvest(student, tmp_path / "copy")
    assert Refusal("plots", "cannot be read: Permission denied") in result.refused
    assert len(result.files) == 3


# ---------------------------------------------------------------------------------------------
# remove_tree


def test_remove_tree_removes_odd_names_read_only_folders_and_never_follows_links(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", {"keep.txt": "keep"})
    root = tmp_path / "work"
    (root / "a" / "b").mkdir(parents=True)
    os.mkfifo(root / "a" / "fifo")
    with open(os.fsencode(root) + b"/a/b/\xff\x1bname", "wb") as fh:
        fh.write(b"x")
    (root / "a" / "link").symlink_to(outside)
    (root / "a" / "filelink").symlink_to(outside / "keep.txt")
    os.chmod(root / "a" / "b", 0o500)
    os.chmod(root / "a", 0o000)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "keep"


def test_remove_tree_on_a_link_removes_only_the_link(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", {"keep.txt": "keep"})
    (tmp_path / "link").symlink_to(outside)
    remove_tree(tmp_path / "link")
    assert not (tmp_path / "link").is_symlink()
    assert (outside / "keep.txt").exists()


def test_remove_tree_on_a_missing_path_is_a_no_op(tmp_path: Path) -> None:
    remove_tree(tmp_path / "never")
