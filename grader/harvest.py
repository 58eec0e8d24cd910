"""Copy what the grader reads out of a sandbox's tree without following any link.

After a sandboxed run, the tree the submission wrote (its output dir) is untrusted: any
entry may be a symbolic link (to another student's folder, to /etc, to /dev/zero), a
FIFO that blocks a reader forever, a device, a name that is not UTF-8 or that carries
terminal escapes, a tree 1500 folders deep, or a million files. `harvest` is the one
reader of that tree: it copies the regular files the grader may read into a fresh
folder the grader owns (folders 0700, files 0600: no sandboxed run, all of which share
one uid, can read another's copy), and everything after it (evidence, feedback,
exports) reads the copy.

The walk is iterative and works on directory file descriptors: every folder and file is
opened relative to its parent's descriptor with O_NOFOLLOW (folders with O_DIRECTORY,
files with O_NONBLOCK|O_NOCTTY), and the opened descriptor must be the entry that was
looked at (same st_dev and st_ino as the lstat) and of the expected kind. So no symbolic
link is followed at any component, src included, and nothing but a regular file is
ever read. Limits (`HarvestLimits`) bound the entries looked at, the depth walked, each
file's size and the total copied; each limit reached is one `Refusal` line. Every other
entry that is not copied is a `Refusal` naming it (an escaped display form, never the
raw bytes) and saying why in a phrase that reads after "it" ("is a symbolic link", "has
a name that is not valid UTF-8", "is larger than 256 MiB"; fixed ones are `REASON_*`).
Nothing in the tree makes `harvest` raise.

`remove_tree` deletes such a tree (the re-run cleanup) the same way: iteratively, at any
depth, whatever the names, never following a link, making folders writable as needed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from grader.text import BIDI, display_name

REASON_SYMLINK = "is a symbolic link"
REASON_FIFO = "is a FIFO"
REASON_SOCKET = "is a socket"
REASON_CHAR_DEVICE = "is a character device"
REASON_BLOCK_DEVICE = "is a block device"
REASON_OTHER = "is not a regular file or folder"
REASON_NOT_UTF8 = "has a name that is not valid UTF-8"
REASON_CONTROL = "has a name with control or invisible characters"
REASON_HARD_LINK = "has more than one hard link"
REASON_CHANGED = "changed while it was being copied"

PROBLEM_MISSING = "does not exist"
PROBLEM_NOT_DIR = "is not a folder"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20
LISTED_PER_FILE = 20  # a folder's names read before sorting: at most this many times max_files
_DISPLAY_CHARS = 200


@dataclass(frozen=True)
class HarvestLimits:
    """How much of a tree harvest looks at: entries (files and folders), depth, bytes per file and in all, name length."""

    max_files: int = 5000
    max_depth: int = 32
    max_file_bytes: int = 256 * 2**20
    max_total_bytes: int = 2**30
    max_name_bytes: int = 255


@dataclass(frozen=True)
class HarvestedFile:
    """One copied file: its path relative to the harvest's root (POSIX, valid UTF-8, no control characters), its size."""

    rel: str
    bytes: int


@dataclass(frozen=True)
class Refusal:
    """One entry that was not copied: its path escaped for display (\\xff, \\x1b, \\u202e), and why (one line)."""

    display: str
    reason: str

    def __str__(self) -> str:
        return f"{self.display}: {self.reason}"


@dataclass(frozen=True)
class Harvest:
    """What harvest copied into root (files sorted by rel), what it refused (in walk order), and problem.

    problem is None when src could be read; otherwise why not (`PROBLEM_MISSING`,
    `PROBLEM_NOT_DIR`, `REASON_SYMLINK`, 'cannot be read: ...'), and nothing was copied.
    """

    root: Path
    files: tuple[HarvestedFile, ...]
    refused: tuple[Refusal, ...]
    problem: str | None = None
    stopped: bool = False  # a count or size limit ended the walk: entries after the last refusal were not looked at

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


# ---------------------------------------------------------------------------------------------
# harvest


