"""Tests for grader.staging: discovery, safe staging, content hashes and entry points."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from grader.staging import (
    RESERVED_NAMES,
    Discovery,
    DuplicateStudentError,
    InvalidSubmissionError,
    StageLimits,
    Submission,
    content_hash,
    discover,
    find_entry_point,
    hash_source,
    stage,
    student_id_problem,
)

ENTRY_POINTS = ["assignment.ipynb", "tuning.py"]


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def refused(sub: Submission, tmp_path: Path, message: str, limits: StageLimits = StageLimits()) -> None:
    """Staging sub is refused with exactly message, and nothing is left under the work dir's parent."""
    parent = tmp_path / "work"
    with pytest.raises(InvalidSubmissionError) as info:
        stage(sub, parent / sub.student_id, limits=limits)
    assert str(info.value) == message
    assert list(parent.iterdir()) == []
    with pytest.raises(InvalidSubmissionError) as info:
        hash_source(sub, limits=limits)
    assert str(info.value) == message


GOOD_REPO = {
    "tuning.py": b"print('tune')\n",
    "src/model.py": b"def build(): ...\n",
    "README.md": b"# my submission\n",
}


# ---------------------------------------------------------------- discover


def test_discover_finds_dirs_zips_notebooks_and_scripts_sorted_by_id(tmp_path: Path) -> None:
    subs = tmp_path / "submissions"
    write_files(subs / "cnn-tuning-zoe", GOOD_REPO)
    make_zip(subs / "bob.zip", {"tuning.py": b"x = 1\n"})
    write_files(subs, {"carol.ipynb": b"{}", "alice.py": b"x = 1\n", ".DS_Store": b"junk", "notes.txt": b"hi"})
    write_files(subs / ".hidden-dir", {"tuning.py": b""})

    found = discover(subs, entry_points=ENTRY_POINTS)

    assert found == Discovery((
        Submission("alice", subs / "alice.py", "script"),
        Submission("bob", subs / "bob.zip", "zip"),
        Submission("carol", subs / "carol.ipynb", "notebook"),
        Submission("cnn-tuning-zoe", subs / "cnn-tuning-zoe", "dir"),
    ), ())


@pytest.mark.parametrize(
    ("name", "kind", "student_id"),
    [("dana.zip", "zip", "dana"), ("dana.ipynb", "notebook", "dana"), ("dana.py", "script", "dana")],
)
def test_discover_a_single_file_is_the_only_submission(tmp_path: Path, name: str, kind: str, student_id: str) -> None:
    path = tmp_path / name
    if kind == "zip":
        make_zip(path, {"tuning.py": b""})
    else:
        path.write_bytes(b"{}")
    found = discover(path, entry_points=ENTRY_POINTS)
    assert found.submissions == (Submission(student_id, path, kind),)  # type: ignore[arg-type]
    assert found.refused == ()


def test_discover_a_folder_holding_an_entry_point_is_the_only_submission(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "cnn-tuning-erin", {"assignment.ipynb": b"{}", "helpers/util.py": b""})
    assert discover(repo, entry_points=ENTRY_POINTS) == Discovery((Submission("cnn-tuning-erin", repo, "dir"),))


def test_discover_missing_path_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        discover(missing, entry_points=ENTRY_POINTS)
    assert str(info.value) == f"submissions path '{missing}' does not exist"


