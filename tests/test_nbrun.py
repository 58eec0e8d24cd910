"""Tests for grader.nbrun: a notebook run cell by cell in a fresh kernel, saved as it goes, summarised."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from grader import nbrun
from grader.nbrun import (
    CellError,
    InvalidNotebookError,
    ParameterError,
    RunSummary,
    inject_parameters,
    kernel_environment,
    main,
    parse_params,
    read_notebook,
    run_notebook,
)

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
REPO = Path(__file__).resolve().parents[1]
GRADER_PARAMS = {"PROFILE": "quick", "TIME_BUDGET_S": 60, "OUTPUT_DIR": "/work/out", "SEED": 0, "DATA_DIR": None}


def copy_fixture(name: str, folder: Path) -> Path:
    """The fixture notebook copied into folder, so the kernel's cwd is a scratch dir."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURES / name, folder / name))


def run_fixture(name: str, tmp_path: Path, **kwargs: object) -> tuple[RunSummary, NotebookNode]:
    """run_notebook on a copy of the fixture; the summary returned, and the executed notebook read back."""
    notebook = copy_fixture(name, tmp_path / "submission")
    out = tmp_path / "out"
    kwargs.setdefault("params", {"PROFILE": "quick"})
    summary = run_notebook(
        notebook,
        executed_path=out / "executed.ipynb",
        summary_path=out / "summary.json",
        **kwargs,  # type: ignore[arg-type]
    )
    assert RunSummary.from_json(json.loads((out / "summary.json").read_text())) == summary
    return summary, nbformat.read(out / "executed.ipynb", as_version=4)


