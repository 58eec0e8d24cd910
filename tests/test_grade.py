"""`grader grade` end to end on fixture submissions named for their behaviour: statuses, messages, isolation, resume."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from conftest import ROOT, child_env, stray_processes
from grader import grade
from grader.result import read_result

FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
TIME_LIMIT = 60
pytestmark = pytest.mark.slow


def make_rubric(path: Path, **limits: int) -> Path:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc["time_limit_s"] = TIME_LIMIT
    doc["limits"].update(limits)
    doc["checks"] = []
    path.write_text(json.dumps(doc))
    return path


def zip_slip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tuning.py", "print('hi')\n")
        zf.writestr("../evil.py", "print('escaped')\n")


def zip_bomb(path: Path) -> None:
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("tuning.py", "w", force_zip64=True) as fh:
            for _ in range(300):
                fh.write(block)


def kill_strays(out: Path) -> None:
    """SIGKILL, by PID, the processes this test started that are still there (those mentioning its OUT folder)."""
    for line in stray_processes(out, since=time.time() + 3600):
        try:
            os.kill(int(line.split()[1]), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def wait_for_no_strays(out: Path, since: float, within_s: float = 5.0) -> list[str]:
    """stray_processes, polled until none are left or within_s has passed (a killed PID namespace takes a moment)."""
    deadline = time.monotonic() + within_s
    while (left := stray_processes(out, since)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, grade.BatchSummary, float]:
    base = tmp_path_factory.mktemp("batch")
    subs = base / "submissions"
    subs.mkdir()
    for name in ("good_script", "good_notebook", "untouched_stubs", "raises_at_import", "hangs_with_children",
                 "failing_cell_then_good_cells", "kernel_dies", "writes_1gb_file", "tries_network",
                 "spawns_200_processes", "reads_outside_workdir", "floods_stdout", "broken_models"):
        shutil.copytree(FIXTURES / name, subs / name)
    zip_slip(subs / "zip_slip.zip")
    zip_bomb(subs / "zip_bomb.zip")
    (subs / "lone_script.py").write_text("print('a lone script runs too')\n")
    rubric = make_rubric(base / "rubric.json", file_size_mb=64, max_processes=64, max_model_mb=1)
    out = base / "out"
    console = Console(file=io.StringIO(), width=200)
    started = time.time()
    summary = grade.main(submissions=[subs], rubric=rubric, out=out, gpus="none", jobs=2, console=console)
    return out, rubric, summary, started


def result(out: Path, student: str):
    res = read_result(out / student / "result.json")
    assert res is not None, f"no result for {student}"
    return res


def test_every_submission_gets_a_result_and_one_gradebook_row(batch) -> None:
    out, _, summary, _ = batch
    book = pd.read_csv(out / "grades.csv", dtype=str)
    assert sorted(book["student_id"]) == sorted(summary.statuses) and len(book) == 16


def test_good_script_completes_and_its_models_are_verified_on_the_test_split(batch) -> None:
    res = result(batch[0], "good_script")
    assert (res.status, res.message) == ("completed", "ran to the end")
    assert {e.search for e in res.evaluations} == {"grid", "random"}
    for ev in res.evaluations:
        assert ev.error is None and ev.n_test == 10000 and ev.test_accuracy >= 0.8
    assert res.isolation.method in ("bwrap", "rlimits", "rlimits+netns")


def test_good_notebook_completes_with_parameters_injected_and_an_html_export(batch) -> None:
    out = batch[0]
    res = result(out, "good_notebook")
    assert res.status == "completed", res.message
    assert all(ev.test_accuracy and ev.test_accuracy >= 0.8 for ev in res.evaluations)
    html = (out / "good_notebook" / "notebook.html").read_text()
    assert "quick" in html  # the injected PROFILE was printed by a later cell


def test_untouched_stubs_crash_with_the_todo_named(batch) -> None:
    res = result(batch[0], "untouched_stubs")
    assert res.status == "crashed"
    assert res.message == ("exited with code 1: NotImplementedError: TODO(student): define the grid of "
                           "hyperparameter values")


def test_an_import_error_is_a_crash_with_the_missing_module_named(batch) -> None:
    res = result(batch[0], "raises_at_import")
    assert (res.status, res.exit_code) == ("crashed", 1)
    assert res.message == "exited with code 1: ModuleNotFoundError: No module named 'keras_tunr'"


def test_a_hanging_submission_is_stopped_at_its_box_keeping_what_it_wrote(batch) -> None:
    out = batch[0]
    res = result(out, "hangs_with_children")
    assert res.status == "timed_out"
    assert res.message == (f"stopped at the time limit of {TIME_LIMIT} s; the files written before then "
                           "are still graded")
    assert TIME_LIMIT <= res.timings.run_s <= TIME_LIMIT + 6
    assert "trials.jsonl" in {a.path for a in res.artifacts}
    assert wait_for_no_strays(out, since=batch[3]) == []


def test_a_failing_cell_does_not_stop_the_later_cells(batch) -> None:
    out = batch[0]
    res = result(out, "failing_cell_then_good_cells")
    assert res.status == "completed"
    assert res.message == "1 notebook cell(s) raised an error, first cell 2: ValueError: the grid is empty"
    assert "after_error.txt" in {a.path for a in res.artifacts}


def test_a_dead_kernel_is_reported_as_a_crash_in_its_cell(batch) -> None:
    res = result(batch[0], "kernel_dies")
    assert (res.status, res.message) == ("crashed", "the notebook's kernel died in cell 2")
    assert {a.path for a in res.artifacts} >= {"before.txt"} and "after.txt" not in {a.path for a in res.artifacts}


def test_a_1gb_file_is_cut_at_the_file_size_limit(batch) -> None:
    out = batch[0]
    res = result(out, "writes_1gb_file")
    assert res.status == "crashed"
    assert (out / "writes_1gb_file" / "work" / "outputs" / "huge.bin").stat().st_size <= 64 * 2**20


def test_the_network_is_unreachable(batch) -> None:
    out = batch[0]
    log = (out / "tries_network" / "logs" / "stdout.log").read_text()
    assert "NETWORK OPEN" not in log and "blocked pypi.org:443" in log


def test_the_network_fixture_reports_a_connection_it_can_make(tmp_path: Path) -> None:
    """The positive control: outside the sandbox, with every connection sent to a loopback listener this test
    opens, the same fixture says NETWORK OPEN (so 'blocked' above means blocked, not a broken fixture)."""
    fixture = FIXTURES / "tries_network" / "tuning.py"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        shim = ("import runpy, socket\n"
                "connect = socket.create_connection\n"
                f"socket.create_connection = lambda address, *a, **k: connect(('127.0.0.1', {port}), *a, **k)\n"
                f"runpy.run_path({str(fixture)!r}, run_name='__main__')\n")
        proc = subprocess.run([sys.executable, "-c", shim], cwd=tmp_path, env=child_env(tmp_path / "home"),
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["NETWORK OPEN: pypi.org:443", "NETWORK OPEN: 1.1.1.1:53",
                                        "NETWORK OPEN: 10.0.0.1:80"]


def test_200_processes_are_refused_beyond_the_process_limit(batch) -> None:
    out = batch[0]
    log = (out / "spawns_200_processes" / "logs" / "stdout.log").read_text()
    started, refused = (int(w) for w in log.split("started ")[1].split(" (")[0].replace("refused ", "").split(", "))
    assert started < 64 and refused > 0


def test_nothing_outside_the_work_dir_is_readable_but_the_train_split(batch) -> None:
    out = batch[0]
    found = (out / "reads_outside_workdir" / "work" / "outputs" / "found.txt").read_text().split()
    assert found, "the train split handed to the submission should be readable"
    assert all(path.endswith("/train/mnist.npz") for path in found), found


def test_unsafe_zips_are_refused_without_being_run(batch) -> None:
    out = batch[0]
    slip, bomb = result(out, "zip_slip"), result(out, "zip_bomb")
    assert (slip.status, slip.message) == ("invalid_submission", "zip entry '../evil.py' escapes the submission folder")
    assert bomb.status == "invalid_submission" and "zip bomb" in bomb.message
    assert not (out / "evil.py").exists() and not (out / "zip_slip" / "evil.py").exists()


def test_a_non_utf8_flood_on_stdout_is_capped(batch) -> None:
    out = batch[0]
    res = result(out, "floods_stdout")
    assert res.status == "completed"
    log = (out / "floods_stdout" / "logs" / "stdout.log").read_bytes()
    assert len(log) < 3 * 2**20 and b"output truncated" in log


def test_models_that_are_missing_too_large_or_do_not_load_each_get_a_reason(batch) -> None:
    out = batch[0]
    broken = {e.search: e for e in result(out, "broken_models").evaluations}
    assert broken["grid"].test_accuracy is None
    assert broken["grid"].error.startswith("the model does not load: ")
    assert broken["random"].error == "models/best_random.keras is 2.0 MiB, over the 1 MiB limit for a model"
    missing = {e.search: e.error for e in result(out, "raises_at_import").evaluations}
    assert missing == {"grid": "models/best_grid.keras was not written",
                       "random": "models/best_random.keras was not written"}


def test_a_lone_script_is_its_own_entry_point(batch) -> None:
    res = result(batch[0], "lone_script")
    assert (res.status, res.entry_point) == ("completed", "lone_script.py")


def test_a_rerun_skips_unchanged_submissions_and_regrades_a_changed_one(batch, tmp_path: Path) -> None:
    out, rubric, _, _ = batch
    subs = out.parent / "submissions"
    before = (out / "good_script" / "result.json").read_text()
    (subs / "lone_script.py").write_text("print('changed')\n")
    again = grade.main(submissions=[subs], rubric=rubric, out=out, gpus="none", jobs=2,
                       console=Console(file=io.StringIO()))
    assert again.graded == ("lone_script",)
    assert len(again.skipped) == 15
    assert (out / "good_script" / "result.json").read_text() == before
    assert len(pd.read_csv(out / "grades.csv", dtype=str)) == 16


def test_a_grader_killed_mid_batch_loses_nothing_and_a_rerun_finishes_the_rest(tmp_path: Path) -> None:
    # One job, graded in id order: a quick crash first (its result is written before the kill), then a hanging
    # submission with children (killed with the grader), then one never started.
    subs = tmp_path / "subs"
    subs.mkdir()
    order = {"1_raises_at_import": "raises_at_import", "2_hangs_with_children": "hangs_with_children",
             "3_tries_network": "tries_network"}
    for name, fixture in order.items():
        shutil.copytree(FIXTURES / fixture, subs / name)
    rubric = make_rubric(tmp_path / "rubric.json")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", str(rubric), "--out", str(out),
           "--gpus", "none", "--jobs", "1"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(tmp_path / "home"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    first, hanging = out / "1_raises_at_import" / "result.json", out / "2_hangs_with_children"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (first.exists() and (hanging / "logs" / "stdout.log").exists()):
            assert proc.poll() is None, "the grader ended before it could be killed"
            time.sleep(0.2)
        time.sleep(1.0)
        assert "children:" in (hanging / "logs" / "stdout.log").read_text(), "the hanging submission did not start"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the grader alone: its sandboxes must die with it
        proc.wait()
    try:
        assert wait_for_no_strays(out, since=started) == []
    finally:
        kill_strays(out)
    kept = first.read_bytes()
    assert read_result(first).status == "crashed"
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == ["1_raises_at_import"]
    finished = subprocess.run(cmd + ["--time-limit", "5"], cwd=ROOT, env=child_env(tmp_path / "home"),
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert first.read_bytes() == kept  # unchanged, so skipped: the result written before the kill stands
    assert result(out, "2_hangs_with_children").status == "timed_out"
    book = pd.read_csv(out / "grades.csv", dtype=str)
    assert sorted(book["student_id"]) == sorted(order)
    assert wait_for_no_strays(out, since=started) == []


def test_sigterm_stops_the_running_sandboxes_at_once_and_exits_130(tmp_path: Path) -> None:
    # Two slots, both busy with a submission that would hang for the whole 60 s box, and a third queued.
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("1_hangs", "2_hangs", "3_queued"):
        shutil.copytree(FIXTURES / "hangs_with_children", subs / name)
    rubric = make_rubric(tmp_path / "rubric.json")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", str(rubric), "--out", str(out),
           "--gpus", "none", "--jobs", "2"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(tmp_path / "home"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        logs = [out / name / "logs" / "stdout.log" for name in ("1_hangs", "2_hangs")]
        while time.monotonic() < deadline and not all(p.exists() and "children:" in p.read_text() for p in logs):
            assert proc.poll() is None, "the grader ended before it could be stopped"
            time.sleep(0.2)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        assert wait_for_no_strays(out, since=started) == []
    finally:
        kill_strays(out)
    assert proc.returncode == 130, err[-2000:]
    assert err.rstrip().splitlines()[-1] == "grader: interrupted; results written so far are kept, re-run to resume"
    assert took < 10, f"the grader took {took:.1f} s to stop: its sandboxes ran on towards their time limit"
    assert list(out.glob("*/result.json")) == []  # an interrupted run is no result: the next run grades it
    assert not (out / "3_queued").exists()
