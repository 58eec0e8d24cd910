"""Moves file trees between the grader and its remote workers as plain data: regular files only, bounded, no link followed.

A `Tree` is what travels (through Ray's object store): each regular file's path relative to
the tree's root and its bytes. `pack` reads a tree the grader wrote itself (a staged
submission, the train split, a job's collected files and logs) without following any link
and leaves everything that is not a regular file or a folder behind; `unpack` writes one
into an empty folder, refusing any path that could leave it, and creating every file and
folder anew (O_EXCL, O_NOFOLLOW), so nothing already there is written through.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import AbstractSet

from grader.errors import GraderError

MAX_TREE_BYTES = 2 * 2**30  # what one tree may hold: more than any staged submission or job's results may
MAX_TREE_FILES = 20_000
_NAME_BYTES = 255


class ShippingError(GraderError, ValueError):
    """A tree that cannot travel (too big) or cannot land (a path that would leave its folder); one line."""


@dataclass(frozen=True)
class Tree:
    """Regular files as (path relative to the root, in POSIX form; bytes), in a stable order."""

    files: tuple[tuple[str, bytes], ...]

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)

    def digest(self) -> str:
        """sha256 over every path and its bytes: two trees with the same digest land the same files."""
        h = hashlib.sha256()
        for rel, data in self.files:
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + len(data).to_bytes(8, "big"))
            h.update(data)
        return h.hexdigest()


def pack(root: Path, *, skip: AbstractSet[str] = frozenset(), max_bytes: int = MAX_TREE_BYTES) -> Tree:
    """Every regular file under root (a folder, or one file), never following a link; top-level names in skip are left.

    Links, FIFOs, sockets and devices are left behind. ShippingError when the tree holds more than
    max_bytes or MAX_TREE_FILES files.
    """
    files: list[tuple[str, bytes]] = []
    total = 0
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = f"{prefix}{entry.name}"
                if not prefix and entry.name in skip:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    data = _read_regular(Path(entry.path), max_bytes - total)
                    if data is None:
                        raise ShippingError(f"'{root}' holds more than {_mib(max_bytes)}: too much to ship")
                    total += len(data)
                    files.append((rel, data))
                    if len(files) > MAX_TREE_FILES:
                        raise ShippingError(f"'{root}' holds more than {MAX_TREE_FILES} files: too many to ship")
    return Tree(tuple(sorted(files)))


def pack_file(path: Path, *, max_bytes: int = MAX_TREE_BYTES) -> Tree:
    """One regular file as a tree holding it under its own name."""
    data = _read_regular(path, max_bytes)
    if data is None:
        raise ShippingError(f"'{path}' is larger than {_mib(max_bytes)}: too much to ship")
    return Tree(((path.name, data),))


def unpack(tree: Tree, dest: Path) -> None:
    """Write tree's files under dest (created if missing), each a new file; ShippingError for a path that would leave
    dest or that is already there, so a tree can only add files, never replace or write through one."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in tree.files:
        parts = _parts(rel)
        folder = dest
        for part in parts[:-1]:
            folder = folder / part
            try:
                folder.mkdir(mode=0o755)
            except FileExistsError:
                if not stat.S_ISDIR(folder.lstat().st_mode):
                    raise ShippingError(f"cannot land '{rel}': '{part}' is already there and is not a folder") from None
        try:
            fd = os.open(folder / parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            raise ShippingError(f"cannot land '{rel}': it is already there") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def _parts(rel: str) -> tuple[str, ...]:
    """rel's names, when it is a plain relative path that stays inside its folder; else ShippingError."""
    path = PurePosixPath(rel)
    parts = path.parts
    bad = (not parts or path.is_absolute() or "\0" in rel or "\\" in rel
           or any(p in (".", "..") or len(os.fsencode(p)) > _NAME_BYTES for p in parts)
           or "/".join(parts) != rel)
    if bad:
        raise ShippingError(f"refused to land the path {rel!r}: not a plain relative path inside its folder")
    return parts


def _read_regular(path: Path, budget: int) -> bytes | None:
    """path's bytes (None when there are more than budget), opened without following a link, and only if it is a
    regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ShippingError(f"'{path}' is not a regular file")
        data = fh.read(max(0, budget) + 1)
    return None if len(data) > budget else data


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"