def output_text(cell: NotebookNode) -> str:
    """What a cell showed: its streams, plain-text results and errors, in order."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", "") + "\n")
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}\n")
    return "".join(parts)


def kernel_pid(cell: NotebookNode) -> int:
    """The kernel pid a fixture cell printed as "kernel pid N"."""
    found = re.search(r"kernel pid (\d+)", output_text(cell))
    assert found, f"no kernel pid in {output_text(cell)!r}"
    return int(found.group(1))


def process_gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether pid exits (or is left a zombie) within within_s."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def nbrun_command(notebook: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "grader.nbrun", str(notebook),
        "--executed", str(out / "executed.ipynb"),
        "--summary", str(out / "summary.json"),
        *extra,
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# ---------------------------------------------------------------- parameters (no kernel)


def test_parameters_go_in_a_tagged_cell_right_after_the_parameters_cell() -> None:
    nb = read_notebook(FIXTURES / "good.ipynb")

    injected, found = inject_parameters(nb, GRADER_PARAMS)

    assert found is True
    assert [c.source for c in injected.cells[:2]] == [c.source for c in nb.cells[:2]]
    assert injected.cells[2].metadata.tags == ["injected-parameters"]
    assert injected.cells[2].source == (
        "# Parameters injected by the grader\n"
        "PROFILE = 'quick'\n"
        "TIME_BUDGET_S = 60\n"
        "OUTPUT_DIR = '/work/out'\n"
        "SEED = 0\n"
        "DATA_DIR = None"
    )
    namespace: dict[str, object] = {}
    exec(injected.cells[2].source, namespace)
    assert {k: namespace[k] for k in GRADER_PARAMS} == GRADER_PARAMS
    assert len(nb.cells) == 4, "the notebook passed in is left as it was"
    nbformat.validate(injected)


def test_parameters_go_at_the_top_when_there_is_no_parameters_cell() -> None:
    nb = read_notebook(FIXTURES / "no_parameters_cell.ipynb")

    injected, found = inject_parameters(nb, {"PROFILE": "quick", "FLAGS": [True, False], "RANGES": {"lr": [0.1]}})

    assert found is False
    assert injected.cells[0].source == (
        "# Parameters injected by the grader\nPROFILE = 'quick'\nFLAGS = [True, False]\nRANGES = {'lr': [0.1]}"
    )
    assert injected.cells[1].source == nb.cells[0].source


def test_parameters_go_after_a_stale_injected_cell_so_the_graders_values_win() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('PROFILE = "full"', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell('PROFILE = "stale"', metadata={"tags": ["injected-parameters"]}),
            nbformat.v4.new_code_cell("print(PROFILE)"),
        ]
    )

    injected, _ = inject_parameters(nb, {"PROFILE": "quick"})

    assert [c.source.splitlines()[-1] for c in injected.cells] == [
        'PROFILE = "full"', 'PROFILE = "stale"', "PROFILE = 'quick'", "print(PROFILE)"
    ]  # fmt: skip


def test_an_nbformat_4_4_notebook_stays_valid_after_injection() -> None:
    cell = nbformat.v4.new_code_cell("print(1)")
    del cell["id"]  # nbformat 4.4 has no cell ids
    nb = nbformat.v4.new_notebook(cells=[cell], nbformat_minor=4)

    injected, _ = inject_parameters(nb, {"SEED": 1})

    nbformat.validate(injected)
    assert "id" not in injected.cells[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"SEED": float("nan")}, "parameter SEED is not a JSON value: SEED is nan"),
        ({"GRID": [1, {2: "a"}]}, "parameter GRID is not a JSON value: GRID[1] has the non-string key 2"),
        ({"SHAPE": (28, 28)}, "parameter SHAPE is not a JSON value: SHAPE is a tuple"),
        ({"1ST": 0}, "parameter name '1ST' is not a Python identifier"),
        ({"class": 0}, "parameter name 'class' is not a Python identifier"),
    ],
)
def test_parameters_that_cannot_be_injected_are_refused(params: dict[str, object], message: str) -> None:
    nb = read_notebook(FIXTURES / "good.ipynb")
    with pytest.raises(ParameterError) as excinfo:
        inject_parameters(nb, params)
    assert str(excinfo.value) == message


def test_command_line_params_are_json_values() -> None:
    assert parse_params(['PROFILE="quick"', "SEED=0", "DATA_DIR=null", "LR=[0.01, 0.1]"]) == {
        "PROFILE": "quick", "SEED": 0, "DATA_DIR": None, "LR": [0.01, 0.1]
    }  # fmt: skip


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["PROFILE"], "--param PROFILE is not NAME=JSON"),
        (["PROFILE=quick"], "--param PROFILE=quick is not NAME=JSON: the value is not JSON (Expecting value at column 1)"),
        (["SEED=0", "SEED=1"], "--param SEED is given twice"),
    ],
)
def test_malformed_command_line_params_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        parse_params(items)
    assert str(excinfo.value) == message


# ---------------------------------------------------------------- command-line errors (no kernel)


@pytest.mark.parametrize(
    ("notebook", "message"),
    [
        (
            "truncated_json.ipynb",
            "nbrun: truncated_json.ipynb is not a valid notebook: "
            "not JSON (Expecting property name enclosed in double quotes at line 5 column 1)\n",
        ),
        ("missing.ipynb", "nbrun: missing.ipynb does not exist\n"),
    ],
)
def test_a_notebook_that_cannot_be_read_exits_2_with_one_line(
    notebook: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(FIXTURES / "truncated_json.ipynb", tmp_path)
    monkeypatch.chdir(tmp_path)

    status = main([notebook, "--executed", "out/x.ipynb", "--summary", "out/s.json"])

    assert status == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()


def test_a_notebook_breaking_the_schema_is_named_with_where_it_breaks(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    del nb.cells[0]["outputs"]
    (tmp_path / "no_outputs.ipynb").write_text(json.dumps(nb))

    with pytest.raises(InvalidNotebookError) as excinfo:
        read_notebook(tmp_path / "no_outputs.ipynb")

    assert str(excinfo.value) == (
        f"{tmp_path / 'no_outputs.ipynb'} is not a valid notebook: $.cells[0]: 'outputs' is a required property"
    )


# ---------------------------------------------------------------- pieces (no kernel)


def test_kernel_dirs_are_absolute_and_default_into_the_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    env = kernel_environment(".nbrun", base={"HOME": "sandbox-home", "PATH": "/usr/bin"})

    assert env["HOME"] == str(tmp_path / "sandbox-home")
    assert (tmp_path / "sandbox-home").is_dir()
    assert env["PATH"] == "/usr/bin"
    for var, sub in [("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                     ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib")]:  # fmt: skip
        assert env[var] == str(tmp_path / ".nbrun" / sub)
        assert (tmp_path / ".nbrun" / sub).is_dir()


def test_a_summary_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError) as excinfo:
        RunSummary.from_json({"version": 2, "status": "completed"})
    assert str(excinfo.value) == "nbrun summary version 2 is not 1"


# ---------------------------------------------------------------- runs (one kernel each)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The command line run once on good.ipynb with the grader's parameters; the process and its out dir."""
    tmp = tmp_path_factory.mktemp("good")
    notebook = copy_fixture("good.ipynb", tmp / "submission")
    params = [f"--param={name}={json.dumps(value)}" for name, value in GRADER_PARAMS.items()]
    proc = subprocess.run(
        nbrun_command(notebook, tmp / "out", *params, "--cell-timeout", "30"),
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc, tmp / "out"


def test_the_command_line_exits_0_and_summarises_a_clean_run(good_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = good_run
    assert proc.returncode == 0, proc.stderr
    assert RunSummary.from_json(json.loads((out / "summary.json").read_text())) == RunSummary(
        status="completed",
        cells_total=3,
        cells_executed=3,
        errors=(),
        timed_out_cell=None,
        kernel_died_cell=None,
        parameters_cell_found=True,
    )


def test_injected_parameters_reach_the_cells_after_the_parameters_cell(
    good_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    executed = nbformat.read(good_run[1] / "executed.ipynb", as_version=4)
    assert executed.cells[2].metadata.tags == ["injected-parameters"]
    assert output_text(executed.cells[3]) == "profile=quick budget=60\n"
    assert output_text(executed.cells[4]) == "42\n"
    assert executed.metadata.language_info.name == "python"


def test_without_a_parameters_cell_the_parameters_go_first_and_the_summary_says_so(tmp_path: Path) -> None:
    summary, executed = run_fixture("no_parameters_cell.ipynb", tmp_path)

    assert summary.status == "completed"
    assert summary.parameters_cell_found is False
    assert executed.cells[0].metadata.tags == ["injected-parameters"]
    assert output_text(executed.cells[1]) == "profile is quick\n"


def test_a_kernel_that_cannot_start_is_reported_as_dead_before_any_cell(tmp_path: Path) -> None:
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "ipykernel_launcher.py").write_text("raise SystemExit(3)\n")  # shadows ipykernel

    summary, executed = run_fixture("good.ipynb", tmp_path, startup_timeout_s=20)

    assert summary.status == "kernel_died"
    assert (summary.kernel_died_cell, summary.cells_executed, summary.errors) == (None, 0, ())
    assert all(cell.get("outputs", []) == [] for cell in executed.cells)


def test_a_failing_cell_is_reported_by_its_original_index_and_later_cells_still_run(tmp_path: Path) -> None:
    summary, executed = run_fixture("failing_cell_then_good_cells.ipynb", tmp_path)

    assert summary.status == "cell_errors"
    assert summary.errors == (CellError(cell_index=2, ename="ZeroDivisionError", evalue="division by zero"),)
    assert (summary.cells_total, summary.cells_executed) == (3, 3)
    assert output_text(executed.cells[4]) == "still running, x = 1\n"


def test_a_dying_kernel_ends_the_run_at_that_cell(tmp_path: Path) -> None:
    summary, executed = run_fixture("kernel_dies.ipynb", tmp_path)

    death = "the kernel died while running this cell (exit status 1)"
    assert summary.status == "kernel_died"
    assert summary.kernel_died_cell == 1
    assert summary.errors == (CellError(1, "DeadKernelError", death),)
    assert (summary.cells_total, summary.cells_executed) == (3, 2)
    assert output_text(executed.cells[1]) == "alive\n"
    assert output_text(executed.cells[2]) == f"DeadKernelError: {death}\n"
    assert executed.cells[3].outputs == [] and executed.cells[3].execution_count is None


def test_a_hanging_cell_is_interrupted_at_the_timeout_and_the_run_goes_on(tmp_path: Path) -> None:
    started = time.monotonic()
    summary, executed = run_fixture("cell_hangs.ipynb", tmp_path, cell_timeout_s=2)
    elapsed = time.monotonic() - started

    timeout = "the cell ran longer than 2 s and was interrupted"
    assert summary.status == "cell_timeout"
    assert summary.timed_out_cell == 1
    assert summary.errors == (CellError(1, "CellTimeoutError", timeout),)
    assert elapsed < 20
    assert output_text(executed.cells[1]).startswith("before the hang, kernel pid ")
    assert output_text(executed.cells[2]).startswith("hanging\n")
    assert output_text(executed.cells[2]).endswith(f"CellTimeoutError: {timeout}\n")
    assert output_text(executed.cells[3]) == "after the hang\n"
    assert process_gone(kernel_pid(executed.cells[1]))


def test_a_kernel_that_ignores_the_interrupt_stops_the_run_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nbrun, "INTERRUPT_GRACE_S", 1.0)

    summary, executed = run_fixture("cell_ignores_interrupt.ipynb", tmp_path, cell_timeout_s=1)

    stuck = (
        "the cell ran longer than 1 s and was interrupted; "
        "the kernel ignored the interrupt for 1 s, so the cells after it did not run"
    )
    assert summary.status == "cell_timeout"
    assert summary.errors == (CellError(0, "CellTimeoutError", stuck),)
    assert (summary.cells_total, summary.cells_executed) == (2, 1)
    assert executed.cells[2].outputs == []
    assert process_gone(kernel_pid(executed.cells[1]))


def test_sigterm_kills_the_kernel_and_leaves_the_notebook_saved_up_to_the_hanging_cell(tmp_path: Path) -> None:
    notebook = copy_fixture("cell_hangs.ipynb", tmp_path / "submission")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        nbrun_command(notebook, out), env=subprocess_env(), stderr=subprocess.PIPE, text=True
    )  # no cell timeout: cell 1 hangs until the signal
    pid = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "executed.ipynb").exists():
                saved = nbformat.read(out / "executed.ipynb", as_version=4)
                if output_text(saved.cells[2]) == "hanging\n":  # saved while the cell still runs
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the hanging cell's output was never saved while it ran")
        pid = kernel_pid(saved.cells[1])
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[-1] == "nbrun: stopped by SIGTERM; the executed notebook keeps what ran"
    assert process_gone(pid)
    assert not (out / "summary.json").exists()
    executed = nbformat.read(out / "executed.ipynb", as_version=4)
    assert output_text(executed.cells[1]) == f"before the hang, kernel pid {pid}\n"
    assert executed.cells[3].outputs == []
