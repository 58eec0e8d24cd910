"""Find submissions and stage each into its own work dir, safely and with a content hash; no grading decisions.

A submission is a folder (a GitHub Classroom clone), a .zip, a lone notebook or a
lone script. Staging copies it into a fresh work dir:

- folders are copied without following symlinks (a symlink is left out and listed
  in ``skipped``), leaving out ``.git``, ``__pycache__``, ``.ipynb_checkpoints``,
  ``__MACOSX``, ``.DS_Store`` at any depth and a top-level ``outputs/`` folder left
  by the student's own run;
- zips are stream-extracted after every entry has been checked: no absolute path,
  no ``..`` component, no symlink entry, no encrypted entry, no duplicate, at most
  ``max_files`` files, at most ``max_total_bytes`` uncompressed (counted while
  extracting, not only read from the headers) and no entry expanding more than
  ``max_ratio`` times. A zip whose files all sit in one top folder is flattened;
  the same skip rules apply after flattening;
- a lone notebook or script is copied into the work dir under its own name.

A refused submission raises :class:`InvalidSubmissionError` and leaves no work dir.
:func:`hash_source` gives the hash the staged copy will have, without copying.

Student ids. A submission's student id is its name (a file's without its suffix). It
names the student's folder under the grader's output folder and is printed, written to
the gradebook and shown in feedback, so :func:`discover` refuses a name that is not a
safe id (:func:`student_id_problem`): not valid UTF-8, empty, longer than
:data:`MAX_ID_CHARS` characters, holding a control, line-separator or invisible
formatting (bidirectional) character, a ``/`` or ``\\``, starting with ``.``, or equal
(case-insensitively) to a name the grader writes at the top of its output folder
(:data:`RESERVED_NAMES`). A refused name does not stop the batch: it is left out and
reported in ``Discovery.refused`` with a one-line, escaped message.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grader.text import display_name
from grader.errors import GraderError

SubmissionKind = Literal["dir", "zip", "notebook", "script"]

MIB = 1024 * 1024

# Left out wherever they appear: version control, caches, checkpoints, archive litter.
SKIP_NAMES = frozenset({".git", "__pycache__", ".ipynb_checkpoints", "__MACOSX", ".DS_Store"})
# Left out at the top level only: what a student's own run wrote (the contract's default output dir).
SKIP_TOP_NAMES = frozenset({"outputs"})

_SUFFIX_KINDS: dict[str, SubmissionKind] = {".zip": "zip", ".ipynb": "notebook", ".py": "script"}
_CHUNK = 1024 * 1024
_MAX_NAME_BYTES = 255

MAX_ID_CHARS = 100
# What the grader writes at the top of its output folder (grader.gradebook's CSV_FILE and PARQUET_FILE,
# grader.grade's DATA_DIR, and the gradebook folder name kept free for it): no student id may take one.
RESERVED_NAMES = frozenset({"grades.csv", "grades.parquet", ".data", "gradebook", "review.csv"})
_BAD_ID_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


class InvalidSubmissionError(ValueError):
    """The submission cannot be staged: an unsafe or oversized zip, an oversized folder, an unreadable archive."""


class DuplicateStudentError(GraderError, ValueError):
    """Two entries of the submissions folder map to the same student id."""


@dataclass(frozen=True)
class Submission:
    """One student's submission as found on disk, not yet staged."""

    student_id: str
    source: Path
    kind: SubmissionKind