def test_discover_refuses_two_submissions_for_one_student(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    write_files(subs / "frank", {"tuning.py": b""})
    make_zip(subs / "frank.zip", {"tuning.py": b""})
    with pytest.raises(DuplicateStudentError) as info:
        discover(subs, entry_points=ENTRY_POINTS)
    assert str(info.value) == f"two submissions for student 'frank' in '{subs}': 'frank' and 'frank.zip'"


def test_discover_refuses_a_lone_file_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "grades.txt"
    path.write_text("A")
    with pytest.raises(InvalidSubmissionError) as info:
        discover(path, entry_points=ENTRY_POINTS)
    assert str(info.value) == f"'{path}' is not a submission: expected a folder, .zip, .ipynb or .py file"


def refusal_lines(found: Discovery) -> list[str]:
    return [r.message for r in found.refused]


def test_unsafe_names_are_refused_one_line_each_and_the_rest_are_graded(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    write_files(subs / "alice", {"tuning.py": b""})
    write_files(subs / "evil\x1b]0;pwned\x07", {"tuning.py": b""})
    write_files(subs / "two\nlines", {"tuning.py": b""})
    write_files(subs / "rtl\u202etxt.py", {"tuning.py": b""})
    write_files(subs / ("x" * 101), {"tuning.py": b""})
    write_files(subs / ("y" * 100), {"tuning.py": b""})
    make_zip(subs / "grades.csv.zip", {"tuning.py": b""})
    write_files(subs / "Grades.Parquet", {"tuning.py": b""})
    write_files(subs / "gradebook", {"tuning.py": b""})
    write_files(subs, {"grades.py": b"x = 1\n"})  # id 'grades': not reserved
    os.mkdir(os.fsencode(subs) + b"/caf\xe9")  # a Latin-1 name: not UTF-8

    found = discover(subs, entry_points=ENTRY_POINTS)

    assert [s.student_id for s in found.submissions] == ["alice", "grades", "y" * 100]
    assert sorted(refusal_lines(found)) == sorted([
        ("skipped submission 'Grades.Parquet': its name is 'Grades.Parquet', a name the grader uses for its own "
         "files in the output folder, so it cannot be a student id; rename it and grade again"),
        ("skipped submission 'caf\\xe9': its name is not valid UTF-8, so it cannot be a student id; "
         "rename it and grade again"),
        ("skipped submission 'evil\\x1b]0;pwned\\x07': its name holds a control, line-separator or invisible "
         "formatting character, so it cannot be a student id; rename it and grade again"),
        ("skipped submission 'gradebook': its name is 'gradebook', a name the grader uses for its own files in the "
         "output folder, so it cannot be a student id; rename it and grade again"),
        ("skipped submission 'grades.csv.zip': its name is 'grades.csv', a name the grader uses for its own files "
         "in the output folder, so it cannot be a student id; rename it and grade again"),
        ("skipped submission 'rtl\\u202etxt.py': its name holds a control, line-separator or invisible formatting "
         "character, so it cannot be a student id; rename it and grade again"),
        ("skipped submission 'two\\x0alines': its name holds a control, line-separator or invisible formatting "
         "character, so it cannot be a student id; rename it and grade again"),
        (f"skipped submission '{'x' * 101}': its name is longer than 100 characters, so it cannot be a student id; "
         "rename it and grade again"),
    ])
    for line in refusal_lines(found):
        assert line.isprintable()


def test_a_lone_submission_with_an_unsafe_name_is_refused_not_raised(tmp_path: Path) -> None:
    path = tmp_path / ".hidden.py"
    path.write_text("x = 1\n")
    found = discover(path, entry_points=ENTRY_POINTS)
    assert found.submissions == ()
    assert refusal_lines(found) == [("skipped submission '.hidden.py': its name starts with '.', so it cannot be a "
                                     "student id; rename it and grade again")]
    repo = write_files(tmp_path / "grades.parquet", {"tuning.py": b""})
    assert [r.reason for r in discover(repo, entry_points=ENTRY_POINTS).refused] == [
        "is 'grades.parquet', a name the grader uses for its own files in the output folder"]


@pytest.mark.parametrize(("student_id", "problem"), [
    ("alice", None),
    ("José-Ñ 2", None),
    ("-007", None),
    ("=1+2", None),  # legal as a folder name; grader.text.csv_cell keeps it from a spreadsheet
    ("", "is empty"),
    ("a/b", "holds a '/' or '\\'"),
    ("a\\b", "holds a '/' or '\\'"),
    (".data", "starts with '.'"),
    ("GRADES.CSV", "is 'GRADES.CSV', a name the grader uses for its own files in the output folder"),
    ("a\u200bb", "holds a control, line-separator or invisible formatting character"),
    ("a\u2028b", "holds a control, line-separator or invisible formatting character"),
    ("a\x85b", "holds a control, line-separator or invisible formatting character"),
    (os.fsdecode(b"\xff"), "is not valid UTF-8"),
])
def test_student_id_problem(student_id: str, problem: str | None) -> None:
    assert student_id_problem(student_id) == problem


def test_reserved_names_cover_what_the_grader_writes_at_the_top_of_its_output_folder() -> None:
    from grader import grade, gradebook, review

    assert {gradebook.CSV_FILE, gradebook.PARQUET_FILE, grade.DATA_DIR, review.REVIEW_FILE} <= RESERVED_NAMES


# ---------------------------------------------------------------- staging folders


def test_stage_dir_copies_files_and_leaves_out_vcs_caches_outputs_and_symlinks(tmp_path: Path) -> None:
    repo = write_files(
        tmp_path / "gina",
        {
            **GOOD_REPO,
            ".git/HEAD": b"ref: refs/heads/main\n",
            "__pycache__/tuning.cpython-311.pyc": b"\0",
            "src/__pycache__/model.cpython-311.pyc": b"\0",
            ".ipynb_checkpoints/assignment-checkpoint.ipynb": b"{}",
            "outputs/trials.jsonl": b"{}\n",
            "src/outputs/kept.txt": b"only the top-level outputs/ is the student's run\n",
            ".env": b"SEED=1\n",
        },
    )
    (repo / "passwords").symlink_to("/etc/passwd")
    (repo / "src" / "linked_dir").symlink_to(repo / "src")

    staged = stage(Submission("gina", repo, "dir"), tmp_path / "work" / "gina")

    assert staged.files == (".env", "README.md", "src/model.py", "src/outputs/kept.txt", "tuning.py")
    assert staged.skipped == ("passwords", "src/linked_dir")
    assert staged.workdir == tmp_path / "work" / "gina"
    assert (staged.workdir / "src" / "model.py").read_bytes() == GOOD_REPO["src/model.py"]
    assert not any(p.is_symlink() for p in staged.workdir.rglob("*"))
    assert staged.content_hash == content_hash(staged.workdir) == hash_source(Submission("gina", repo, "dir"))


def test_stage_refuses_a_non_empty_work_dir(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "hal", GOOD_REPO)
    workdir = write_files(tmp_path / "work" / "hal", {"old.txt": b"previous run"})
    with pytest.raises(FileExistsError) as info:
        stage(Submission("hal", repo, "dir"), workdir)
    assert str(info.value) == f"work dir '{workdir}' already exists and is not empty"
    assert (workdir / "old.txt").read_bytes() == b"previous run"


def test_stage_dir_over_the_file_limit_is_refused(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "ivy", {f"data/{i}.txt": b"x" for i in range(4)})
    refused(Submission("ivy", repo, "dir"), tmp_path, "submission folder holds more than 3 files", StageLimits(max_files=3))


def test_stage_dir_over_the_byte_limit_is_refused(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "jon", {"weights.bin": bytes(2048)})
    refused(
        Submission("jon", repo, "dir"), tmp_path, "submission folder is larger than 1000 bytes",
        StageLimits(max_total_bytes=1000),
    )


def test_stage_lone_notebook_is_copied_under_its_own_name(tmp_path: Path) -> None:
    notebook = tmp_path / "kim.ipynb"
    notebook.write_bytes(b'{"cells": []}')
    sub = Submission("kim", notebook, "notebook")

    staged = stage(sub, tmp_path / "work" / "kim")

    assert staged.files == ("kim.ipynb",)
    assert (staged.workdir / "kim.ipynb").read_bytes() == b'{"cells": []}'
    assert staged.content_hash == hash_source(sub)


# ---------------------------------------------------------------- hashing


def test_content_hash_is_stable_across_copies_and_ignores_what_staging_leaves_out(tmp_path: Path) -> None:
    a = write_files(tmp_path / "a", GOOD_REPO)
    b = write_files(tmp_path / "b", {**GOOD_REPO, "__pycache__/x.pyc": b"\0", "outputs/trials.jsonl": b"{}"})
    digest = content_hash(a)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert content_hash(b) == digest


@pytest.mark.parametrize(
    "change",
    [
        {"tuning.py": b"print('tune!')\n"},  # one byte changed
        {"src/model.py": None, "src/models.py": GOOD_REPO["src/model.py"]},  # renamed
        {"extra.py": b""},  # an empty file added
        {"README.md": None},  # a file removed
    ],
    ids=["byte", "rename", "added", "removed"],
)
def test_content_hash_changes_with_any_byte_or_name(tmp_path: Path, change: dict[str, bytes | None]) -> None:
    before = content_hash(write_files(tmp_path / "before", GOOD_REPO))
    after_dir = write_files(tmp_path / "after", GOOD_REPO)
    for rel, data in change.items():
        if data is None:
            (after_dir / rel).unlink()
        else:
            write_files(after_dir, {rel: data})
    assert content_hash(after_dir) != before


def test_hash_does_not_confuse_path_and_content_boundaries(tmp_path: Path) -> None:
    one = write_files(tmp_path / "one", {"ab": b"c"})
    two = write_files(tmp_path / "two", {"a": b"bc"})
    assert content_hash(one) != content_hash(two)


def test_zip_and_folder_with_the_same_files_hash_alike(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "lee", GOOD_REPO)
    archive = make_zip(tmp_path / "lee.zip", {f"lee/{rel}": data for rel, data in GOOD_REPO.items()})
    zipped = Submission("lee", archive, "zip")

    staged = stage(zipped, tmp_path / "work" / "lee")

    assert hash_source(zipped) == staged.content_hash == content_hash(staged.workdir) == content_hash(repo)


# ---------------------------------------------------------------- zips


def test_zip_with_a_single_top_folder_is_flattened_and_mac_litter_dropped(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "max.zip",
        {
            "cnn-tuning-max/tuning.py": b"x = 1\n",
            "cnn-tuning-max/src/model.py": b"y = 2\n",
            "cnn-tuning-max/outputs/trials.jsonl": b"{}\n",
            "__MACOSX/cnn-tuning-max/._tuning.py": b"\0",
            "cnn-tuning-max/.DS_Store": b"\0",
        },
    )
    staged = stage(Submission("max", archive, "zip"), tmp_path / "work" / "max")
    assert staged.files == ("src/model.py", "tuning.py")
    assert (staged.workdir / "tuning.py").read_bytes() == b"x = 1\n"
    assert find_entry_point(staged.workdir, ENTRY_POINTS) == "tuning.py"


def test_zip_with_files_at_the_top_is_kept_as_is(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "nia.zip", {"tuning.py": b"", "lib/util.py": b""})
    staged = stage(Submission("nia", archive, "zip"), tmp_path / "work" / "nia")
    assert staged.files == ("lib/util.py", "tuning.py")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../evil.py", "zip entry '../evil.py' escapes the submission folder"),
        ("src/../../evil.py", "zip entry 'src/../../evil.py' escapes the submission folder"),
        ("..\\evil.py", "zip entry '..\\evil.py' escapes the submission folder"),
        ("/etc/cron.d/evil", "zip entry '/etc/cron.d/evil' is an absolute path"),
        ("C:/Windows/evil.py", "zip entry 'C:/Windows/evil.py' is an absolute path"),
    ],
    ids=["dotdot", "nested-dotdot", "backslash-dotdot", "absolute", "drive"],
)
def test_zip_entry_outside_the_folder_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    archive = make_zip(tmp_path / "oz.zip", {"tuning.py": b"", entry: b"import os\n"})
    refused(Submission("oz", archive, "zip"), tmp_path, message)