def harvest(src: Path, dest: Path, *, limits: HarvestLimits = HarvestLimits(),
            keep: Callable[[str], bool] | None = None, within: Path | None = None) -> Harvest:
    """Copy the regular files of the tree at src into dest (created here, or an empty folder), never following a link.

    keep(rel) is asked about each file ('a/b.txt') and each folder ('a/b/', with a
    trailing slash) by its POSIX path relative to src; False skips it (a folder: not
    walked) without a refusal, e.g. KerasTuner checkpoints under tuner/. Entries are
    walked in name order, and every entry looked at counts towards limits.max_files.
    within, when given, is a trusted folder that src lies in: each component of src
    below it is opened without following links too (by default only src's last is).
    Raises only for dest (FileExistsError when it is a non-empty folder or not a folder).
    """
    src, dest = Path(src), Path(dest)
    walker = _Walker(limits, keep)
    src_fd, problem = _open_src(src, within)
    if src_fd is None:
        return Harvest(root=dest, files=(), refused=(), problem=problem)
    try:
        dest_fd = _make_dest(dest)
        try:
            walker.walk(src_fd, dest_fd)
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)
    return Harvest(root=dest, files=tuple(sorted(walker.files, key=lambda f: f.rel)), refused=tuple(walker.refused),
                   stopped=walker.stopped)


def _open_src(src: Path, within: Path | None) -> tuple[int | None, str | None]:
    """A descriptor of the folder src, opened without following links, or None and why not."""
    if within is None:
        anchor, parts = src.parent, [src.name]
    else:
        anchor, parts = Path(within), list(src.relative_to(within).parts)
    if any(part in (".", "..") for part in parts):
        return None, "cannot be read: its path goes through '..'"
    try:
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return None, _open_problem(exc)
    for part in parts:
        try:
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return None, REASON_SYMLINK
            if not stat.S_ISDIR(st.st_mode):
                return None, PROBLEM_NOT_DIR
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            return None, _open_problem(exc)
        finally:
            os.close(fd)
        fd = child
        if not _same(os.fstat(fd), st):
            os.close(fd)
            return None, REASON_CHANGED
    return fd, None


def _open_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return REASON_SYMLINK
    if exc.errno == errno.ENOENT:
        return PROBLEM_MISSING
    if exc.errno == errno.ENOTDIR:
        return PROBLEM_NOT_DIR
    return f"cannot be read: {exc.strerror or exc}"