@dataclass(frozen=True)
class RefusedSubmission:
    """An entry of the submissions folder whose name is not a safe student id; it is not graded.

    ``name`` is the entry's name in printable, escaped form (grader.text.display_name);
    ``message`` the one line to show the instructor, ending with what to do.
    """

    source: Path
    name: str
    reason: str

    @property
    def message(self) -> str:
        return (f"skipped submission '{self.name}': its name {self.reason}, so it cannot be a student id; "
                f"rename it and grade again")


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found: the submissions to grade, sorted by student id, and the entries it refused."""

    submissions: tuple[Submission, ...]
    refused: tuple[RefusedSubmission, ...] = ()


@dataclass(frozen=True)
class StageLimits:
    """What a submission may hold once staged.

    ``max_ratio`` is checked only for entries of at least ``ratio_min_bytes``
    uncompressed: tiny repetitive files compress well and are harmless.
    """

    max_total_bytes: int = 200 * MIB
    max_files: int = 5000
    max_ratio: float = 200
    ratio_min_bytes: int = 1 * MIB


@dataclass(frozen=True)
class StagedSubmission:
    """A submission copied into its work dir.

    ``files`` are the staged files' relative POSIX paths, sorted; ``skipped`` the
    relative paths of entries of a folder submission that were left out although
    a student may have meant them (symlinks, sockets, fifos, devices).
    """

    student_id: str
    workdir: Path
    content_hash: str
    files: tuple[str, ...]
    skipped: tuple[str, ...]


# ---------------------------------------------------------------- discovery


def discover(path: str | os.PathLike[str], *, entry_points: Sequence[str]) -> Discovery:
    """The submissions at path, sorted by student id, and the entries refused for their name.

    path is one submission when it is a .zip, .ipynb or .py file, or a folder that
    directly holds one of ``entry_points``; otherwise each child of the folder is one
    (folders, .zip, .ipynb, .py; hidden entries and other files are skipped) and its
    student id is the child's name without that suffix. A name that is not a safe
    student id (see the module docstring) is not graded but listed in ``refused``.

    Raises FileNotFoundError for a missing path, InvalidSubmissionError for a lone file
    of another kind and DuplicateStudentError for two entries with one student id: all
    three are about the path the instructor gave, and nothing has been graded yet.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"submissions path '{display_name(str(root), 4096)}' does not exist")
    if root.is_file():
        kind = _SUFFIX_KINDS.get(root.suffix.lower())
        if kind is None:
            raise InvalidSubmissionError(
                f"'{display_name(str(root), 4096)}' is not a submission: expected a folder, .zip, .ipynb or .py file"
            )
        return _one(Submission(_student_id(root), root, kind))
    if any((root / name).is_file() for name in entry_points):
        return _one(Submission(root.resolve().name, root, "dir"))

    found: dict[str, Submission] = {}
    refused: list[RefusedSubmission] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            sub = Submission(child.name, child, "dir")
        elif child.is_file() and child.suffix.lower() in _SUFFIX_KINDS:
            sub = Submission(_student_id(child), child, _SUFFIX_KINDS[child.suffix.lower()])
        else:
            continue
        problem = student_id_problem(sub.student_id)
        if problem is not None:
            refused.append(RefusedSubmission(child, display_name(child.name), problem))
            continue
        if sub.student_id in found:
            other = found[sub.student_id].source.name
            raise DuplicateStudentError(
                f"two submissions for student '{sub.student_id}' in '{display_name(str(root), 4096)}': "
                f"'{other}' and '{child.name}'"
            )
        found[sub.student_id] = sub
    return Discovery(tuple(found[student_id] for student_id in sorted(found)), tuple(refused))


def _one(sub: Submission) -> Discovery:
    problem = student_id_problem(sub.student_id)
    if problem is None:
        return Discovery((sub,))
    return Discovery((), (RefusedSubmission(sub.source, display_name(sub.source.name), problem),))


def student_id_problem(student_id: str) -> str | None:
    """Why student_id is not a safe student id, as the end of 'its name ...'; None when it is one.

    The id is a name as ``os.fsdecode`` gives it: bytes that are not UTF-8 are lone surrogates.
    """
    if not student_id:
        return "is empty"
    try:
        student_id.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(student_id) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    if any(unicodedata.category(ch) in _BAD_ID_CATEGORIES for ch in student_id):
        return "holds a control, line-separator or invisible formatting character"
    if "/" in student_id or "\\" in student_id:
        return "holds a '/' or '\\'"
    if student_id.startswith("."):
        return "starts with '.'"
    if student_id.casefold() in {name.casefold() for name in RESERVED_NAMES}:
        return f"is '{student_id}', a name the grader uses for its own files in the output folder"
    return None


def _student_id(file: Path) -> str:
    return file.name[: -len(file.suffix)] if file.suffix else file.name


def find_entry_point(workdir: str | os.PathLike[str], candidates: Sequence[str]) -> str | None:
    """The first of candidates (in the rubric's order) that is a file in workdir, or None."""
    folder = Path(workdir)
    for name in candidates:
        target = folder / name
        if target.is_file() and not target.is_symlink():
            return name
    return None


# ---------------------------------------------------------------- hashing


def content_hash(folder: str | os.PathLike[str]) -> str:
    """'sha256:<hex>' over the sorted relative paths and bytes of the files staging would keep from folder.

    Symlinks and the skipped names are left out, so hashing a work dir after a run
    (which added ``outputs/`` and ``__pycache__``) gives its hash at staging time.
    """
    files, _ = _walk_dir(Path(folder), limits=None)
    return _hash_files((rel, _file_chunks(path)) for rel, path in files)


