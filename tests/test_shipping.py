"""Tests for grader.shipping: what a tree takes, and that landing one never leaves its folder or overwrites a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader.shipping import ShippingError, Tree, pack, pack_file, unpack


def test_pack_takes_regular_files_only_and_unpack_lands_them_in_a_fresh_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    (src / "logs" / "run.log").write_bytes(b"ran\n")
    (src / "result-notes.txt").write_text("kept")
    (src / "work").mkdir()
    (src / "work" / "model.keras").write_bytes(b"sandbox tree")
    (src / "link").symlink_to("/etc/passwd")
    (src / "logs" / "dir-link").symlink_to(src / "work")
    os.mkfifo(src / "fifo")
    tree = pack(src, skip={"work"})
    assert tree.files == (("logs/run.log", b"ran\n"), ("result-notes.txt", b"kept"))
    unpack(tree, tmp_path / "dest")
    assert sorted(str(p.relative_to(tmp_path / "dest")) for p in (tmp_path / "dest").rglob("*")) == [
        "logs", "logs/run.log", "result-notes.txt"]
    assert pack(tmp_path / "dest").digest() == tree.digest() != Tree((("logs/run.log", b"ran!"),)).digest()


@pytest.mark.parametrize("rel", ["../escape", "/etc/cron.d/x", "a/../../b", "a//b", "./a", "a/", "", "a\0b", "a\\b"])
def test_unpack_refuses_a_path_that_could_leave_its_folder(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ShippingError) as caught:
        unpack(Tree(((rel, b"x"),)), tmp_path / "dest")
    assert str(caught.value) == f"refused to land the path {rel!r}: not a plain relative path inside its folder"
    assert not (tmp_path / "escape").exists()


def test_unpack_never_writes_through_or_over_what_is_already_there(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "logs").symlink_to(outside)
    (dest / "result.json").write_text("{}")
    with pytest.raises(ShippingError, match="^cannot land 'logs/run.log': 'logs' is already there and is not a "
                                            "folder$"):
        unpack(Tree((("logs/run.log", b"x"),)), dest)
    with pytest.raises(ShippingError, match="^cannot land 'result.json': it is already there$"):
        unpack(Tree((("result.json", b"forged"),)), dest)
    assert list(outside.iterdir()) == [] and (dest / "result.json").read_text() == "{}"


def test_pack_refuses_a_tree_over_its_size_bound(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 2048)
    with pytest.raises(ShippingError) as caught:
        pack(tmp_path, max_bytes=1024)
    assert str(caught.value) == f"'{tmp_path}' holds more than 0.000976562 MiB: too much to ship"
    with pytest.raises(ShippingError):
        pack_file(tmp_path / "big.bin", max_bytes=1024)
    assert pack_file(tmp_path / "big.bin").files == (("big.bin", b"x" * 2048),)
