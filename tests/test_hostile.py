"""`grader grade` against hostile submissions: one batch, one test per attack.

Every submission under tests/fixtures/hostile_submissions/ (and a few whose names cannot live
in git, made here at run time) is graded in ONE batch next to two victims, ``victim`` (a
script that trains two tiny models) and ``victim_notebook``. Both victims plant
VICTIM-SECRET-7f3a9c in their file names, trials, answers and executed notebook; the victims
are graded first (a batch of their own into the same OUT), so that every attack finds their
trees complete, then the whole folder (the victims skipped as unchanged).

Names that cannot be student ids (not UTF-8, with escapes or a newline, the gradebook's own
file names) are refused with one escaped line each, and the batch goes on.

For each attack the tests assert the status and the exact message in its result.json, and
that nothing of another student's or of the host's reached that student's result.json,
feedback.md/.html, feedback.instructor.* or notebook.html: no victim marker, no line of
/etc/passwd, no name of a file in /root, no accuracy of the victim's models.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import json
import os
import re
import shutil
import socket
import stat
import sys
import time
import zipfile
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, stray_processes
from rich.console import Console

from grader import grade
from grader.harvest import remove_tree
from grader.result import Result, read_result
from grader.sandbox import bwrap_usable

FIXTURES = ROOT / "tests" / "fixtures" / "hostile_submissions"
TIME_LIMIT = 30
LIMITS = {"memory_mb": 1024, "disk_mb": 64, "tmpfs_mb": 32, "file_size_mb": 16, "max_processes": 64,
          "max_model_mb": 5, "eval_time_limit_s": 60}
VICTIMS = ("victim", "victim_notebook")
VICTIM_MARKERS = (b"VICTIM-SECRET-7f3a9c", b"victim-secret-7f3a9c", b"victim-notebook-secret")
PASSWD_LINE = b"root:x:0:0"
FORGED_MARKERS = (b"FORGED-RESULT-5d1e", b"FORGED-HTML-3b7e", b"FORGED-ANSWERS-9c2d")
SURVIVOR_MARKER = b"SETSID-SURVIVOR-8e21"
PWNED_FILES = (Path("/tmp/PWNED-notebook-answers-4a8f"), Path("/tmp/PWNED-answers-yaml-4a8f"))
# Run-time names: ids a spreadsheet would evaluate, names the gradebook's files have, names not UTF-8 or with
# terminal escapes in them.
FORMULA_IDS = ("=1+2", "+cmd", "-2+3", "@SUM(A1)")
LATIN1_ID = os.fsdecode(b"stud\xe9nt")
ESCAPE_ID = "escape_\x1b]0;pwned\x07_\x1b[31mred_in_id"
NEWLINE_ID = "newline\nin_id"
REFUSED_IDS = {  # the submission's name on disk -> the line the batch prints for it
    ESCAPE_ID: "skipped submission 'escape_\\x1b]0;pwned\\x07_\\x1b[31mred_in_id': its name holds a control, "
               "line-separator or invisible formatting character, so it cannot be a student id; rename it and grade "
               "again",
    "grades.csv": "skipped submission 'grades.csv': its name is 'grades.csv', a name the grader uses for its own files "
                  "in the output folder, so it cannot be a student id; rename it and grade again",
    "grades.parquet": "skipped submission 'grades.parquet': its name is 'grades.parquet', a name the grader uses for "
                      "its own files in the output folder, so it cannot be a student id; rename it and grade again",
    NEWLINE_ID: "skipped submission 'newline\\x0ain_id': its name holds a control, line-separator or invisible "
                "formatting character, so it cannot be a student id; rename it and grade again",
    LATIN1_ID: "skipped submission 'stud\\xe9nt': its name is not valid UTF-8, so it cannot be a student id; rename "
               "it and grade again",
}
# A notebook whose runner was SIGKILLed: stderr holds nothing of the kernel's own warnings to quote.
KILLED_NOTEBOOK = "killed by signal 9"
# A tree deeper than the disk watcher measures stops the run: the cap could not be enforced on it.
DEEP_TREE = ("crashed", "made its work dir too large to measure (more than 100000 entries or 64 folders deep) and was "
                        "stopped")

BWRAP_OK, BWRAP_WHY = bwrap_usable()
pytestmark = [pytest.mark.slow, pytest.mark.sandbox,
              pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap sandbox unusable here: {BWRAP_WHY}")]


# ---------------------------------------------------------------- the batch


@dataclass(frozen=True)
class Batch:
    base: Path
    subs: Path
    out: Path
    rubric: Path
    summary: grade.BatchSummary
    console: str  # everything both grading runs printed
    started: float  # time.time() when the batch began
    strays: tuple[str, ...]  # processes left a second after the batch
    loopback_connections: int  # connections the test's host-loopback listener accepted during the batch
    train_hash_before: str
    train_hash_after: str


def make_rubric(path: Path) -> Path:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc["time_limit_s"] = TIME_LIMIT
    doc["limits"].update(LIMITS)
    path.write_text(json.dumps(doc))
    return path


def _write_zip(path: Path, entries: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)


def runtime_submissions(subs: Path, port: int) -> None:
    """The submissions whose names or contents cannot live in git."""
    hello = "print('a harmless submission')\n"
    for name in (*FORMULA_IDS, "grades.csv", "grades.parquet", ".data", LATIN1_ID, ESCAPE_ID, NEWLINE_ID):
        (subs / name).mkdir()
        (subs / name / "tuning.py").write_text(hello)
    _write_zip(subs / "zip_with_dotdot_inside_a_folder.zip", {"tuning.py": hello, "sub/../../escape.py": hello})
    _write_zip(subs / "zip_with_backslash_dotdot.zip", {"tuning.py": hello, "..\\evil.py": hello})
    linked = subs / "symlink_in_submission_folder"
    linked.mkdir()
    (linked / "tuning.py").write_text(
        "import os\nprint('secret is', 'present' if os.path.exists('secret') else 'missing')\n"
        "print('victim link is', 'present' if os.path.lexists('victim') else 'missing')\n")
    os.symlink("/etc/passwd", linked / "secret")
    os.symlink("../victim", linked / "victim")
    entry_link = subs / "entry_point_is_a_symlink"
    entry_link.mkdir()
    os.symlink("/etc/passwd", entry_link / "tuning.py")
    loopback = subs / "connects_to_host_loopback"
    loopback.mkdir()
    (loopback / "tuning.py").write_text(
        "import socket\n"
        f"for host in ('127.0.0.1', 'localhost', '::1'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=3).close()\n"
        f"        print(f'CONNECTED {{host}}:{port}')\n"
        "    except OSError as exc:\n"
        f"        print(f'blocked {{host}}:{port}: {{exc}}')\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    for pwned in PWNED_FILES:
        pwned.unlink(missing_ok=True)
    base = tmp_path_factory.mktemp("hostile")
    subs = base / "submissions"
    subs.mkdir()
    for child in sorted(FIXTURES.iterdir()):
        shutil.copytree(child, subs / child.name, ignore=shutil.ignore_patterns("__pycache__"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    runtime_submissions(subs, listener.getsockname()[1])
    rubric = make_rubric(base / "rubric.json")
    out = base / "out"
    printed = io.StringIO()
    console = Console(file=printed, width=200)
    started = time.time()
    try:
        grade.main(submissions=[subs / name for name in VICTIMS], rubric=rubric, out=out, gpus="none", jobs=2,
                   console=console)
        train = out / ".data" / "train" / "mnist.npz"
        train_before = _sha256(train)
        summary = grade.main(submissions=[subs], rubric=rubric, out=out, gpus="none", jobs=2, console=console)
        time.sleep(1.0)
        strays = tuple(stray_processes(out, started))
        accepted = 0
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            conn.close()
            accepted += 1
    finally:
        listener.close()
    yield Batch(base, subs, out, rubric, summary, printed.getvalue(), started, strays, accepted, train_before,
                _sha256(train))
    remove_tree(base)  # pytest's own clean-up of old temp dirs recurses, and a 1500-deep tree would crash it


# ---------------------------------------------------------------- helpers


def result(batch: Batch, student: str) -> Result:
    res = read_result(batch.out / student / "result.json")
    assert res is not None, f"no result for {student!r}"
    return res


def written_for(batch: Batch, student: str) -> dict[str, bytes]:
    """Every file the grader wrote for a student that a person reads: result.json, feedback, notebook.html."""
    folder = batch.out / student
    names = ["result.json", *sorted(p.name for p in folder.glob("feedback*")), "notebook.html"]
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def root_names() -> list[bytes]:
    """Names of the entries of /root distinctive enough to grep for (none that a feedback page holds anyway)."""
    try:
        names = os.listdir("/root")
    except OSError:
        return []
    common = {".cache", ".config", ".keras", ".local", ".profile", ".bashrc", ".ssh"}
    return [n.encode() for n in names if len(n) >= 5 and n not in common]


def assert_nothing_leaked(batch: Batch, student: str) -> None:
    """Nothing of the victims', of /etc/passwd or of /root in what the grader wrote for student; no raw terminal
    escapes either; and no accuracy for a model it did not train."""
    files = written_for(batch, student)
    assert "result.json" in files and "feedback.md" in files, sorted(files)
    accuracies = [f"{ev.test_accuracy}".encode() for ev in result(batch, "victim").evaluations if ev.test_accuracy]
    for name, data in files.items():
        for marker in (*VICTIM_MARKERS, PASSWD_LINE, *FORGED_MARKERS, *root_names(), *accuracies):
            assert marker not in data, f"{marker!r} reached {student}/{name}"
        if name.startswith("feedback") and name.endswith(".md"):
            assert b"\x1b" not in data and b"\x07" not in data, f"a terminal escape reached {student}/{name}"
        if name in ("feedback.md", "feedback.html"):  # the student's copy never shows where the grader keeps files
            assert str(batch.base).encode() not in data, f"a grader path reached {student}/{name}"


def assert_no_accuracy(res: Result) -> dict[str, str]:
    """No model of res was evaluated; returns each search's error."""
    assert all(ev.test_accuracy is None for ev in res.evaluations), res.evaluations
    return {ev.search: ev.error for ev in res.evaluations}