def hash_source(sub: Submission, *, limits: StageLimits = StageLimits()) -> str:
    """The content hash that :func:`stage` would give sub, computed without writing anything.

    Raises :class:`InvalidSubmissionError` for whatever :func:`stage` would refuse.
    """
    if sub.kind == "dir":
        files, _ = _walk_dir(sub.source, limits=limits)
        return _hash_files((rel, _file_chunks(path)) for rel, path in files)
    if sub.kind == "zip":
        with _open_zip(sub.source) as zf:
            members = _plan_zip(zf, limits)
            budget = _Budget(limits)
            return _hash_files((m.rel, _zip_chunks(zf, m, budget)) for m in members)
    _check_lone_file(sub.source, limits)
    return _hash_files([(sub.source.name, _file_chunks(sub.source))])


def _hash_files(files: Iterable[tuple[str, Iterable[bytes]]]) -> str:
    """Hash (relative path, content chunks) pairs; the caller gives them sorted by path.

    Each file adds its path, a NUL and the SHA-256 of its bytes, which keeps the
    encoding unambiguous without knowing a file's length in advance.
    """
    total = hashlib.sha256()
    for rel, chunks in files:
        one = hashlib.sha256()
        for chunk in chunks:
            one.update(chunk)
        total.update(rel.encode("utf-8", "surrogateescape"))
        total.update(b"\0")
        total.update(one.digest())
    return f"sha256:{total.hexdigest()}"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


# ---------------------------------------------------------------- staging


def stage(sub: Submission, workdir: str | os.PathLike[str], *, limits: StageLimits = StageLimits()) -> StagedSubmission:
    """Copy or safely extract sub into workdir (which must not exist, or be empty).

    The copy is built in a hidden sibling folder and renamed into place, so a
    refused or failed staging leaves no work dir behind.
    """
    target = Path(workdir)
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise FileExistsError(f"work dir '{target}' already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        skipped = _fill(sub, tmp, limits)
        files, _ = _walk_dir(tmp, limits=None)
        digest = _hash_files((rel, _file_chunks(path)) for rel, path in files)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedSubmission(
        student_id=sub.student_id,
        workdir=target,
        content_hash=digest,
        files=tuple(rel for rel, _ in files),
        skipped=tuple(skipped),
    )


def _fill(sub: Submission, dest: Path, limits: StageLimits) -> list[str]:
    """Write sub's files into the empty folder dest; returns what was skipped."""
    if sub.kind == "dir":
        files, skipped = _walk_dir(sub.source, limits=limits)
        for rel, path in files:
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out, follow_symlinks=False)
        return skipped
    if sub.kind == "zip":
        with _open_zip(sub.source) as zf:
            members = _plan_zip(zf, limits)
            budget = _Budget(limits)
            for m in members:
                out = dest / m.rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "xb") as fh:
                    for chunk in _zip_chunks(zf, m, budget):
                        fh.write(chunk)
        return []
    _check_lone_file(sub.source, limits)
    shutil.copyfile(sub.source, dest / sub.source.name)
    return []


def _check_lone_file(path: Path, limits: StageLimits) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"submission file '{path}' does not exist")
    if path.stat().st_size > limits.max_total_bytes:
        raise InvalidSubmissionError(f"'{path.name}' is larger than {_format_bytes(limits.max_total_bytes)}")


# ---------------------------------------------------------------- folders


def _walk_dir(root: Path, *, limits: StageLimits | None) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files to keep under root as sorted (relative POSIX path, path) pairs, and the entries skipped.

    Never follows a symlink below root. With limits, stops with
    :class:`InvalidSubmissionError` as soon as the folder holds too many files or bytes.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"submission folder '{root}' does not exist")
    files: list[tuple[str, Path]] = []
    skipped: list[str] = []
    total = 0
    pending: list[tuple[Path, str]] = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as it:
            entries = list(it)
        for entry in entries:
            if entry.name in SKIP_NAMES or (not prefix and entry.name in SKIP_TOP_NAMES):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_symlink():
                skipped.append(rel)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((Path(entry.path), f"{rel}/"))
            elif entry.is_file(follow_symlinks=False):
                files.append((rel, Path(entry.path)))
                if limits is not None:
                    total += entry.stat(follow_symlinks=False).st_size
                    if len(files) > limits.max_files:
                        raise InvalidSubmissionError(f"submission folder holds more than {limits.max_files} files")
                    if total > limits.max_total_bytes:
                        raise InvalidSubmissionError(
                            f"submission folder is larger than {_format_bytes(limits.max_total_bytes)}"
                        )
            else:
                skipped.append(rel)
    files.sort(key=lambda pair: pair[0])
    skipped.sort()
    return files, skipped