def _make_dest(dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.mkdir(mode=0o700)
    except FileExistsError:
        if dest.is_symlink() or not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(errno.EEXIST, "harvest needs a new or empty folder", str(dest)) from None
    os.chmod(dest, 0o700)
    return os.open(dest, _DIR_FLAGS)


@dataclass
class _Frame:
    """One folder being walked: its descriptors (source and copy), its path, its depth and the names left."""

    src_fd: int
    dest_fd: int
    rel: str  # '' for the root, else 'a/b'
    depth: int
    names: Iterator[str]


class _Walker:
    def __init__(self, limits: HarvestLimits, keep: Callable[[str], bool] | None) -> None:
        self.limits = limits
        self.keep = keep
        self.files: list[HarvestedFile] = []
        self.refused: list[Refusal] = []
        self.seen = 0
        self.total = 0
        self.stopped = False  # max_files or max_total_bytes reached: nothing more is looked at
        self.too_deep_said = False

    def walk(self, src_fd: int, dest_fd: int) -> None:
        stack = [_Frame(src_fd, dest_fd, "", 0, iter(self._names(src_fd, "")))]
        try:
            while stack and not self.stopped:
                frame = stack[-1]
                name = next(frame.names, None)
                if name is None:
                    stack.pop()
                    if frame.depth:
                        os.close(frame.src_fd)
                        os.close(frame.dest_fd)
                    continue
                child = self._entry(frame, name)
                if child is not None:
                    stack.append(child)
        finally:
            for frame in stack:
                if frame.depth:
                    os.close(frame.src_fd)
                    os.close(frame.dest_fd)

    def _names(self, fd: int, rel: str) -> list[str]:
        """The names in a folder, sorted, so the files kept under max_files do not depend on the folder's order.

        A folder is listed only up to LISTED_PER_FILE * max_files names (a bound on the
        listing's cost); only a folder larger than that is cut in the file system's order.
        """
        room = LISTED_PER_FILE * self.limits.max_files + 1
        names: list[str] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    names.append(entry.name)
                    if len(names) >= room:
                        break
        except OSError as exc:
            self._refuse(_display(rel) or ".", f"cannot be read: {exc.strerror or exc}")
        return sorted(names)

    def _entry(self, frame: _Frame, name: str) -> _Frame | None:
        raw = os.fsencode(name)
        display = _join_display(frame.rel, raw)
        self.seen += 1
        if self.seen > self.limits.max_files:
            self._refuse(display, f"is past the first {self.limits.max_files} files and folders: "
                                  "it and the rest were not looked at")
            self.stopped = True
            return None
        why = _name_problem(raw, self.limits.max_name_bytes)
        if why:
            self._refuse(display, why)
            return None
        rel = f"{frame.rel}/{name}" if frame.rel else name
        try:
            st = os.stat(name, dir_fd=frame.src_fd, follow_symlinks=False)
        except OSError as exc:
            self._refuse(display, f"cannot be read: {exc.strerror or exc}")
            return None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return self._folder(frame, name, rel, display, st)
        if stat.S_ISREG(mode):
            if self.keep is None or self.keep(rel):
                self._file(frame, name, rel, display, st)
            return None
        self._refuse(display, _kind_reason(mode))
        return None

    def _folder(self, frame: _Frame, name: str, rel: str, display: str, st: os.stat_result) -> _Frame | None:
        if self.keep is not None and not self.keep(rel + "/"):
            return None
        depth = frame.depth + 1
        if depth > self.limits.max_depth:
            if not self.too_deep_said:
                self._refuse(display, f"is more than {self.limits.max_depth} folders deep: "
                                      "no folder that deep was looked at")
                self.too_deep_said = True
            return None
        try:
            src_fd = os.open(name, _DIR_FLAGS, dir_fd=frame.src_fd)
        except OSError as exc:
            self._refuse(display, REASON_SYMLINK if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror or exc}")
            return None
        try:
            if not _same(os.fstat(src_fd), st):
                self._refuse(display, REASON_CHANGED)
                os.close(src_fd)
                return None
            os.mkdir(name, 0o700, dir_fd=frame.dest_fd)
            dest_fd = os.open(name, _DIR_FLAGS, dir_fd=frame.dest_fd)
            os.chmod(dest_fd, 0o700)
        except OSError as exc:
            os.close(src_fd)
            self._refuse(display, f"cannot be copied: {exc.strerror or exc}")
            return None
        return _Frame(src_fd, dest_fd, rel, depth, iter(self._names(src_fd, rel)))

    def _file(self, frame: _Frame, name: str, rel: str, display: str, st: os.stat_result) -> None:
        limit = self.limits.max_file_bytes
        if st.st_size > limit:
            self._refuse(display, f"is larger than {_size(limit)}")
            return
        if st.st_nlink > 1:
            self._refuse(display, REASON_HARD_LINK)
            return
        if self.total + st.st_size > self.limits.max_total_bytes:
            self._stop_total(display)
            return
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=frame.src_fd)
        except OSError as exc:
            self._refuse(display, REASON_SYMLINK if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror or exc}")
            return
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode) or not _same(opened, st):
                self._refuse(display, REASON_CHANGED)
                return
            copied, why = self._copy(fd, frame.dest_fd, name, min(limit, self.limits.max_total_bytes - self.total))
        finally:
            os.close(fd)
        if why is not None:
            if why == "total":
                self._stop_total(display)
            else:
                self._refuse(display, why)
            return
        self.total += copied
        self.files.append(HarvestedFile(rel, copied))

    def _copy(self, fd: int, dest_dir: int, name: str, room: int) -> tuple[int, str | None]:
        """Copy fd into dest_dir/name, at most room bytes; (bytes copied, None) or (0, why) with no copy left behind."""
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dest_dir)
        except OSError as exc:
            return 0, f"cannot be copied: {exc.strerror or exc}"
        copied, why = 0, None
        try:
            os.fchmod(out, 0o600)
            while True:
                try:
                    chunk = os.read(fd, min(_CHUNK, room + 1 - copied))
                except BlockingIOError:
                    why = REASON_CHANGED
                    break
                except OSError as exc:
                    why = f"cannot be read: {exc.strerror or exc}"
                    break
                if not chunk:
                    break
                copied += len(chunk)
                if copied > room:
                    why = ("total" if room < self.limits.max_file_bytes
                           else f"is larger than {_size(self.limits.max_file_bytes)}")
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        except OSError as exc:
            why = f"cannot be copied: {exc.strerror or exc}"
        finally:
            os.close(out)
        if why is not None:
            try:
                os.unlink(name, dir_fd=dest_dir)
            except OSError:
                pass
            return 0, why
        return copied, None

    def _stop_total(self, display: str) -> None:
        self._refuse(display, f"would take the files copied past {_size(self.limits.max_total_bytes)}: "
                              "it and the rest were not copied")
        self.stopped = True

    def _refuse(self, display: str, reason: str) -> None:
        self.refused.append(Refusal(display, reason))


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _kind_reason(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return REASON_SYMLINK
    if stat.S_ISFIFO(mode):
        return REASON_FIFO
    if stat.S_ISSOCK(mode):
        return REASON_SOCKET
    if stat.S_ISCHR(mode):
        return REASON_CHAR_DEVICE
    if stat.S_ISBLK(mode):
        return REASON_BLOCK_DEVICE
    return REASON_OTHER


def _name_problem(raw: bytes, max_bytes: int) -> str | None:
    """Why a file name is refused (too long, not UTF-8, control or bidirectional characters), or None."""
    if len(raw) > max_bytes:
        return f"has a name longer than {max_bytes} bytes"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return REASON_NOT_UTF8
    if any(_unsafe(ch) for ch in text):
        return REASON_CONTROL
    return None


def _unsafe(ch: str) -> bool:
    """A character grader.text.display_name would escape: a control (C0/C1, DEL), a line or paragraph separator, an
    invisible or bidirectional formatting character (which hides or reorders what a reader sees); a space other than
    the plain one counts too."""
    return ch in BIDI or not ch.isprintable()


def _join_display(parent: str, raw: bytes) -> str:
    name = display_name(raw, None)
    text = f"{parent}/{name}" if parent else name
    return _display(text)


def _display(text: str) -> str:
    if len(text) <= _DISPLAY_CHARS:
        return text
    half = (_DISPLAY_CHARS - 3) // 2
    return text[:half] + "..." + text[-half:]


def _size(n: int) -> str:
    """A byte count as a limit is written: '256 MiB', '1 GiB', '100 bytes'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------
# remove_tree


def remove_tree(path: Path) -> None:
    """Delete the tree at path (any depth, any names), never following a link; a link at path itself is unlinked.

    Iterative and descriptor based: at most two folders are open at a time, and going back
    up checks that '..' is the folder the walk came from. Folders the sandbox made
    unreadable or read-only are made accessible first. A missing path is a no-op;
    OSError is raised only when something cannot be deleted.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _remove_below(parent_fd, path.name)
    finally:
        os.close(parent_fd)


@dataclass
class _RmFrame:
    name: str  # the folder's name in its parent
    ident: tuple[int, int]  # the folder's (st_dev, st_ino)
    names: Iterator[str]


def _remove_below(parent_fd: int, top: str) -> None:
    """Remove the folder top inside parent_fd and everything below it."""
    parent_ident = _ident(os.fstat(parent_fd))
    fd = _open_dir_writable(parent_fd, top)
    stack = [_RmFrame(top, _ident(os.fstat(fd)), iter(_list(fd)))]
    try:
        while stack:
            frame = stack[-1]
            name = next(frame.names, None)
            if name is not None:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    child = _open_dir_writable(fd, name)
                    os.close(fd)
                    fd = child
                    stack.append(_RmFrame(name, _ident(os.fstat(fd)), iter(_list(fd))))
                else:
                    os.unlink(name, dir_fd=fd)
                continue
            leftover = _list(fd)  # anything created meanwhile (the sandbox is gone, so normally nothing)
            if leftover:
                frame.names = iter(leftover)
                continue
            stack.pop()
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            expected = stack[-1].ident if stack else parent_ident
            if _ident(os.fstat(up)) != expected:
                os.close(up)
                raise OSError(errno.ESTALE, "the tree moved while it was being removed", frame.name)
            os.close(fd)
            fd = up
            os.rmdir(frame.name, dir_fd=fd)
    finally:
        os.close(fd)


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _list(fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.listdir(fd)


def _open_dir_writable(parent_fd: int, name: str) -> int:
    """The folder name in parent_fd opened without following a link, made readable, writable and searchable."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(fd, stat.S_IMODE(mode) | 0o700)
    except OSError:
        os.close(fd)
        raise
    return fd