def log(batch: Batch, student: str, name: str = "stdout") -> str:
    return (batch.out / student / "logs" / f"{name}.log").read_text("utf-8", "replace")


def artifacts(res: Result) -> dict[str, str | None]:
    return {a.path: a.refused for a in res.artifacts}


class TagCollector(html.parser.HTMLParser):
    """Every start tag of an HTML page, with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    @classmethod
    def of(cls, page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
        parser = cls()
        parser.feed(page)
        parser.close()
        return parser.tags


def check(res: Result, check_id: str):
    return next(c for c in res.checks if c.id == check_id)


# ---------------------------------------------------------------- the batch as a whole


def test_every_submission_gets_a_result_a_gradebook_row_and_a_clean_console(batch: Batch) -> None:
    graded = sorted(p.parent.name for p in batch.out.glob("*/result.json"))
    book = pd.read_csv(batch.out / "grades.csv", dtype=str, keep_default_na=False)
    names = {p.name.removesuffix(".zip") for p in batch.subs.iterdir() if not p.name.startswith(".")}
    assert graded == sorted(names - set(REFUSED_IDS)) and len(graded) >= 60
    assert sorted(batch.summary.refused) == sorted(REFUSED_IDS.values())
    assert len(book) == len(graded) and book["student_id"].is_unique
    assert "\x1b" not in batch.console and "\x07" not in batch.console and "\x9b" not in batch.console
    assert batch.summary.sandbox_errors == (), batch.summary.statuses


def test_no_process_outlives_the_batch_and_no_setsid_survivor(batch: Batch) -> None:
    assert batch.strays == ()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            assert SURVIVOR_MARKER not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue


def test_setsid_survivor_cannot_swap_in_the_victims_models(batch: Batch) -> None:
    student = "setsid_survivor_swaps_models_symlink"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "survivor started" in log(batch, student)
    assert_no_accuracy(res)
    assert_nothing_leaked(batch, student)


def test_the_victims_are_graded_normally(batch: Batch) -> None:
    victim = result(batch, "victim")
    assert (victim.status, victim.message) == ("completed", "ran to the end")
    assert all(ev.test_accuracy and ev.test_accuracy > 0.5 for ev in victim.evaluations), victim.evaluations
    notebook = result(batch, "victim_notebook")
    assert notebook.status == "completed", notebook.message
    assert b"VICTIM-SECRET-7f3a9c" in (batch.out / "victim_notebook" / "notebook.html").read_bytes()
    assert set(batch.summary.skipped) >= set(VICTIMS)
    for name in VICTIMS:  # the leak check's positive control: it finds the victims' markers in their own files
        with pytest.raises(AssertionError, match="reached"):
            assert_nothing_leaked(batch, name)


# ---------------------------------------------------------------- links out of the sandbox's tree


def test_models_linked_to_another_student_are_not_evaluated(batch: Batch) -> None:
    student = "symlinks_models_to_another_student"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == {"models": "is a symbolic link"}
    assert assert_no_accuracy(res) == {
        "grid": "models/best_grid.keras was not read: models is a symbolic link",
        "random": "models/best_random.keras was not read: models is a symbolic link"}
    assert_nothing_leaked(batch, student)


def test_an_output_dir_linked_to_another_student_is_not_read(batch: Batch) -> None:
    student = "symlinks_outputs_to_another_student"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == {}
    assert check(res, "search-space").message.startswith(
        "no search space could be read (output dir: not read: it is a symbolic link)")
    assert_no_accuracy(res)
    assert_nothing_leaked(batch, student)


def test_trials_linked_to_another_students_are_not_credited(batch: Batch) -> None:
    student = "symlinks_trials_to_victim_trials"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == dict.fromkeys(("answers.yaml", "search_spaces.json", "trials.jsonl", "stolen.txt"),
                                           "is a symbolic link")
    assert check(res, "grid-coverage").points == 0 and check(res, "answer-search-comparison").points == 0
    assert_nothing_leaked(batch, student)


def test_models_linked_to_another_students_models_are_not_evaluated(batch: Batch) -> None:
    student = "model_symlink_to_victim_model"
    res = result(batch, student)
    assert assert_no_accuracy(res) == {"grid": "models/best_grid.keras was not read: it is a symbolic link",
                                       "random": "models/best_random.keras was not read: it is a symbolic link"}
    assert_nothing_leaked(batch, student)


def test_models_linked_to_etc_passwd_are_refused(batch: Batch) -> None:
    student = "model_symlink_to_etc_passwd"
    res = result(batch, student)
    assert assert_no_accuracy(res) == {"grid": "models/best_grid.keras was not read: it is a symbolic link",
                                       "random": "models/best_random.keras was not read: it is a symbolic link"}
    assert_nothing_leaked(batch, student)


def test_an_output_dir_linked_to_root_lists_nothing_of_root(batch: Batch) -> None:
    student = "symlinks_outputs_to_root"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == {}
    assert root_names(), "the test needs names in /root to look for"
    assert_nothing_leaked(batch, student)


def test_an_output_dir_linked_to_etc_shows_no_passwd(batch: Batch) -> None:
    student = "symlinks_outputs_to_etc"
    res = result(batch, student)
    assert artifacts(res) == {}
    assert_nothing_leaked(batch, student)


def test_symlink_loops_are_refused_not_followed(batch: Batch) -> None:
    student = "symlink_loop_in_outputs"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == dict.fromkeys(("a", "b", "loop", "up", "trials.jsonl", "models/best_grid.keras"),
                                           "is a symbolic link")
    assert_nothing_leaked(batch, student)


def test_hard_links_to_host_files_cannot_be_made(batch: Batch) -> None:
    student = "hardlink_to_file_outside_workdir"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "LINKED" not in log(batch, student)
    assert log(batch, student).count(": Invalid cross-device link") == 3
    assert_nothing_leaked(batch, student)


def test_an_output_dir_replaced_by_a_file(batch: Batch) -> None:
    student = "outputs_replaced_by_file"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "search-space").message.startswith(
        "no search space could be read (output dir: not read: it is not a folder)")
    assert_no_accuracy(res)
    assert_nothing_leaked(batch, student)


def test_other_students_and_the_test_images_are_invisible(batch: Batch) -> None:
    student = "reads_other_students_and_test_images"
    res = result(batch, student)
    assert res.status == "completed"
    lines = log(batch, student).splitlines()
    found = {line.split(": ")[0].removeprefix("FOUND "): line.split(": ", 1)[1].split() for line in lines
             if line.startswith("FOUND")}
    # What shows is the way to what is mounted: its own work dir, the train split, the interpreter, the venv and the
    # project's sources; nothing of the other students, the test images or the gradebook.
    mounted = [batch.out / student / "work", batch.out / ".data" / "train", Path(sys.base_prefix), Path(sys.prefix),
               ROOT / "grader", ROOT / "tunekit"]
    for folder, names in found.items():
        allowed = {m.relative_to(folder).parts[0] for m in mounted if Path(folder) in m.parents}
        assert set(names) <= allowed, (folder, names)
    assert set(found) <= {str(batch.out), "/root", "/work", "/usr/share/datasets"}
    assert found.get("/usr/share/datasets", []) == []
    for hidden in ("victim", "victim/work/outputs", ".data/test", "grades.csv"):
        assert f"hidden {batch.out / hidden}: No such file or directory" in lines
    assert_nothing_leaked(batch, student)


def test_the_train_split_cannot_be_tampered_with(batch: Batch) -> None:
    student = "tampers_with_train_split"
    assert result(batch, student).status == "completed"
    assert "TAMPERED" not in log(batch, student)
    assert batch.train_hash_before == batch.train_hash_after


def test_files_written_above_the_work_dir_stay_in_the_sandbox(batch: Batch) -> None:
    student = "writes_forged_result_json_above_workdir"
    res = result(batch, student)
    assert (res.student_id, res.status) == (student, "completed")
    assert b"FORGED-RESULT-5d1e" not in (batch.out / "grades.csv").read_bytes()
    assert result(batch, "victim").student_id == "victim"
    for path in batch.out.glob("*/*"):
        if path.is_file():
            assert b"FORGED-RESULT-5d1e" not in path.read_bytes(), path
    assert_nothing_leaked(batch, student)


# ---------------------------------------------------------------- the notebook runner's files


def test_a_grader_dir_linked_to_another_notebook_is_not_graded_as_this_one(batch: Batch) -> None:
    student = "symlinks_grader_dir_to_another_notebook"
    res = result(batch, student)
    assert (res.status, res.message) == ("crashed", KILLED_NOTEBOOK)
    assert not (batch.out / student / "notebook.html").exists()
    assert not (batch.out / student / "notebook.executed.ipynb").exists()
    assert check(res, "answer-search-comparison").points == 0
    assert_nothing_leaked(batch, student)


def test_a_fifo_as_the_notebook_summary_does_not_hang_the_batch(batch: Batch) -> None:
    student = "fifo_as_notebook_summary"
    res = result(batch, student)
    assert (res.status, res.message) == ("crashed", KILLED_NOTEBOOK)
    assert res.timings.run_s < TIME_LIMIT
    assert not (batch.out / student / "notebook.html").exists()
    assert_nothing_leaked(batch, student)


def test_a_notebook_summary_linked_to_dev_zero_is_not_read(batch: Batch) -> None:
    student = "notebook_summary_symlink_to_dev_zero"
    res = result(batch, student)
    assert (res.status, res.message) == ("crashed", KILLED_NOTEBOOK)
    assert res.timings.run_s < TIME_LIMIT
    assert not (batch.out / student / "notebook.html").exists()
    assert_nothing_leaked(batch, student)


def test_a_script_forging_the_notebook_runners_html_gets_no_notebook_page(batch: Batch) -> None:
    student = "script_writes_executed_html"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert not (batch.out / student / "notebook.html").exists()
    assert "notebook.html" not in (batch.out / student / "feedback.html").read_text()
    assert "html" not in res.logs and "notebook" not in res.logs
    assert_nothing_leaked(batch, student)


def test_a_script_forging_a_dead_kernel_and_answers_is_a_completed_script(batch: Batch) -> None:
    student = "forges_notebook_summary_from_script"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "answer-search-comparison").points == 0
    assert_nothing_leaked(batch, student)


def test_the_notebook_page_has_no_script_and_no_event_handler(batch: Batch) -> None:
    student = "notebook_with_script_and_onerror"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    page = (batch.out / student / "notebook.html").read_text()
    assert "<script" not in page.lower()
    tags = TagCollector.of(page)
    assert not {name for name, _ in tags} & {"script", "iframe", "object", "embed", "svg", "base", "form"}
    for name, attrs in tags:
        for key, value in attrs:
            assert not key.startswith("on"), (name, key, value)
            assert "javascript:" not in (value or "").lower().replace(" ", ""), (name, key, value)
    csp = [dict(attrs) for name, attrs in tags if name == "meta" and dict(attrs).get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0]["content"].startswith("default-src 'none'"), csp
    assert "notebook.html" in (batch.out / student / "feedback.html").read_text()
    assert_nothing_leaked(batch, student)


def test_an_answers_cell_is_read_as_a_literal_never_run(batch: Batch) -> None:
    student = "notebook_answers_cell_with_code"
    res = result(batch, student)
    assert res.status == "completed"
    assert not PWNED_FILES[0].exists()
    assert check(res, "answer-search-comparison").points == 0
    assert_nothing_leaked(batch, student)


def test_escapes_in_a_notebook_error_do_not_reach_the_message(batch: Batch) -> None:
    student = "notebook_error_with_escapes"
    res = result(batch, student)
    assert res.status == "completed"
    assert res.message == "1 notebook cell(s) raised an error, first cell 1: ValueError: red [bold]markup[/] and a newline"
    assert_nothing_leaked(batch, student)


# ---------------------------------------------------------------- resources


def test_shared_memory_past_the_limit_is_a_crash_naming_the_limit(batch: Batch) -> None:
    student = "mmap_2gib_shared"
    res = result(batch, student)
    assert (res.status, res.message) == ("crashed", "used more than its memory limit of 1024 MiB and was stopped")
    assert "did not hold" not in log(batch, student)
    assert_nothing_leaked(batch, student)


@pytest.mark.parametrize(("student", "folder"), [("fills_tmp_beyond_tmpfs", "/tmp"),
                                                  ("fills_dev_shm_beyond_tmpfs", "/dev/shm")])
def test_tmpfs_writes_stop_at_the_tmpfs_size(batch: Batch, student: str, folder: str) -> None:
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    line = log(batch, student).strip()
    match = re.fullmatch(rf"{folder} full after (\d+) MiB: No space left on device", line)
    assert match and int(match.group(1)) <= LIMITS["tmpfs_mb"], line
    assert_nothing_leaked(batch, student)


def test_writing_past_the_disk_cap_is_stopped_naming_the_cap(batch: Batch) -> None:
    student = "fills_disk_with_8mib_files"
    res = result(batch, student)
    assert res.status == "crashed"
    assert res.message == "wrote more than its disk limit of 64 MiB to its work dir and was stopped"
    # The cap is watched, not enforced by the file system: a fast writer gets past it before it is stopped (200 MiB
    # of a 64 MiB cap was seen), but not through all the 320 MiB it tried.
    assert "did not hold" not in log(batch, student)
    assert sum(a.bytes for a in res.artifacts) < 320 * 2**20
    assert_nothing_leaked(batch, student)


def test_a_fork_bomb_does_not_starve_a_student_running_beside_it(batch: Batch) -> None:
    bomb, other = "A1_fork_bomb_for_10s", "A2_spawns_20_processes"
    window = [float(w) for w in log(batch, bomb).split("window ")[1].split()[:2]]
    spawned = float(log(batch, other).split("spawned at ")[1].split(":")[0])
    assert window[0] <= spawned <= window[1], "the two did not run at the same time: the test proves nothing"
    forked, refused = (int(n) for n in re.search(r"forked (\d+), refused (\d+)", log(batch, bomb)).groups())
    assert forked < LIMITS["max_processes"] and refused > 0
    assert (result(batch, bomb).status, result(batch, bomb).message) == (  # its refused forks, not a crash: it exited 0
        "completed", "ran to the end, though part of it hit a limit: it tried to run more than 64 processes at once "
                     "(threads count too)")
    res = result(batch, other)
    assert (res.status, res.message) == ("completed", "ran to the end"), log(batch, other)
    assert "started 20 of 20" in log(batch, other)


def test_kill_minus_one_reaches_only_its_own_sandbox(batch: Batch) -> None:
    student = "kills_every_process_it_can"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "still here" in log(batch, student)


def test_6000_files_are_capped(batch: Batch) -> None:
    student = "six_thousand_empty_files"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert len(res.artifacts) == 5001
    assert artifacts(res)["empty-05000.txt"] == "is past the first 5000 files and folders: it and the rest were not looked at"
    assert_nothing_leaked(batch, student)


def test_a_1500_deep_tree_gets_a_result(batch: Batch) -> None:
    student = "deep_folder_tree_1500"
    res = result(batch, student)
    assert (res.status, res.message) == DEEP_TREE
    assert artifacts(res) == {"/".join(["d"] * 33): "is more than 32 folders deep: no folder that deep was looked at"}
    assert_nothing_leaked(batch, student)


def test_mode_000_files_and_folders(batch: Batch) -> None:
    student = "chmod_000_files_and_folders"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == dict.fromkeys(("locked/inside.txt", "models/best_grid.keras", "trials.jsonl"))
    assert_nothing_leaked(batch, student)


def test_setuid_bits_never_reach_the_graders_copies(batch: Batch) -> None:
    student = "setuid_file_in_outputs"
    res = result(batch, student)
    assert res.status == "completed"
    work = batch.out / student / "work"
    for path in (batch.out / student).rglob("*"):
        if work in path.parents or path.is_symlink():
            continue
        mode = path.lstat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID), f"{path} keeps mode {stat.S_IMODE(mode):o}"
        assert not mode & stat.S_IWOTH or path.is_dir() and mode & stat.S_ISVTX, f"{path} is world-writable"


# ---------------------------------------------------------------- odd file types and names


def test_models_that_are_folders_are_refused(batch: Batch) -> None:
    student = "model_is_a_directory"
    res = result(batch, student)
    assert assert_no_accuracy(res) == {"grid": "models/best_grid.keras is a folder, not a model file",
                                       "random": "models/best_random.keras is a folder, not a model file"}
    assert_nothing_leaked(batch, student)


def test_models_that_are_fifos_are_refused_without_a_hang(batch: Batch) -> None:
    student = "model_is_a_fifo"
    res = result(batch, student)
    assert assert_no_accuracy(res) == {"grid": "models/best_grid.keras was not read: it is a FIFO",
                                       "random": "models/best_random.keras was not read: it is a FIFO"}
    assert res.timings.evaluation_s < 10
    assert_nothing_leaked(batch, student)


def test_fifos_as_contract_files_are_refused_without_a_hang(batch: Batch) -> None:
    student = "fifos_as_trials_and_answers"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == dict.fromkeys(("answers.yaml", "comparison.csv", "plots/grid_trials.png",
                                            "search_spaces.json", "trials.jsonl"), "is a FIFO")
    assert_nothing_leaked(batch, student)


def test_sockets_in_outputs_are_refused(batch: Batch) -> None:
    student = "socket_file_in_outputs"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == {"trials.jsonl": "is a socket", "listening.sock": "is a socket"}
    assert_nothing_leaked(batch, student)


def test_non_utf8_file_names_are_escaped(batch: Batch) -> None:
    student = "writes_non_utf8_file_name"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert artifacts(res) == {"bad-\\xff\\xfe-name.txt": "has a name that is not valid UTF-8",
                              "dir-\\xe9": "has a name that is not valid UTF-8"}
    assert_nothing_leaked(batch, student)


def test_file_names_with_escapes_and_newlines_are_escaped(batch: Batch) -> None:
    student = "file_name_with_ansi_and_newline"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    for name in artifacts(res):
        assert name.isprintable() and "\x1b" not in name and "\n" not in name, repr(name)
    assert artifacts(res)["evil\\x1b]0;pwned\\x07\\x1b[31m\\x0aname.txt"] == "has a name with control or invisible characters"
    for name, data in written_for(batch, student).items():
        assert b"\x1b" not in data and b"\x07" not in data, name
    assert_nothing_leaked(batch, student)


# ---------------------------------------------------------------- hostile contents


def test_a_5000_digit_integer_in_trials_jsonl_is_a_named_problem(batch: Batch) -> None:
    student = "huge_int_in_trials_jsonl"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "trials.jsonl line 2: an integer with more than 64 digits" in check(res, "grid-coverage").message
    assert check(res, "grid-coverage").points == 0
    assert_nothing_leaked(batch, student)


def test_a_5000_digit_integer_in_answers_yaml_is_a_named_problem(batch: Batch) -> None:
    student = "huge_int_in_answers_yaml"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "answer-most-important").message.startswith(
        "most_important_hyperparameter: no answers could be read (answers.yaml line 3, column 9: an integer with more "
        "than 64 digits)")
    assert "an integer with more than 64 digits" in (batch.out / student / "feedback.md").read_text()
    assert_nothing_leaked(batch, student)


def test_a_5000_digit_integer_in_search_spaces_json_is_a_named_problem(batch: Batch) -> None:
    student = "huge_int_in_search_spaces_json"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "search-space").message.startswith(
        "no search space could be read (search_spaces.json: an integer with more than 64 digits)")
    assert "an integer with more than 64 digits" in (batch.out / student / "feedback.md").read_text()
    assert_nothing_leaked(batch, student)


def test_deeply_nested_json_and_yaml_are_named_problems(batch: Batch) -> None:
    student = "deeply_nested_json_and_yaml"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "search-space").message.startswith(
        "no search space could be read (search_spaces.json: nested more than 64 levels deep)")
    assert "trials.jsonl line 1: nested more than 64 levels deep" in check(res, "grid-coverage").message
    assert "(answers.yaml line 1, column 83: nested more than 64 levels deep)" in check(res, "answer-better-search").message
    assert_nothing_leaked(batch, student)


def test_a_yaml_alias_bomb_is_refused(batch: Batch) -> None:
    student = "answers_yaml_alias_bomb"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "(answers.yaml line 2, column 10: YAML aliases (*name) are not allowed)" in check(
        res, "answer-search-comparison").message
    assert len((batch.out / student / "result.json").read_bytes()) < 1 << 20
    assert_nothing_leaked(batch, student)


def test_yaml_python_tags_are_never_constructed(batch: Batch) -> None:
    student = "answers_yaml_python_tag"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert not PWNED_FILES[1].exists()
    assert ("(answers.yaml line 1, column 20: not valid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system')") in check(res, "answer-search-comparison").message
    assert_nothing_leaked(batch, student)


def test_a_megabyte_of_empty_trials_gets_a_result(batch: Batch) -> None:
    student = "trials_jsonl_1mib_of_empty_objects"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert len((batch.out / student / "feedback.md").read_bytes()) < 1 << 20
    assert ("trials.jsonl line 1: $: 'contract_version' is a required property (and 1001 more problems in your trial "
            "files)") in check(res, "grid-coverage").message
    assert_nothing_leaked(batch, student)


def test_a_16mib_single_line_trials_file_gets_a_result(batch: Batch) -> None:
    student = "trials_jsonl_20mib_single_line"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "cut: File too large" in log(batch, student)
    assert artifacts(res) == {"trials.jsonl": None} and res.artifacts[0].bytes == LIMITS["file_size_mb"] * 2**20
    assert ("trials.jsonl line 1: not valid JSON: Unterminated string at column 32; it is the last line and has no "
            "newline, so the run was probably stopped while writing it") in check(res, "grid-coverage").message
    assert len((batch.out / student / "result.json").read_bytes()) < 1 << 20
    assert_nothing_leaked(batch, student)


def test_a_csv_field_past_the_csv_limit_is_a_named_problem(batch: Batch) -> None:
    student = "comparison_csv_huge_field"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "comparison-table").message.startswith(
        "no comparison table could be read (comparison.csv: not valid CSV: field larger than field limit (131072))")
    assert_nothing_leaked(batch, student)


def test_a_png_decompression_bomb_is_not_inflated(batch: Batch) -> None:
    student = "png_decompression_bomb"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert check(res, "files").status != "pass"
    assert "plots/grid_trials.png (refused: a 30000x30000 image is too large to check)" in check(res, "files").message
    assert_nothing_leaked(batch, student)


# ---------------------------------------------------------------- hostile text on the grader's terminal and CSV


@pytest.mark.parametrize(("student", "line"), [("stderr_rich_markup_close_tag", "[/]"),
                                                ("stderr_rich_markup_bold", "[bold red]x[/]"),
                                                ("stderr_rich_markup_link", "[link=file:///etc/passwd]y[/link]")])
def test_rich_markup_on_stderr_is_quoted_as_is(batch: Batch, student: str, line: str) -> None:
    res = result(batch, student)
    assert (res.status, res.message) == ("crashed", f"exited with code 1: {line}")
    assert f"{student}: crashed - exited with code 1: {line}" in batch.console
    assert_nothing_leaked(batch, student)


def test_terminal_escapes_on_stderr_reach_no_message_csv_or_console(batch: Batch) -> None:
    student = "stderr_ansi_osc_newlines"
    res = result(batch, student)
    assert res.status == "crashed"
    # the last line is what follows the last line break (CR and VT included), its DCS string removed
    assert res.message == "exited with code 1: end"
    row = (batch.out / "grades.csv").read_text()
    assert "\x1b" not in row and "\x07" not in row and "\x9b" not in row
    assert "\x1b" not in batch.console and "\x07" not in batch.console
    assert_nothing_leaked(batch, student)


def test_an_osc52_sequence_and_a_10mb_line_on_stdout(batch: Batch) -> None:
    student = "stdout_osc52_and_10mb_line"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert (batch.out / student / "logs" / "stdout.log").stat().st_size < 3 * 2**20
    assert_nothing_leaked(batch, student)


def test_a_10mb_last_stderr_line_is_cut_in_the_message(batch: Batch) -> None:
    student = "stderr_10mb_last_line"
    res = result(batch, student)
    assert res.status == "crashed"
    assert res.message == "exited with code 1: " + "B" * 239 + "\u2026"
    assert_nothing_leaked(batch, student)


def test_formula_ids_are_neutralised_in_the_gradebook(batch: Batch) -> None:
    book = pd.read_csv(batch.out / "grades.csv", dtype=str, keep_default_na=False)
    for student in FORMULA_IDS:
        assert result(batch, student).student_id == student
        assert f"'{student}" in set(book["student_id"]), student
        assert student not in set(book["student_id"])
        assert_nothing_leaked(batch, student)


def test_gradebook_names_as_student_ids_are_refused_and_the_gradebook_stands(batch: Batch) -> None:
    for name in ("grades.csv", "grades.parquet"):
        assert (batch.out / name).is_file(), f"OUT/{name} is not the gradebook any more"
        assert REFUSED_IDS[name] in batch.summary.refused
        assert REFUSED_IDS[name][:100] in batch.console
    book = pd.read_csv(batch.out / "grades.csv", dtype=str, keep_default_na=False)
    assert len(book) >= 60 and not set(book["student_id"]) & {"grades.csv", "grades.parquet"}


def test_a_hidden_folder_named_like_the_data_dir_is_not_a_submission(batch: Batch) -> None:
    assert ".data" not in batch.summary.statuses
    assert not any(".data" in line for line in batch.summary.refused)
    assert not (batch.out / ".data" / "tuning.py").exists() and not (batch.out / ".data" / "work").exists()
    assert (batch.out / ".data" / "train" / "mnist.npz").is_file()


@pytest.mark.parametrize("name", [LATIN1_ID, ESCAPE_ID, NEWLINE_ID])
def test_an_id_not_utf8_or_with_escapes_is_refused_with_an_escaped_line(batch: Batch, name: str) -> None:
    assert REFUSED_IDS[name] in batch.summary.refused
    assert not (batch.out / name).exists()
    line = REFUSED_IDS[name]
    assert line.isprintable() and "\x1b" not in line and "\n" not in line
    assert line[:100] in batch.console
    book = (batch.out / "grades.csv").read_bytes()
    assert b"\x1b" not in book and b"\x07" not in book and b"stud\xe9nt" not in book


def test_unsafe_zips_are_refused(batch: Batch) -> None:
    inside = result(batch, "zip_with_dotdot_inside_a_folder")
    assert (inside.status, inside.message) == ("invalid_submission",
                                               "zip entry 'sub/../../escape.py' escapes the submission folder")
    backslash = result(batch, "zip_with_backslash_dotdot")
    assert (backslash.status, backslash.message) == ("invalid_submission",
                                                     "zip entry '..\\evil.py' escapes the submission folder")
    assert not (batch.out / "escape.py").exists() and not (batch.out / "evil.py").exists()


def test_symlinks_in_a_submission_folder_are_not_staged(batch: Batch) -> None:
    student = "symlink_in_submission_folder"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert "secret is missing" in log(batch, student) and "victim link is missing" in log(batch, student)
    assert_nothing_leaked(batch, student)


def test_an_entry_point_that_is_a_symlink_is_no_entry_point(batch: Batch) -> None:
    student = "entry_point_is_a_symlink"
    res = result(batch, student)
    assert res.status == "invalid_submission"
    assert res.message == "no entry point: expected one of assignment.ipynb, tuning.py at the top of the submission"
    assert_nothing_leaked(batch, student)


def test_the_hosts_loopback_is_unreachable(batch: Batch) -> None:
    student = "connects_to_host_loopback"
    assert result(batch, student).status == "completed"
    assert "CONNECTED" not in log(batch, student) and log(batch, student).count("blocked") == 3
    assert batch.loopback_connections == 0


# ---------------------------------------------------------------- models


def test_a_model_with_the_wrong_input_shape_does_not_cost_the_other_its_accuracy(batch: Batch) -> None:
    student = "grid_model_wrong_input_shape"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    evals = {ev.search: ev for ev in res.evaluations}
    assert evals["random"].error is None and evals["random"].test_accuracy > 0.5
    assert evals["grid"].test_accuracy is None
    assert evals["grid"].error == ("the model does not predict on (28, 28, 1) images: ValueError: Exception "
                                   "encountered when calling Sequential.call().")
    assert_nothing_leaked(batch, student)


def test_writing_nothing_completes_with_only_the_runtime_points(batch: Batch) -> None:
    student = "exits_0_writing_nothing"
    res = result(batch, student)
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert {c.id: c.points for c in res.checks if c.points} == {}
    assert (res.score.earned, res.score.possible) == (0.0, 100.0)
    assert check(res, "runtime").message == ("ran to the end but recorded no completed trial — implement the searches "
                                             "so each finished trial is written to trials.jsonl")
    assert assert_no_accuracy(res) == {"grid": "models/best_grid.keras was not written",
                                       "random": "models/best_random.keras was not written"}
    assert_nothing_leaked(batch, student)


# ---------------------------------------------------------------- cleaning up after a hostile tree


def test_a_forced_rerun_cleans_up_a_deep_tree_and_mode_000_folders_and_grades_again(batch: Batch) -> None:
    students = ("chmod_000_files_and_folders", "deep_folder_tree_1500")
    before = {s: result(batch, s).timings.finished_at for s in students}
    again = grade.main(submissions=[batch.subs / s for s in students], rubric=batch.rubric, out=batch.out,
                       gpus="none", jobs=2, force=True, console=Console(file=io.StringIO(), width=200))
    assert sorted(again.graded) == sorted(students)
    assert again.statuses == {"chmod_000_files_and_folders": "completed", "deep_folder_tree_1500": "crashed"}
    for student, outcome in zip(students, (("completed", "ran to the end"), DEEP_TREE)):
        res = result(batch, student)
        assert (res.status, res.message) == outcome
        assert res.timings.finished_at >= before[student]
    assert len(pd.read_csv(batch.out / "grades.csv", dtype=str)) == len(list(batch.out.glob("*/result.json")))