# ---------------------------------------------------------------- zips


@dataclass(frozen=True)
class _ZipMember:
    info: zipfile.ZipInfo
    rel: str


class _Budget:
    """Uncompressed bytes produced so far across one zip, checked against the limit as they stream."""

    def __init__(self, limits: StageLimits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limits.max_total_bytes:
            raise InvalidSubmissionError(_too_big(self.limits))


def _too_big(limits: StageLimits) -> str:
    return f"zip expands beyond {_format_bytes(limits.max_total_bytes)} (zip bomb?)"


@contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """Open a zip; a damaged archive (bad headers, bad CRC, unknown compression) becomes InvalidSubmissionError."""
    if not path.is_file():
        raise FileNotFoundError(f"submission file '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            yield zf
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise InvalidSubmissionError(f"'{path.name}' is not a readable zip file ({exc})") from exc


_DRIVE = re.compile(r"^[A-Za-z]:")


def _entry_parts(info: zipfile.ZipInfo) -> tuple[tuple[str, ...], bool]:
    """An entry's path components and whether it is a folder; refuses unsafe entries.

    Backslashes count as separators (zips made on Windows use them).
    """
    raw = info.filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidSubmissionError(f"zip entry '{raw}' is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidSubmissionError(f"zip entry '{raw}' escapes the submission folder")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidSubmissionError(f"zip entry '{raw}' is a symlink")
    if info.flag_bits & 0x1:
        raise InvalidSubmissionError(f"zip entry '{raw}' is encrypted")
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for p in parts):
        raise InvalidSubmissionError(f"zip entry '{raw}' has a name longer than {_MAX_NAME_BYTES} bytes")
    is_dir = name.endswith("/") or not parts
    return parts, is_dir


def _plan_zip(zf: zipfile.ZipFile, limits: StageLimits) -> list[_ZipMember]:
    """Check every entry and decide which files to extract and where, sorted by path; reads no file data."""
    entries: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in zf.infolist():
        parts, is_dir = _entry_parts(info)
        if not is_dir:
            entries.append((info, parts))

    kept = [(info, parts) for info, parts in entries if not SKIP_NAMES.intersection(parts)]
    tops = {parts[0] for _, parts in kept}
    if len(tops) == 1 and all(len(parts) > 1 for _, parts in kept):
        kept = [(info, parts[1:]) for info, parts in kept]
    kept = [(info, parts) for info, parts in kept if parts[0] not in SKIP_TOP_NAMES]

    members: dict[str, _ZipMember] = {}
    for info, parts in kept:
        rel = "/".join(parts)
        if rel in members:
            raise InvalidSubmissionError(f"zip entry '{info.filename}' appears more than once")
        members[rel] = _ZipMember(info, rel)
    for rel, member in members.items():
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in members:
                raise InvalidSubmissionError(
                    f"zip entry '{member.info.filename}' lies inside file '{members[parent].info.filename}'"
                )

    if len(members) > limits.max_files:
        raise InvalidSubmissionError(f"zip holds more than {limits.max_files} files")
    if sum(m.info.file_size for m in members.values()) > limits.max_total_bytes:
        raise InvalidSubmissionError(_too_big(limits))
    for m in members.values():
        size = m.info.file_size
        if size >= limits.ratio_min_bytes and size > limits.max_ratio * max(m.info.compress_size, 1):
            raise InvalidSubmissionError(_too_compressed(m.info, limits))
    return [members[rel] for rel in sorted(members)]


def _too_compressed(info: zipfile.ZipInfo, limits: StageLimits) -> str:
    return f"zip entry '{info.filename}' expands more than {limits.max_ratio:g} times (zip bomb?)"


def _zip_chunks(zf: zipfile.ZipFile, member: _ZipMember, budget: _Budget) -> Iterator[bytes]:
    """Stream one entry's bytes, counting what actually comes out rather than trusting its header."""
    limits = budget.limits
    produced = 0
    with zf.open(member.info) as fh:
        while chunk := fh.read(_CHUNK):
            produced += len(chunk)
            budget.spend(len(chunk))
            if produced >= limits.ratio_min_bytes and produced > limits.max_ratio * max(member.info.compress_size, 1):
                raise InvalidSubmissionError(_too_compressed(member.info, limits))
            yield chunk


def _format_bytes(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:g} MiB"
    return f"{n} bytes"