def test_zip_symlink_entry_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "pat.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tuning.py", b"")
        link = zipfile.ZipInfo("data.txt")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    refused(Submission("pat", archive, "zip"), tmp_path, "zip entry 'data.txt' is a symlink")


def test_zip_with_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "quin.zip", {"tuning.py": b"a", "./tuning.py": b"b"})
    refused(Submission("quin", archive, "zip"), tmp_path, "zip entry './tuning.py' appears more than once")


def test_zip_over_the_file_limit_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "ray.zip", {f"{i}.txt": b"" for i in range(4)})
    refused(Submission("ray", archive, "zip"), tmp_path, "zip holds more than 3 files", StageLimits(max_files=3))


def test_zip_entry_with_an_extreme_compression_ratio_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "sam.zip", {"tuning.py": b"", "zeros.bin": bytes(2 * 1024 * 1024)})
    refused(Submission("sam", archive, "zip"), tmp_path, "zip entry 'zeros.bin' expands more than 200 times (zip bomb?)")


def test_small_repetitive_files_are_not_mistaken_for_bombs(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "tia.zip", {"tuning.py": b"", "blank.csv": b"0," * 50_000})
    staged = stage(Submission("tia", archive, "zip"), tmp_path / "work" / "tia")
    assert staged.files == ("blank.csv", "tuning.py")


def test_damaged_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "uma.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    refused(Submission("uma", archive, "zip"), tmp_path, "'uma.zip' is not a readable zip file (File is not a zip file)")


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 GiB of zeros in one deflated entry: about 1 MB on disk, written by streaming into zipfile."""
    path = tmp_path_factory.mktemp("bomb") / "vic.zip"
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tuning.py", b"")
        with zf.open("data/zeros.bin", "w", force_zip64=True) as fh:
            for _ in range(1024):
                fh.write(chunk)
    return path


def test_zip_bomb_is_refused_without_writing_it_out(tmp_path: Path, zip_bomb: Path) -> None:
    assert zip_bomb.stat().st_size < 2 * 1024 * 1024
    refused(Submission("vic", zip_bomb, "zip"), tmp_path, "zip expands beyond 200 MiB (zip bomb?)")


# ---------------------------------------------------------------- entry points


def test_find_entry_point_takes_the_first_candidate_present(tmp_path: Path) -> None:
    work = write_files(tmp_path / "w", {"tuning.py": b"", "assignment.ipynb": b"{}"})
    assert find_entry_point(work, ENTRY_POINTS) == "assignment.ipynb"
    assert find_entry_point(work, ["tuning.py", "assignment.ipynb"]) == "tuning.py"
    (work / "assignment.ipynb").unlink()
    assert find_entry_point(work, ENTRY_POINTS) == "tuning.py"
    (work / "tuning.py").unlink()
    os.mkdir(work / "tuning.py")  # a folder by that name is not an entry point
    assert find_entry_point(work, ENTRY_POINTS) is None
